"""The assignment solver: lanes to candidate variables at least total cost, and how firm each pairing is."""

from __future__ import annotations

import math

import numpy as np


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
