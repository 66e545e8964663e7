"""Sibling tag families: two colliding tags one loop writes side by side (a weight and its gradient, `weight` and
`grad/weight`), so lane k of one is the same variable as lane k of the other.

A gradient matches no checkpoint tensor, so its lanes are named from the sibling family that does. That is only
inferred from the index: both tags written into the same files at the same steps, as many lanes with the same
element counts, and at every step in the same pattern (each value right after its sibling, or all of one family
then all of the other). Anything less leaves the lane unnamed.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tb_varscope_plugin.analysis.attribution import LaneMatch
from tb_varscope_plugin.analysis.collisions import FoundCollision
from tb_varscope_plugin.analysis.tag_names import is_activation, is_gradient, tag_words
from tb_varscope_plugin.reading.run_index import RunIndex
from tb_varscope_plugin.schema import SAME_STEP


def needs_sibling(found: FoundCollision, matches: list[LaneMatch]) -> bool:
    """A family whose lanes the checkpoint does not name by values: gradients, or lanes nothing matched."""
    if found.kind != SAME_STEP or found.restarts or is_activation(found.tag):
        return False
    return is_gradient(found.tag) or any(m.variable is None for m in matches)


def share_sibling_lanes(
    run: RunIndex, found: list[FoundCollision], matches: list[list[LaneMatch]]
) -> list[list[LaneMatch]]:
    """`matches` (one list per collision of `found`) with the unnamed lanes of each family filled from its sibling
    family, where the index shows one; other lanes are left as they are."""
    named = [
        k
        for k, (f, m) in enumerate(zip(found, matches, strict=True))
        if f.kind == SAME_STEP and not f.restarts and not is_gradient(f.tag) and any(x.variable for x in m)
    ]
    result = list(matches)
    if not named:
        return result  # no family is named (no checkpoint, say): there is nothing to inherit
    for k, (f, m) in enumerate(zip(found, matches, strict=True)):
        if not needs_sibling(f, m):
            continue
        siblings = [(j, alike) for j in named if j != k for alike in [written_alike(run, f, found[j])] if alike]
        if not is_gradient(f.tag):
            # Values that matched nothing may be anything (outputs, statistics): only a family whose words the tag
            # holds (`ema/weight` beside `weight`) is taken for the same variables.
            siblings = [(j, alike) for j, alike in siblings if _related(f.tag, found[j].tag)]
        if len({tuple(_keys(matches[j])) for j, _ in siblings}) > 1:
            # Several families are written alike and name different variables; a tag that holds the other's words
            # (`grad/weight` and `weight`, `kernel_grad` and `kernel`) decides, or nothing is named.
            related = [(j, alike) for j, alike in siblings if _related(f.tag, found[j].tag)]
            if len({tuple(_keys(matches[j])) for j, _ in related}) != 1:
                tags = ", ".join(f"`{found[j].tag}`" for j, _ in siblings)
                why = f"written in the same place as the lanes of {tags}, which name different variables"
                result[k] = [replace(own, evidence=f"{own.evidence}; {why}") for own in m]
                continue
            siblings = related
        if siblings:
            j, alike = siblings[0]
            taken = {x.variable.key for x in m if x.variable is not None}
            result[k] = [
                own
                if own.variable is not None or (theirs.variable is not None and theirs.variable.key in taken)
                else _inherit(own, theirs, f, found[j], alike)
                for own, theirs in zip(m, matches[j], strict=True)
            ]
    return result


def written_alike(run: RunIndex, a: FoundCollision, b: FoundCollision) -> str | None:
    """How `a` and `b` are written side by side, in words, when the index shows each lane of one in the same place as
    the same lane of the other; None when it does not."""
    if a.writers != b.writers or a.elements != b.elements or a.tag == b.tag:
        return None
    holding_a = [f for f in run.files if a.tag in f.series]
    if [f.name for f in holding_a] != [f.name for f in run.files if b.tag in f.series]:
        return None
    lanes = a.writers
    patterns = set()
    steps_seen = 0
    for f in holding_a:
        sa, sb = f.series[a.tag], f.series[b.tag]
        steps = np.concatenate([np.asarray(sa.steps, np.int64), np.asarray(sb.steps, np.int64)])
        offsets = np.concatenate([np.asarray(sa.offsets, np.int64), np.asarray(sb.offsets, np.int64)])
        indices = np.concatenate([np.asarray(sa.indices, np.uint32), np.asarray(sb.indices, np.uint32)])
        family = np.concatenate([np.zeros(len(sa.steps), np.int8), np.ones(len(sb.steps), np.int8)])
        if len(steps) % (2 * lanes):
            return None
        order = np.lexsort((indices, offsets, steps))  # by step, then in write order
        per_step = family[order].reshape(-1, 2 * lanes)
        step_rows = steps[order].reshape(-1, 2 * lanes)
        # Every step holds all lanes of both families, and no step is split across rows.
        if np.any(step_rows != step_rows[:, :1]) or len(np.unique(step_rows[:, 0])) != len(step_rows):
            return None
        if np.any(per_step != per_step[0]):
            return None
        patterns.add(_pattern(per_step[0].tolist()))
        steps_seen += len(step_rows)
    pattern = patterns.pop() if len(patterns) == 1 else None
    if pattern is None:
        return None
    first, kind = pattern
    lead, follow = (a.tag, b.tag) if first == 0 else (b.tag, a.tag)
    if kind == _INTERLEAVED:
        return f"at each of the {steps_seen} steps every `{follow}` value is written right after a `{lead}` value"
    return (
        f"at each of the {steps_seen} steps the {lanes} `{follow}` values are written after the {lanes} `{lead}` values"
    )


_INTERLEAVED = "interleaved"  # a b a b ...: each value right after its sibling's
_BLOCKED = "blocked"  # a a ... b b ...: one family's lanes, then the other's, in the same order


def _pattern(row: list[int]) -> tuple[int, str] | None:
    """Which family a step's writes start with, and how the two alternate; None for any other order."""
    lanes = len(row) // 2
    if all(row[i] != row[i + 1] for i in range(0, len(row), 2)) and len(set(row[0::2])) == 1:
        return row[0], _INTERLEAVED
    if len(set(row[:lanes])) == 1 and len(set(row[lanes:])) == 1 and row[0] != row[lanes]:
        return row[0], _BLOCKED
    return None


def _related(tag: str, other: str) -> bool:
    """`grad/weight` to `weight`, `kernel_grad` to `kernel`: the other tag's words are all in this one."""
    return set(tag_words(other)) <= set(tag_words(tag))


def _keys(lanes: list[LaneMatch]) -> list[str | None]:
    return [m.variable.key if m.variable is not None else None for m in lanes]


def _inherit(
    own: LaneMatch, theirs: LaneMatch, found: FoundCollision, sibling: FoundCollision, alike: str
) -> LaneMatch:
    if theirs.variable is None:
        return replace(
            own,
            evidence=f"{own.evidence}; lane {own.lane} of `{sibling.tag}`, written in the same place, is not named "
            "either",
        )
    return LaneMatch(
        own.lane,
        theirs.variable,
        theirs.name,
        theirs.confidence,
        f"lane {own.lane} of `{found.tag}` is written in the same place as lane {theirs.lane} of `{sibling.tag}` "
        f"({alike}; both have {found.writers} lanes of the same element counts), named from the checkpoint: "
        f"{theirs.evidence}",
    )
