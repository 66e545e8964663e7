"""The split plan: for every run, which histogram values get a tag of their own, and what that tag is called.

Lane k of a same-step colliding tag becomes a tag named after the variable the report found behind it, in the
writer's own style; where several event files of a run hold a tag at one step, the newer file keeps the tag and the
older file's values at those steps go to `<tag>/superseded`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tb_varscope_plugin.analysis.tag_names import tag_base
from tb_varscope_plugin.reading.run_index import EventFile, RunIndex, Series
from tb_varscope_plugin.schema import SAME_STEP, RunReport

LANE = "lane"
SUPERSEDED = "superseded"
_SEPARATORS = "/."


_Held = tuple[int, str, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Move:
    """Values of one tag in one event file that are written under `new_tag`."""

    kind: str  # LANE: a lane of a same-step collision; SUPERSEDED: steps a newer file of the run also holds
    tag: str  # the tag before this move: LOGDIR's, or for SUPERSEDED the lane's new tag when the lane was split
    lane: int | None  # LANE: which lane
    new_tag: str
    file: str  # event file name
    steps: tuple[int, ...]  # the steps moved, in write order
    kept_by: str | None = None  # SUPERSEDED: the newer file that keeps the tag at these steps


@dataclass
class FilePlan:
    """What changes in one event file: the values, by record offset and index in the record, that change tag."""

    file: EventFile
    retag: dict[int, list[tuple[int, str, str]]] = field(default_factory=dict)  # offset -> [(index, old, new)]

    def add(self, offset: int, index: int, old: str, new: str) -> None:
        self.retag.setdefault(offset, []).append((index, old, new))

    def add_all(self, series: Series, positions: np.ndarray, old: str, new: str) -> None:
        """Retags the values at `positions` of `series` (the file's series of `old`)."""
        offsets, indices = series.offsets[positions].tolist(), series.indices[positions].tolist()
        retag = self.retag
        for offset, index in zip(offsets, indices, strict=True):
            entries = retag.get(offset)
            if entries is None:
                retag[offset] = [(index, old, new)]
            else:
                entries.append((index, old, new))


@dataclass
class RunPlan:
    run: RunIndex
    files: list[FilePlan]
    moves: list[Move]


def plan_run(run: RunIndex, report: RunReport) -> RunPlan:
    """The split of one run, its lanes named from the run's part of the report."""
    taken = set().union(*(f.tags() for f in run.files))
    names: dict[tuple[str, int], str] = {}
    for collision in report["collisions"]:
        if collision["kind"] != SAME_STEP:
            continue
        tag = collision["tag"]
        for entry in collision["lanes"]:
            k = entry["lane"]
            names[(tag, k)] = _unclaimed(lane_tag(tag, entry["variable"], k), f"lane_{k}", taken)
    split_tags = {tag for tag, _ in names}
    files = [FilePlan(f) for f in run.files]
    moves: list[Move] = []
    # The values each tag holds once lanes are apart: tag -> [(file number, LOGDIR tag, series positions, steps)].
    holders: dict[str, list[_Held]] = {}
    for number, f in enumerate(run.files):
        for tag, series in f.series.items():
            steps = series.steps.astype(np.int64)
            if tag not in split_tags:
                holders.setdefault(tag, []).append((number, tag, np.arange(len(steps)), steps))
                continue
            lane = 0
            while (tag, lane) in names:
                positions = series.lane_positions(lane)
                new = names[(tag, lane)]
                if len(positions):
                    files[number].add_all(series, positions, tag, new)
                    moves.append(Move(LANE, tag, lane, new, f.name, tuple(steps[positions].tolist())))
                    holders.setdefault(new, []).append((number, tag, positions, steps[positions]))
                lane += 1
    for tag, held in sorted(holders.items()):
        if len(held) > 1:
            moves.extend(_supersede(run, files, tag, held, taken))
    for plan in files:
        _keep_first_metadata(plan)
    return RunPlan(run, files, moves)


def lane_tag(tag: str, variable: str | None, lane: int) -> str:
    """The tag lane `lane` of `tag` gets: the variable's name in the tag's own decorations, `<tag>/lane_<k>` when
    the lane has no variable.

    `my_variable1_0/histogram` + `my_layer_1/my_variable1` -> `my_layer_1/my_variable1_0/histogram`;
    `kernel/histogram` + `sequential/dense_1/kernel` -> `sequential/dense_1/kernel/histogram`; `weight` + `1.0.weight`
    -> `1.0.weight`. A scope the tag has but the variable's name lacks is kept in front of it.
    """
    if not variable:
        return f"{tag}/lane_{lane}"
    base = tag_base(tag)
    if not tag.startswith(base):
        return f"{tag}/lane_{lane}"
    suffix = tag[len(base) :]
    # The longest tail of the base, cut at a separator, that the variable's name ends with.
    for cut in [0, *(i + 1 for i, c in enumerate(base) if c in _SEPARATORS)]:
        tail = base[cut:]
        if variable == tail or (variable.endswith(tail) and variable[-len(tail) - 1] in _SEPARATORS):
            return base[:cut] + variable + suffix
    return variable + suffix


def superseded_tag(tag: str, level: int) -> str:
    """Where an older file's values go when `level` newer files of the run hold the tag at the same step."""
    return f"{tag}/{SUPERSEDED}" if level == 1 else f"{tag}/{SUPERSEDED}_{level}"


def _unclaimed(wanted: str, fallback: str, taken: set[str]) -> str:
    """`wanted`, or, when the run has that tag already, `wanted/fallback` (numbered further if need be)."""
    name = wanted
    if name in taken:
        name = f"{wanted}/{fallback}"
        number = 2
        while name in taken:
            name = f"{wanted}/{fallback}_{number}"
            number += 1
    taken.add(name)
    return name


def _supersede(run: RunIndex, files: list[FilePlan], tag: str, held: list[_Held], taken: set[str]) -> list[Move]:
    """Moves the values of `tag` at steps a newer file also holds: the newest keeps the step, older ones step aside,
    the k-th newest under `superseded_tag(tag, k)`, so every tag ends up with one value per step."""
    held = sorted(held, key=lambda h: h[0])  # file order is name order: event file names start with their time
    moves = []
    names: dict[int, str] = {}
    for at, (number, source, positions, steps) in enumerate(held[:-1]):
        newer = held[at + 1 :]
        level = np.zeros(len(steps), dtype=np.int64)
        for h in newer:
            level += np.isin(steps, h[3])
        f = run.files[number]
        series = f.series[source]
        offsets, indices = series.offsets.tolist(), series.indices.tolist()
        for k in sorted(set(level[level > 0].tolist())):
            if k not in names:
                names[k] = _unclaimed(superseded_tag(tag, k), "moved", taken)
            chosen = np.flatnonzero(level == k)
            for i in positions[chosen].tolist():
                _retarget(files[number], offsets[i], indices[i], source, names[k])
            moved = steps[chosen]
            newest = next(run.files[h[0]].name for h in reversed(newer) if np.isin(moved, h[3]).any())
            moves.append(Move(SUPERSEDED, tag, None, names[k], f.name, tuple(moved.tolist()), newest))
    return moves


def _retarget(plan: FilePlan, offset: int, index: int, old: str, new: str) -> None:
    entries = plan.retag.setdefault(offset, [])
    for at, (i, source, _) in enumerate(entries):
        if i == index:
            entries[at] = (i, source, new)
            return
    entries.append((index, old, new))


def _keep_first_metadata(plan: FilePlan) -> None:
    """TF2 writers put a tag's metadata on its first value in a file only: where that value moved away, the first
    value left under the tag is rewritten too, so it can carry the metadata (its tag stays)."""
    moved = {(offset, index) for offset, entries in plan.retag.items() for index, _, _ in entries}
    for tag, series in plan.file.series.items():
        if not len(series) or (int(series.offsets[0]), int(series.indices[0])) not in moved:
            continue
        for offset, index in zip(series.offsets.tolist(), series.indices.tolist(), strict=True):
            if (offset, index) not in moved:
                plan.add(offset, index, tag, tag)
                break
