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
# Assignments whose costs differ by less than this are equally good.
TIE = 1e-6
# How much worse the best other assignment must be before a match counts as certain.
CLEAR_MARGIN = 0.1
# Equal costs are broken toward write order (lane k -> k-th candidate) with a nudge far below TIE.
_ORDER_NUDGE = 1e-10

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


def tag_leaf(tag: str) -> str:
    """The tag's own name without scopes or decorations: `kernel` for `kernel/histogram`."""
    form = tag_forms(tag)[-1]
    return form[-1] if form else tag


def has_names(checkpoint: Checkpoint) -> bool:
    """False for formats that store weights by position only (Keras 3 `.weights.h5`, `.keras`)."""
    return _names_of(checkpoint).named


class _Names:
    """A checkpoint's layer weights indexed by every tail of their names (or, nameless, of their layers), so a
    tag is looked up in a few dictionary probes rather than compared with every variable."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.weights = sorted((v for v in checkpoint.variables if not v.slot), key=lambda v: _natural_key(v.key))
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
        forms = [tuple(f) for f in tag_forms(tag)]
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


def candidates(tag: str, checkpoint: Checkpoint) -> list[Variable]:
    """The checkpoint's layer weights a tag may have been logged from, best-named only, in natural key order."""
    return _names_of(checkpoint).candidates(tag)


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


def assign(cost: np.ndarray) -> tuple[list[int | None], list[float]]:
    """Optimal assignment (Hungarian algorithm) of rows to columns, minimizing the total cost, and for each row
    how much more the best assignment that denies it its column costs (inf when no other assignment exists).

    A row left without a column (more rows than columns) gets None and margin 0.
    """
    cost = np.asarray(cost, dtype=np.float64)
    rows, cols = cost.shape
    if not rows or not cols:
        return [None] * rows, [0.0] * rows
    if rows > cols:
        # Solve with the shorter side as rows; a denied pairing is the same edge seen from either side.
        by_col, col_margins = assign(cost.T)
        chosen: list[int | None] = [None] * rows
        margins = [0.0] * rows
        for j, i in enumerate(by_col):
            if i is not None:
                chosen[i], margins[i] = j, col_margins[j]
        return chosen, margins
    col_of, u, v = _hungarian(cost)
    reduced = np.maximum(cost - u[:, None] - v[None, :], 0.0)  # clip float noise: duals are feasible
    return [int(j) for j in col_of], [_denial_margin(reduced, v, col_of, i, int(col_of[i])) for i in range(rows)]


def _hungarian(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows <= columns. The column of each row, and dual potentials u, v with u[i] + v[j] <= cost[i, j],
    equal on assigned pairs (the shortest augmenting path form, one row added at a time)."""
    rows, cols = cost.shape
    u = np.zeros(rows + 1)
    v = np.zeros(cols + 1)
    p = np.zeros(cols + 1, dtype=np.int64)  # p[j]: the row (1-based) holding column j; column 0 is a sentinel
    way = np.zeros(cols + 1, dtype=np.int64)
    for i in range(1, rows + 1):
        p[0] = i
        j0 = 0
        minv = np.full(cols + 1, np.inf)
        used = np.zeros(cols + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            reduced = np.full(cols + 1, np.inf)
            reduced[1:] = cost[i0 - 1] - u[i0] - v[1:]
            better = ~used & (reduced < minv)
            minv[better] = reduced[better]
            way[better] = j0
            open_minv = np.where(used, np.inf, minv)
            j1 = int(np.argmin(open_minv))
            delta = open_minv[j1]
            u[p[used]] += delta
            v[used] -= delta
            minv[~used] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    col_of = np.zeros(rows, dtype=np.int64)
    for j in range(1, cols + 1):
        if p[j]:
            col_of[p[j] - 1] = j - 1
    return col_of, u[1:], v[1:]


def _denial_margin(reduced: np.ndarray, v: np.ndarray, col_of: np.ndarray, i: int, j: int) -> float:
    """Extra cost of the best assignment without pairing row i with column j, over reduced costs (>= 0).

    Row i moves along an alternating path either back to column j (a cycle), or to a free column; in that case
    column j is left free and other rows may shift into it, a chain that vacates some other column.
    """
    holder = np.full(reduced.shape[1], -1)
    holder[col_of] = np.arange(len(col_of))
    # Forward, from row i: each reached column's holder moves on to another column.
    ahead = _shortest(reduced[i], j, lambda k: reduced[holder[k]] if holder[k] >= 0 else None)
    cycle = ahead[j]
    free = holder < 0
    to_free = float(ahead[free].min()) if free.any() else math.inf
    if to_free == math.inf:
        return float(cycle)
    # Backward, from column j: some row other than i fills it and vacates its own column, and so on.
    fill = reduced.copy()
    fill[i] = np.inf

    def vacated(c: int) -> np.ndarray:
        step = np.full(reduced.shape[1], np.inf)
        step[col_of] = fill[:, c]
        return step

    start = np.full(reduced.shape[1], np.inf)
    start[j] = 0.0
    behind = _shortest(start, None, vacated)
    # Reduced costs of the two paths add up to the real cost once the end columns' potentials are counted.
    chain = float(np.min(np.where(np.isfinite(behind), behind - v, np.inf)))
    return float(min(cycle, to_free + chain))


def _shortest(first: np.ndarray, barred: int | None, onward) -> np.ndarray:
    """Dijkstra over columns: `first` the cost to reach each directly, `onward(k)` the step costs out of column k
    (None: a dead end); `barred` is reached but never left."""
    dist = first.astype(np.float64).copy()
    if barred is not None:
        dist[barred] = np.inf
    done = np.zeros(len(dist), dtype=bool)
    while True:
        k = int(np.argmin(np.where(done, np.inf, dist)))
        if done[k] or not np.isfinite(dist[k]):
            return dist
        done[k] = True
        step = onward(k) if k != barred else None
        if step is not None:
            dist = np.where(done, dist, np.minimum(dist, dist[k] + step))


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

    distance = np.array(
        [
            [
                histogram_distance(lane_buckets(lane), loaded(v)) if fits else np.inf
                for v, fits in zip(found, row, strict=True)
            ]
            for lane, row in enumerate(feasible)
        ]
    )
    # Infeasible pairs cost more than any whole assignment of feasible ones; equal costs lean to write order.
    impossible = float(lanes + len(found) + 1)
    nudge = _ORDER_NUDGE * np.abs(np.arange(lanes)[:, None] - np.arange(len(found))[None, :])
    chosen, margins = assign(np.where(np.isfinite(distance), distance + nudge, impossible))
    matches = []
    for lane, (j, margin) in enumerate(zip(chosen, margins, strict=True)):
        context = _Context(tag, found, elements[lane], named, refs[lane].step, len(lane_buckets(lane)))
        if j is None or not np.isfinite(distance[lane, j]):
            matches.append(LaneMatch(lane, None, None, 0.0, context.unmatched(sum(feasible[lane]))))
            continue
        # A margin reaching `impossible` means every other assignment leaves some lane without its size.
        margin = math.inf if margin >= impossible / 2 else margin
        matches.append(_judge(lane, j, found, distance[lane], margin, context))
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


def _judge(lane: int, j: int, found: list[Variable], row: np.ndarray, margin: float, context: _Context) -> LaneMatch:
    """The lane's match with a confidence from how much worse the best other assignment is, and words for why."""
    v = found[j]
    distance = float(row[j])
    name = _reported_name(v, context.tag, context.named)
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
