"""Groups: every histogram tag of a run placed under the layer it belongs to, from the checkpoint or the tag's path.

Keras names one layer's weights under two scopes when some are made in `__init__` and some in `build()`
(`my_layer/my_variable1` beside `sequential/my_layer/my_variable2`); grouping undoes that split.
"""

from __future__ import annotations

import posixpath

import numpy as np

from tb_varscope_plugin.analysis.attribution import match_lanes, shown_names
from tb_varscope_plugin.analysis.tag_names import tag_base, tag_leaf
from tb_varscope_plugin.analysis.variable_names import parent_path
from tb_varscope_plugin.checkpoints.variables import Checkpoint, Variable
from tb_varscope_plugin.reading.run_index import RunIndex
from tb_varscope_plugin.schema import SAME_STEP, Collision, Group, GroupVariable


def group_tags(
    run: RunIndex,
    collisions: list[Collision],
    checkpoint: Checkpoint | None,
    values: dict[str, np.ndarray] | None = None,
) -> list[Group]:
    """The run's layer groups in the contract's `groups` shape, each lane of a colliding tag placed on its own.

    Lanes of colliding tags must already be attributed (`attribute_lanes`); clean tags are matched here.
    """
    values = {} if values is None else values
    lanes_of = {c["tag"]: c["lanes"] for c in collisions if c["kind"] == SAME_STEP}
    by_key = {v.key: v for v in checkpoint.variables} if checkpoint is not None else {}
    shown = shown_names(checkpoint) if checkpoint is not None else None
    placed: list[tuple[str, GroupVariable]] = []
    logged: set[str] = set()
    for tag in run.histogram_tags():
        found: list[tuple[int, Variable | None, str | None]]
        if tag in lanes_of:
            found = [
                (lane["lane"], by_key.get(lane["checkpoint_key"] or ""), lane["variable"]) for lane in lanes_of[tag]
            ]
        elif checkpoint is not None:
            match = match_lanes(run, tag, 1, checkpoint, values, compare_single=False)[0]
            found = [(0, match.variable, match.name)]
        else:
            found = [(0, None, None)]
        for lane, v, name in found:
            if v is None or shown is None:
                # Unattributed: the tag's own path says where it lives; a bare colliding name sits at the top.
                path = tag_base(tag)
                placed.append((parent_path(path), _entry(tag_leaf(tag), path, None, tag, lane)))
                continue
            logged.add(v.key)
            placed.append((shown.layer(v), _entry(v.name or tag_leaf(tag), name or shown.path(v), v, tag, lane)))
    if checkpoint is not None and shown is not None:
        for v in checkpoint.variables:
            if not v.slot and v.key not in logged:
                entry = _entry(v.name or posixpath.basename(v.path), shown.path(v), v, None, None)
                placed.append((shown.layer(v), entry))
    return _assemble(placed)


def _entry(name: str, path: str, v: Variable | None, tag: str | None, lane: int | None) -> GroupVariable:
    return {
        "name": name,
        "path": path,
        "checkpoint_key": v.key if v is not None else None,
        "shape": list(v.shape) if v is not None else None,
        "tag": tag,
        "lane": lane,
    }


def _assemble(placed: list[tuple[str, GroupVariable]]) -> list[Group]:
    into = merge_targets({path for path, _ in placed})
    groups: dict[str, list[GroupVariable]] = {}
    for path, entry in placed:
        groups.setdefault(into[path], []).append(entry)
    return [
        {
            "path": path,
            "tags": sorted({e["tag"] for e in entries if e["tag"] is not None}),
            "variables": sorted(entries, key=lambda e: (e["path"], -1 if e["lane"] is None else e["lane"])),
        }
        for path, entries in sorted(groups.items())
    ]


def merge_targets(paths: set[str]) -> dict[str, str]:
    """Each group path mapped to the one longer path that ends with it (Keras' `my_layer` inside
    `sequential/my_layer`), else to itself.

    A weight made in a Keras layer's `__init__` is named without the scopes the layer gets when built, so its
    scope is a tail of its siblings'. Several such longer paths leave it ambiguous, and it stays apart. The tails
    of every path are indexed once, so the cost grows with the paths' length, not with the number of pairs.
    """
    ending: dict[str, list[str]] = {}  # a tail after a `/` or `.` -> up to two longer paths ending with it
    for path in paths:
        for tail in path_tails(path):
            longer = ending.setdefault(tail, [])
            if len(longer) < 2:
                longer.append(path)
    return {path: ending[path][0] if path and len(ending.get(path, ())) == 1 else path for path in paths}


def path_tails(path: str) -> list[str]:
    """What follows each `/` or `.` of a path: `b/c` and `c` for `a/b/c`."""
    # Found with str.find, not by looking at each character in Python: every tag of every run passes here.
    separators = path.replace(".", "/")
    tails = []
    i = separators.find("/")
    while i >= 0:
        tails.append(path[i + 1 :])
        i = separators.find("/", i + 1)
    return tails
