"""Attribution: which checkpoint variable is behind each lane of a histogram tag, and how sure that is.

Candidates are the checkpoint's variables named like the tag with the lane's element count; lanes are matched to
them by comparing histograms (an optimal assignment), since a name shared by several layers cannot tell them apart.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from tb_varscope_plugin.checkpoint import Checkpoint, Variable
from tb_varscope_plugin.run_index import RunIndex, ValueRef

# A distance this small is float noise: the values are the checkpoint's.
EXACT = 1e-9
# How much worse the best other assignment must be before a match counts as certain.
CLEAR_MARGIN = 0.1
# Costs of pairs that cannot be matched (different element count); kept finite for the assignment.
_IMPOSSIBLE = 1e6
# Equal costs are broken toward write order (lane k -> k-th candidate) with a nudge far below EXACT.
_ORDER_NUDGE = 1e-12

_SEGMENT_SPLIT = re.compile(r"[/.]")
_HISTOGRAM_SUFFIX = "/histogram"
_REPLICA_SUFFIX = re.compile(r"[:_]\d+$")  # `:0` of a TF variable name, `_0` once a callback made `:` a `_`
_OUTPUT_SUFFIX = re.compile(r":\d+$")


@dataclass(frozen=True)
class LaneMatch:
    """The variable found behind one lane, or None, with how sure and why."""

    lane: int
    variable: Variable | None
    name: str | None  # the variable as reported: its path, or its layer + the tag's leaf when it has no name
    confidence: float
    evidence: str


def tag_forms(tag: str) -> list[list[str]]:
    """The segments a tag may stand for once logging decorations are removed, most literal first.

    `my_variable1_0/histogram` -> [`my_variable1_0`], [`my_variable1`]; `0.weight` -> [`0`, `weight`].
    """
    base = tag[: -len(_HISTOGRAM_SUFFIX)] if tag.endswith(_HISTOGRAM_SUFFIX) else tag
    forms = [base]
    stripped = _REPLICA_SUFFIX.sub("", base)
    if stripped and stripped != base:
        forms.append(stripped)
    return [[s for s in _SEGMENT_SPLIT.split(f) if s] for f in forms]


def tag_base(tag: str) -> str:
    """The variable path a tag spells, without `/histogram` and the `:0`/`_0` the writer added to it."""
    if tag.endswith(_HISTOGRAM_SUFFIX):
        return _REPLICA_SUFFIX.sub("", tag[: -len(_HISTOGRAM_SUFFIX)]) or tag
    return _OUTPUT_SUFFIX.sub("", tag) or tag


def name_segments(name: str) -> list[str]:
    return [s for s in _SEGMENT_SPLIT.split(_OUTPUT_SUFFIX.sub("", name)) if s]


def match_score(tag: str, name: str) -> int:
    """How many trailing segments a tag and a variable name share when one ends the other (0: no match).

    `kernel` ~ `sequential/dense_1/kernel` (1), `weight` ~ `2.weight` (1), `my_variable1_0/histogram` ~
    `my_variable1` (1), `dense/kernel` ~ `sequential/dense/kernel` (2); `dense/kernel` !~ `dense_1/kernel`.
    """
    target = name_segments(name)
    best = 0
    for form in tag_forms(tag):
        common = 0
        for a, b in zip(reversed(form), reversed(target), strict=False):
            if a != b:
                break
            common += 1
        if common and common in (len(form), len(target)):
            best = max(best, common)
    return best


def tag_leaf(tag: str) -> str:
    """The tag's own name without scopes or decorations: `kernel` for `kernel/histogram`."""
    form = tag_forms(tag)[-1]
    return form[-1] if form else tag


def has_names(checkpoint: Checkpoint) -> bool:
    """False for formats that store weights by position only (Keras 3 `.weights.h5`, `.keras`)."""
    return any(v.name is not None for v in checkpoint.variables if not v.slot)


def candidates(tag: str, checkpoint: Checkpoint) -> list[Variable]:
    """The checkpoint's layer weights a tag may have been logged from, best-named first, in natural key order."""
    weights = [v for v in checkpoint.variables if not v.slot]
    if has_names(checkpoint):
        scored = [(max(match_score(tag, v.path), match_score(tag, v.name or "")), v) for v in weights]
    else:
        # No names to match: every weight qualifies, narrowed to the layers the tag's scope names, if any.
        scope = tag_forms(tag)[-1][:-1]
        scored = [(match_score("/".join(scope), v.layer or "") if scope else 1, v) for v in weights]
        if not any(score for score, _ in scored):
            scored = [(1, v) for v in weights]
    best = max((score for score, _ in scored), default=0)
    if not best:
        return []
    return sorted((v for score, v in scored if score == best), key=lambda v: _natural_key(v.key))


def histogram_distance(buckets: np.ndarray, values: np.ndarray) -> float:
    """0 when `values` would have been logged as `buckets`, up to 1 for nothing in common.

    Half from the range (min and max are the first left and last right edges), half from the counts: the
    normalized L1 distance of the counts `values` get on the lane's own bucket edges.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    finite = values[np.isfinite(values)]
    if not len(buckets) or not len(finite):
        return 1.0
    lo, hi = float(buckets[0, 0]), float(buckets[-1, 1])
    span = max(hi - lo, float(finite.max() - finite.min()))
    off = abs(float(finite.min()) - lo) + abs(float(finite.max()) - hi)
    range_error = 0.0 if off <= 1e-7 * max(span, abs(lo), abs(hi), 1e-30) else min(1.0, off / span if span else 1.0)
    # Legacy histograms may carry a last limit past `max`; edges must not run backwards for np.histogram.
    edges = np.maximum.accumulate(np.append(buckets[:, 0], hi))
    counts, _ = np.histogram(finite, bins=edges)
    logged = buckets[:, 2]
    outside = len(values) - counts.sum()  # values the lane's edges do not hold at all
    l1 = (float(np.abs(logged - counts).sum()) + outside) / (float(logged.sum()) + len(values))
    return 0.5 * range_error + 0.5 * l1


def assign(cost: list[list[float]]) -> list[int | None]:
    """Optimal assignment (Hungarian algorithm): for each row the column it gets, minimizing the total cost.

    Rows beyond the number of columns get None.
    """
    rows = len(cost)
    cols = len(cost[0]) if rows else 0
    if not rows or not cols:
        return [None] * rows
    if rows > cols:
        by_col = assign([list(c) for c in zip(*cost, strict=True)])
        result: list[int | None] = [None] * rows
        for j, i in enumerate(by_col):
            if i is not None:
                result[i] = j
        return result
    # Potentials u (rows) and v (columns); p[j] is the row holding column j, 1-based with 0 as the free slot.
    u = [0.0] * (rows + 1)
    v = [0.0] * (cols + 1)
    p = [0] * (cols + 1)
    way = [0] * (cols + 1)
    for i in range(1, rows + 1):
        p[0] = i
        j0 = 0
        minv = [math.inf] * (cols + 1)
        used = [False] * (cols + 1)
        while True:
            used[j0] = True
            i0 = p[j0]
            delta = math.inf
            j1 = 0
            for j in range(1, cols + 1):
                if not used[j]:
                    reduced = cost[i0 - 1][j - 1] - u[i0] - v[j]
                    if reduced < minv[j]:
                        minv[j] = reduced
                        way[j] = j0
                    if minv[j] < delta:
                        delta = minv[j]
                        j1 = j
            for j in range(cols + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    result = [None] * rows
    for j in range(1, cols + 1):
        if p[j]:
            result[p[j] - 1] = j - 1
    return result


def _total(cost: list[list[float]], chosen: list[int | None]) -> float:
    return sum(cost[i][j] for i, j in enumerate(chosen) if j is not None)


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
    # Element counts are read from the index where possible; buckets are decoded only when compared.
    buckets: dict[int, np.ndarray] = {}

    def lane_buckets(lane: int) -> np.ndarray:
        if lane not in buckets:
            buckets[lane] = run.decode(refs[lane])
        return buckets[lane]

    elements = [int(round(float(lane_buckets(lane)[:, 2].sum()))) for lane in range(lanes)]
    feasible = [[math.prod(v.shape) == elements[lane] for v in found] for lane in range(lanes)]
    if not compare_single and lanes == 1 and sum(feasible[0]) == 1:
        v = found[feasible[0].index(True)]
        return [LaneMatch(0, v, _reported_name(v, tag, named), 1.0, "the only candidate of its size")]

    def loaded(v: Variable) -> np.ndarray:
        if v.key not in values:
            values[v.key] = v.load()
        return values[v.key]

    cost = [
        [
            histogram_distance(lane_buckets(lane), loaded(v)) + _ORDER_NUDGE * abs(lane - j) if fits else _IMPOSSIBLE
            for j, (v, fits) in enumerate(zip(found, feasible[lane], strict=True))
        ]
        for lane in range(lanes)
    ]
    chosen = [j if j is not None and cost[i][j] < _IMPOSSIBLE else None for i, j in enumerate(assign(cost))]
    best_total = _total(cost, chosen)
    matches = []
    for lane, j in enumerate(chosen):
        context = _Context(tag, found, elements[lane], named, refs[lane].step, len(lane_buckets(lane)))
        if j is None:
            matches.append(LaneMatch(lane, None, None, 0.0, context.unmatched(sum(feasible[lane]))))
            continue
        runner_up = _runner_up(cost, lane, j, best_total)
        matches.append(_judge(lane, found[j], cost[lane], j, runner_up, context))
    return matches


@dataclass(frozen=True)
class _Context:
    tag: str
    found: list[Variable]
    elements: int
    named: bool
    step: int
    bucket_count: int

    def pool(self) -> str:
        if self.named:
            return f"named like `{self.tag}` with {self.elements} elements"
        return f"of {self.elements} elements (the checkpoint stores no variable names, so every weight is a candidate)"

    def unmatched(self, feasible: int) -> str:
        if not feasible:
            shapes = ", ".join(f"`{v.path}` {list(v.shape)}" for v in self.found)
            return f"no checkpoint variable named like `{self.tag}` has {self.elements} elements (found {shapes})"
        return f"every checkpoint variable {self.pool()} went to a lane it fits better"


def _runner_up(cost: list[list[float]], lane: int, j: int, best_total: float) -> tuple[float, int | None]:
    """How much the best assignment that denies `lane` its column costs extra, and what the lane gets there."""
    denied = [row[:] for row in cost]
    denied[lane][j] = _IMPOSSIBLE
    other = assign(denied)
    if any(k is not None and denied[i][k] >= _IMPOSSIBLE for i, k in enumerate(other) if i != lane) or (
        other[lane] is None or denied[lane][other[lane]] >= _IMPOSSIBLE
    ):
        # Denying this pairing leaves the lane, or another, without a fitting variable: there is no runner-up.
        return math.inf, None
    return _total(denied, other) - best_total, other[lane]


def _judge(
    lane: int, v: Variable, row: list[float], j: int, runner_up: tuple[float, int | None], context: _Context
) -> LaneMatch:
    margin, alternative = runner_up
    distance = row[j] - _ORDER_NUDGE * abs(lane - j)
    name = _reported_name(v, context.tag, context.named)
    if distance <= EXACT:
        said = (
            f"values equal checkpoint `{v.key}` at step {context.step} "
            f"(min, max and all {context.bucket_count} bucket counts match)"
        )
    else:
        said = f"values closest to checkpoint `{v.key}` at step {context.step} (histogram distance {distance:.2f})"
    if margin == math.inf:
        return LaneMatch(lane, v, name, float(round(1.0 - distance, 2)), f"{said}; the only variable {context.pool()}")
    if margin <= EXACT:
        ties = max(2, sum(1 for c in row if c < _IMPOSSIBLE and abs(c - row[j]) <= EXACT))
        return LaneMatch(
            lane,
            v,
            name,
            float(round(0.5 / ties, 2)),
            f"{said}; but {ties} candidates {context.pool()} fit equally well, so this is a write-order guess "
            f"(lane {lane} taken as the {_ordinal(j + 1)} of them by checkpoint key)",
        )
    other = row[alternative] - _ORDER_NUDGE * abs(lane - alternative)
    confidence = float(round((1.0 - distance) * min(1.0, margin / CLEAR_MARGIN), 2))
    count = sum(1 for c in row if c < _IMPOSSIBLE)
    return LaneMatch(
        lane,
        v,
        name,
        confidence,
        f"{said}; closest of {count} candidates {context.pool()} by histogram distance {distance:.2f} vs {other:.2f}",
    )


def _reported_name(v: Variable, tag: str, named: bool) -> str:
    # A weight stored by position (`dense_1/vars/0`) is reported as what the tag calls it, in its layer.
    if not named and v.layer:
        return f"{v.layer}/{tag_leaf(tag)}"
    return v.path


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _natural_key(text: str) -> list[tuple[int, int | str]]:
    return [(1, int(part)) if part.isdigit() else (0, part) for part in re.split(r"(\d+)", text)]


def attribute_lanes(
    run: RunIndex, collision: dict, checkpoint: Checkpoint | None, values: dict[str, np.ndarray] | None = None
) -> None:
    """Fills `variable`, `checkpoint_key`, `shape`, `confidence` and `evidence` of a same-step collision's lanes."""
    lanes = collision["lanes"]
    if not lanes:
        return
    if checkpoint is None:
        for lane in lanes:
            lane.update(
                variable=None,
                checkpoint_key=None,
                shape=None,
                confidence=0.0,
                evidence="no checkpoint found beside this run (name one with --checkpoint), so lanes are told "
                f"apart by write order only: lane {lane['lane']} is the {_ordinal(lane['lane'] + 1)} value "
                "written at each step",
            )
        return
    for lane, found in zip(lanes, match_lanes(run, collision["tag"], len(lanes), checkpoint, values), strict=True):
        v = found.variable
        lane.update(
            variable=found.name,
            checkpoint_key=v.key if v is not None else None,
            shape=list(v.shape) if v is not None else None,
            confidence=found.confidence,
            evidence=found.evidence,
        )
