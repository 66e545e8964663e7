"""Attribution: which checkpoint variable is behind each lane of a histogram tag, and how sure that is.

Candidates are the checkpoint's variables named like the tag with the lane's element count; lanes are matched to
them by comparing histograms (an optimal assignment), since a name shared by several layers cannot tell them apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from tb_varscope_plugin.analysis.assignment import assign
from tb_varscope_plugin.analysis.tag_names import is_activation, is_gradient, name_segments, tag_forms, tag_leaf
from tb_varscope_plugin.analysis.variable_names import ShownNames
from tb_varscope_plugin.checkpoints.variables import Checkpoint, Variable
from tb_varscope_plugin.filesystem import natural_key
from tb_varscope_plugin.reading.events import monotone_edges
from tb_varscope_plugin.reading.run_index import RunIndex, ValueRef

# A distance this small is float noise: the values are the checkpoint's.
EXACT = 1e-9
# Assignments whose costs differ by less than this are equally good.
TIE = 1e-6
# How much worse the best other assignment must be before a match counts as certain.
CLEAR_MARGIN = 0.1
# Equal costs are broken toward write order (lane k -> k-th candidate) with a nudge far below TIE.
_ORDER_NUDGE = 1e-10
# Candidate values prepared at once (float64, sorted): 32 MB.
PREPARED_VALUES = 1 << 22


@dataclass(frozen=True)
class LaneMatch:
    """The variable found behind one lane, or None, with how sure and why."""

    lane: int
    variable: Variable | None
    name: str | None  # the variable as reported: its path, or its layer + the tag's leaf when it has no name
    confidence: float
    evidence: str


def has_names(checkpoint: Checkpoint) -> bool:
    """False for formats that store weights by position only (Keras 3 `.weights.h5`, `.keras`)."""
    return _names_of(checkpoint).named


class _Names:
    """A checkpoint's layer weights indexed by every tail of their names (or, nameless, of their layers), so a
    tag is looked up in a few dictionary probes rather than compared with every variable."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.shown = ShownNames(checkpoint)
        self.weights = sorted((v for v in checkpoint.variables if not v.slot), key=lambda v: natural_key(v.key))
        self.named = any(v.name is not None for v in self.weights)
        self.ending: dict[tuple[str, ...], set[int]] = {}  # a tail of a name -> the weights whose name ends so
        self.whole: dict[tuple[str, ...], set[int]] = {}  # a whole name -> the weights named so
        for position, v in enumerate(self.weights):
            names = {v.path, v.name or v.path} if self.named else {v.layer or ""}
            for segments in (tuple(name_segments(n)) for n in names):
                self.whole.setdefault(segments, set()).add(position)
                for start in range(len(segments)):
                    self.ending.setdefault(segments[start:], set()).add(position)

    def candidates(self, tag: str) -> list[Variable]:
        forms = list(tag_forms(tag))
        if not self.named:
            # No names to match: every weight qualifies, narrowed to the layers the tag's scope names, if any.
            forms = [forms[-1][:-1]]
            if not forms[0]:
                return list(self.weights)
        scores: dict[int, int] = {}
        for form in forms:
            # The tag ends the name (`kernel` ~ `dense/kernel`), or the name ends the tag (`my_layer/v` ~ `v`).
            found = [(len(form), self.ending.get(form, ()))]
            found += [(k, self.whole.get(form[-k:], ())) for k in range(1, len(form))]
            for score, positions in found:
                for p in positions:
                    scores[p] = max(score, scores.get(p, 0))
        if not scores:
            return [] if self.named else list(self.weights)
        best = max(scores.values())
        return [self.weights[p] for p in sorted(scores) if scores[p] == best]


# Built once per checkpoint object and kept while it is in use; the report reads a handful of checkpoints.
_NAMES: dict[int, tuple[Checkpoint, _Names]] = {}
_NAMES_KEPT = 16


def _names_of(checkpoint: Checkpoint) -> _Names:
    hit = _NAMES.get(id(checkpoint))
    if hit is None or hit[0] is not checkpoint:
        if len(_NAMES) >= _NAMES_KEPT:
            _NAMES.clear()
        hit = _NAMES[id(checkpoint)] = (checkpoint, _Names(checkpoint))
    return hit[1]


def shown_names(checkpoint: Checkpoint) -> ShownNames:
    """How the checkpoint's variables and layers are shown, built once per checkpoint."""
    return _names_of(checkpoint).shown


def candidates(tag: str, checkpoint: Checkpoint) -> list[Variable]:
    """The checkpoint's layer weights a tag may have been logged from, best-named only, in natural key order."""
    return _names_of(checkpoint).candidates(tag)


def histogram_distance(buckets: np.ndarray, values: np.ndarray) -> float:
    """0 when `values` would have been logged as `buckets`, up to 1 for nothing in common.

    Half from the range (min and max are the first left and last right edges), half from the counts: the
    normalized L1 distance of the counts `values` get on the lane's own bucket edges (as `np.histogram` counts).
    """
    return histogram_distances(buckets, [Prepared.of(values)])[0]


@dataclass(frozen=True)
class Prepared:
    """A candidate's values as distances need them: the finite ones sorted (so their least and greatest are the
    ends), and how many there are in all. Made once per candidate, for every lane it is compared with."""

    finite: np.ndarray  # sorted
    size: int

    @staticmethod
    def of(values: np.ndarray) -> Prepared:
        values = np.asarray(values, dtype=np.float64).ravel()
        return Prepared(np.sort(values[np.isfinite(values)]), len(values))


def histogram_distances(buckets: np.ndarray, candidates: list[Prepared]) -> list[float]:
    """`histogram_distance(buckets, values)` for each of `candidates`, the arithmetic done once for all: a lane is
    compared with every candidate of its size, and a model with hundreds of same-shape weights logged under one
    name has hundreds of each."""
    if not len(buckets):
        return [1.0] * len(candidates)
    edges = monotone_edges(buckets)
    # np.histogram's own counting: bins [e_i, e_i+1), the last one closed, from the sorted values.
    below = [np.searchsorted(c.finite, edges[:-1], side="left") for c in candidates]
    last = [np.searchsorted(c.finite, edges[-1:], side="right") for c in candidates]
    counts = np.diff(np.concatenate([np.stack(below), np.stack(last)], axis=1), axis=1)
    held = np.array([len(c.finite) for c in candidates])
    low = np.array([c.finite[0] if len(c.finite) else 0.0 for c in candidates])
    high = np.array([c.finite[-1] if len(c.finite) else 0.0 for c in candidates])
    size = np.array([c.size for c in candidates], dtype=np.float64)
    lo, hi = float(buckets[0, 0]), float(buckets[-1, 1])
    # As Python's max() and min() of floats, which keep the first operand against a NaN, where numpy's spread it.
    span = _python_max(np.full(len(candidates), hi - lo), high - low)
    off = np.abs(low - lo) + np.abs(high - hi)
    scale = _python_max(_python_max(_python_max(span, abs(lo)), abs(hi)), 1e-30)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(span != 0, off / span, 1.0)
    range_error = np.where(off <= 1e-7 * scale, 0.0, np.where(ratio < 1.0, ratio, 1.0))
    logged = buckets[:, 2]
    outside = size - counts.sum(axis=1)  # values the lane's edges do not hold at all
    l1 = (np.abs(logged - counts).sum(axis=1) + outside) / (float(logged.sum()) + size)
    return np.where(held > 0, 0.5 * range_error + 0.5 * l1, 1.0).tolist()


def _python_max(first: np.ndarray, second: np.ndarray | float) -> np.ndarray:
    return np.where(second > first, second, first)


def nearest_ref(refs: list[ValueRef], when: float | None) -> ValueRef:
    """The value logged closest in time to the checkpoint; the last one when its time is unknown."""
    if when is None:
        return refs[-1]
    return min(reversed(refs), key=lambda r: abs(r.wall_time - when))


def match_lanes(
    run: RunIndex,
    tag: str,
    lanes: int,
    checkpoint: Checkpoint,
    values: dict[str, np.ndarray] | None = None,
    *,
    compare_single: bool = True,
) -> list[LaneMatch]:
    """The variable behind each of the first `lanes` lanes of `tag`.

    `values` caches loaded variables across calls. With `compare_single` False, a lane whose name and element
    count leave one candidate takes it without reading histograms (enough to place a clean tag in its layer).
    """
    values = {} if values is None else values
    found = candidates(tag, checkpoint)
    named = has_names(checkpoint)
    refs = [nearest_ref(run.lane_refs(tag, lane), checkpoint.mtime) for lane in range(lanes)]
    if not found:
        why = f"no variable in checkpoint `{checkpoint.path}` is named like `{tag}`"
        return [LaneMatch(lane, None, None, 0.0, why) for lane in range(lanes)]
    # All at once: the lanes of one step often lie in one record, which is then read and parsed once.
    buckets = run.decode_all(refs)
    elements = [int(round(float(b[:, 2].sum()))) for b in buckets]
    feasible = [[math.prod(v.shape) == elements[lane] for v in found] for lane in range(lanes)]
    if not compare_single and lanes == 1 and sum(feasible[0]) == 1:
        v = found[feasible[0].index(True)]
        return [LaneMatch(0, v, _reported_name(v, tag, named, checkpoint), 1.0, "the only candidate of its size")]

    def loaded(v: Variable) -> np.ndarray:
        if v.key not in values:
            values[v.key] = v.load()
        return values[v.key]

    distance = _distances(buckets, elements, found, loaded)
    # Infeasible pairs cost more than any whole assignment of feasible ones; equal costs lean to write order.
    impossible = float(lanes + len(found) + 1)
    nudge = _ORDER_NUDGE * np.abs(np.arange(lanes)[:, None] - np.arange(len(found))[None, :])
    chosen, margins = assign(np.where(np.isfinite(distance), distance + nudge, impossible))
    matches = []
    for lane, (j, margin) in enumerate(zip(chosen, margins, strict=True)):
        context = _Context(tag, found, elements[lane], named, refs[lane].step, len(buckets[lane]), checkpoint)
        if j is None or not np.isfinite(distance[lane, j]):
            matches.append(LaneMatch(lane, None, None, 0.0, context.unmatched(sum(feasible[lane]))))
            continue
        # A margin reaching `impossible` means every other assignment leaves some lane without its size.
        margin = math.inf if margin >= impossible / 2 else margin
        matches.append(_judge(lane, j, found, distance[lane], margin, context))
    return matches


def _distances(
    buckets: list[np.ndarray], elements: list[int], found: list[Variable], loaded: Callable[[Variable], np.ndarray]
) -> np.ndarray:
    """`histogram_distance` of each lane (its buckets, its element count) to each candidate of its size, inf to the
    others. The candidates of one size are prepared (sorted) once, at most PREPARED_VALUES values at a time, and each
    lane is compared with all of them at once."""
    distance = np.full((len(buckets), len(found)), np.inf)
    by_size: dict[int, list[int]] = {}
    for j, v in enumerate(found):
        by_size.setdefault(math.prod(v.shape), []).append(j)
    for size, columns in by_size.items():
        lanes = [lane for lane, count in enumerate(elements) if count == size]
        step = max(1, PREPARED_VALUES // max(size, 1))
        for at in range(0, len(columns) if lanes else 0, step):
            chunk = columns[at : at + step]
            prepared = [Prepared.of(loaded(found[j])) for j in chunk]
            for lane in lanes:
                distance[lane, chunk] = histogram_distances(buckets[lane], prepared)
    return distance


@dataclass(frozen=True)
class _Context:
    tag: str
    found: list[Variable]
    elements: int
    named: bool
    step: int
    bucket_count: int
    checkpoint: Checkpoint

    def pool(self) -> str:
        if self.named:
            return f"named like `{self.tag}` with {self.elements} elements"
        return f"of {self.elements} elements (the checkpoint stores no variable names, so every weight is a candidate)"

    def unmatched(self, feasible: int) -> str:
        if not feasible:
            shapes = ", ".join(f"`{v.path}` {list(v.shape)}" for v in self.found)
            return f"no checkpoint variable named like `{self.tag}` has {self.elements} elements (found {shapes})"
        return f"every checkpoint variable {self.pool()} went to a lane it fits better"


def _judge(lane: int, j: int, found: list[Variable], row: np.ndarray, margin: float, context: _Context) -> LaneMatch:
    """The lane's match with a confidence from how much worse the best other assignment is, and words for why."""
    v = found[j]
    distance = float(row[j])
    name = _reported_name(v, context.tag, context.named, context.checkpoint)
    if distance <= EXACT:
        said = (
            f"values equal checkpoint `{v.key}` at step {context.step} "
            f"(min, max and all {context.bucket_count} bucket counts match)"
        )
    else:
        said = f"values closest to checkpoint `{v.key}` at step {context.step} (histogram distance {distance:.2f})"
    others = [(float(d), k) for k, d in enumerate(row) if k != j and np.isfinite(d)]
    if margin == math.inf or not others:
        return LaneMatch(lane, v, name, float(round(1.0 - distance, 2)), f"{said}; the only variable {context.pool()}")
    if margin <= TIE:
        ties = 1 + sum(1 for d, _ in others if abs(d - distance) <= TIE)
        return LaneMatch(
            lane,
            v,
            name,
            float(round(0.5 / max(ties, 2), 2)),
            f"{said}; but {max(ties, 2)} candidates {context.pool()} fit equally well, so this is a write-order "
            f"guess (lane {lane} taken as the {_ordinal(j + 1)} of them by checkpoint key)",
        )
    confidence = float(round((1.0 - distance) * min(1.0, margin / CLEAR_MARGIN), 2))
    nearest, k = min(others)
    if nearest >= distance:
        why = (
            f"closest of {len(others) + 1} candidates {context.pool()} by histogram distance "
            f"{distance:.2f} vs {nearest:.2f}"
        )
    else:
        why = (
            f"best joint assignment of the {len(others) + 1} candidates {context.pool()}: `{found[k].key}` is nearer "
            f"({nearest:.2f}) but fits another lane better"
        )
    return LaneMatch(lane, v, name, confidence, f"{said}; {why}")


def _reported_name(v: Variable, tag: str, named: bool, checkpoint: Checkpoint) -> str:
    # A weight stored by position (`dense_1/vars/0`) is reported as what the tag calls it, in its layer.
    return shown_names(checkpoint).path(v, None if named else tag_leaf(tag))


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def attribute_lanes(
    run: RunIndex, tag: str, lanes: int, checkpoint: Checkpoint | None, values: dict[str, np.ndarray] | None = None
) -> list[LaneMatch]:
    """The variable behind each of the `lanes` lanes of a same-step colliding `tag`, or why none is named.

    Activations have no variable, and gradients are not in checkpoints: their values are never compared with the
    weights' (a gradient lane may still be named from its weight's family, see `siblings`)."""
    if is_activation(tag):
        why = (
            "activations (a module's output, not a weight): no variable is behind them, so no checkpoint names "
            "this lane"
        )
        return _by_write_order(lanes, why)
    if checkpoint is None:
        why = (
            "no checkpoint found beside this run (name one with --checkpoint), so lanes are told apart by write "
            "order only"
        )
        return _by_write_order(lanes, why)
    if is_gradient(tag):
        return [
            LaneMatch(
                lane,
                None,
                None,
                0.0,
                "gradients are not stored in checkpoints, so their values are not compared with the weights'; no "
                "colliding tag of this run is written in the same place with the same lanes to name it from",
            )
            for lane in range(lanes)
        ]
    return match_lanes(run, tag, lanes, checkpoint, values)


def attribute_restart(
    run: RunIndex,
    tag: str,
    lanes: int,
    restarts: tuple[tuple[int, int], ...],
    steps: tuple[int, int],
    checkpoint: Checkpoint | None,
    values: dict[str, np.ndarray] | None = None,
) -> list[LaneMatch]:
    """Lanes of a tag written again after the run went back (`restarts`: step reached, step gone back to; `steps`:
    the first and last step written twice): one variable, before and after, named from lane 0's values."""
    (reached, back), *_ = restarts
    twice = f"steps {steps[0]}..{steps[1]}"
    first = attribute_lanes(run, tag, 1, checkpoint, values)[0]
    matches = [
        replace(
            first,
            evidence=f"values before and after the restart at step {reached} (the run went back to step {back}): "
            f"lane 0 holds the values written first at {twice}, and the only ones at every other step; "
            f"{first.evidence}",
        )
    ]
    same = "the same variable as lane 0, one tag written twice" if first.variable else "unnamed, as lane 0 is"
    for lane in range(1, lanes):
        said = f"values after the restart at step {reached} (the run went back to step {back}), at {twice} again"
        matches.append(replace(first, lane=lane, evidence=f"{said}: {same}"))
    return matches


def _by_write_order(lanes: int, why: str) -> list[LaneMatch]:
    """Lanes left unnamed for `why`, each said to be the k-th value written at each step."""
    return [
        LaneMatch(lane, None, None, 0.0, f"{why}; lane {lane} is the {_ordinal(lane + 1)} value written at each step")
        for lane in range(lanes)
    ]
