"""Groups: every histogram tag of a run placed under the layer it belongs to, from the checkpoint or the tag's path.

Keras names one layer's weights under two scopes when some are made in `__init__` and some in `build()`
(`my_layer/my_variable1` beside `sequential/my_layer/my_variable2`); grouping undoes that split.
"""

from __future__ import annotations

import posixpath

import numpy as np

from tb_varscope_plugin.analysis.attribution import match_lanes
from tb_varscope_plugin.analysis.tag_names import tag_base, tag_leaf
from tb_varscope_plugin.checkpoints.variables import Checkpoint, Variable
from tb_varscope_plugin.reading.run_index import RunIndex
from tb_varscope_plugin.schema import SAME_STEP, Collision, Group, GroupVariable


def parent_path(path: str) -> str:
    """What comes before the last `/` or `.` of a path (`sequential/dense`, `encoder.fc`), `` at the top."""
    return path[: max(path.rfind("/"), path.rfind("."), 0)]


def layer_of(v: Variable) -> str:
    return v.layer if v.layer is not None else parent_path(v.path)


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
            if v is None:
                # Unattributed: the tag's own path says where it lives; a bare colliding name sits at the top.
                path = tag_base(tag)
                placed.append((parent_path(path), _entry(tag_leaf(tag), path, None, tag, lane)))
                continue
            logged.add(v.key)
            placed.append((layer_of(v), _entry(v.name or tag_leaf(tag), name or v.path, v, tag, lane)))
    if checkpoint is not None:
        for v in checkpoint.variables:
            if not v.slot and v.key not in logged:
                placed.append((layer_of(v), _entry(v.name or posixpath.basename(v.path), v.path, v, None, None)))
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
    paths = {path for path, _ in placed}
    into = {path: merged_into(path, paths) for path in paths}
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


def merged_into(path: str, paths: set[str]) -> str:
    """The one longer group path that ends with `path` (Keras' `my_layer` inside `sequential/my_layer`), else `path`.

    A weight made in a Keras layer's `__init__` is named without the scopes the layer gets when built, so its
    scope is a tail of its siblings'. Several such longer paths leave it ambiguous, and it stays apart.
    """
    if not path:
        return path
    longer = [p for p in paths if p != path and (p.endswith("/" + path) or p.endswith("." + path))]
    return longer[0] if len(longer) == 1 else path
