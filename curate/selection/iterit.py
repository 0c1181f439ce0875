"""IterIT selection: complexity x diversity greedy and the per-epoch reordering (Jia et al. 2024,
arXiv 2412.17365, §3.2-3.3 and Algorithm 1, as the reference implementation runs it; docs/iterit.md §5-§6).

Greedy score of candidate d at step t:

    S_t(d) = S_COM(d) * S_DIV_t(d),    S_DIV_t(d) = sum_g w0[d, g] * scale_t[g]

where w0 is the L2-normalised TF-IDF row of d's response and scale_t[g] is the decay factor of n-gram
column g: it starts at 1 and is multiplied by lambda (`decay`) each time a picked response contains g.
This is the closed form of the reference's in-place column decay (floating-point rounding aside).
Already-picked rows are out of the race (the reference zeroes them). Ties go to the lowest index.
When every remaining product is <= 0 (lambda = 0 with all n-grams covered, zero complexity, ...) the
rest of the budget is filled by complexity, descending; the reference would re-pick index 0 instead.

Two implementations share one arithmetic (`_weights` then `_segment_sums`), so their picks are identical:
- `greedy_picks(..., naive=True)`: recompute every row sum at every step, O(K * nnz), like the
  reference (only the weights of the decayed columns are refreshed before each full recompute).
- `greedy_picks(...)`: lazy greedy. Scores never increase (weights only decay and complexity is
  >= 0 for every row that can win), so a max-heap of stale scores holds upper bounds; only rows that
  surface at the top are recomputed, and a row recomputed after the latest pick is exact.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import scipy.sparse as sp

from curate.errors import UsageError
from curate.selection.tfidf import fit_tfidf

ELIGIBLE_BELOW = 1.0  # reference: only samples with complexity < 1.0 are candidates
_MAX_BATCH = 4096  # rows recomputed per vectorised call in the lazy greedy


@dataclass(frozen=True)
class Pick:
    """One greedy pick: row index, its informativeness S_DIV and score S_COM * S_DIV when picked."""

    index: int
    informativeness: float
    score: float


def _segment_positions(ptr: np.ndarray, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the entries of `segments` in a ptr-delimited array (CSR rows), and their lengths."""
    starts = ptr[segments]
    lengths = ptr[segments + 1] - starts
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum())), lengths


def _segment_sums(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Sum of each consecutive segment of `values` (empty segments sum to 0).

    The one summation both greedy implementations use: `np.add.reduceat` reduces each segment on its
    own, so a row gets the same float whether it is summed alone or with the whole matrix.
    """
    starts = np.cumsum(lengths) - lengths
    sums = np.zeros(len(lengths), dtype=np.float64)
    nonempty = lengths > 0
    if nonempty.any():
        sums[nonempty] = np.add.reduceat(values, starts[nonempty])
    return sums


def _weights(matrix: sp.csr_matrix, column_scale: np.ndarray, positions: np.ndarray | slice) -> np.ndarray:
    """Current (decayed) weights w0[d, g] * column_scale[g] of the CSR entries at `positions`."""
    return matrix.data[positions] * column_scale[matrix.indices[positions]]


def row_informativeness(matrix: sp.csr_matrix, column_scale: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """S_DIV of `rows` (all rows if None): per row, the sum of w0[d, g] * column_scale[g]."""
    if rows is None:
        return _segment_sums(_weights(matrix, column_scale, slice(None)), np.diff(matrix.indptr))
    positions, lengths = _segment_positions(matrix.indptr, np.asarray(rows))
    return _segment_sums(_weights(matrix, column_scale, positions), lengths)


def _checked_complexity(complexity: Sequence[float], n: int) -> np.ndarray:
    c = np.asarray(complexity, dtype=np.float64).reshape(-1)
    if len(c) != n:
        raise ValueError(f"complexity has {len(c)} values for {n} responses")
    if np.isnan(c).any():
        raise ValueError("complexity contains NaN: quarantine those rows before selection")
    if not np.isfinite(c).all():
        raise ValueError("complexity contains +-inf")
    return c


def _fill_by_complexity(
    picks: list[Pick], budget: int, c: np.ndarray, picked: np.ndarray,
    matrix: sp.csr_matrix, scale: np.ndarray, decay: float,
) -> None:
    """Every remaining product is <= 0: take the rest by complexity, descending, ties by index."""
    remaining = np.flatnonzero(~picked)
    remaining = remaining[np.argsort(-c[remaining], kind="stable")]
    for r in remaining[: budget - len(picks)]:
        r = int(r)
        informativeness = float(row_informativeness(matrix, scale, np.array([r]))[0])
        picks.append(Pick(r, informativeness, float(c[r] * informativeness)))
        _decay_columns(matrix, scale, r, decay)
        picked[r] = True


def _decay_columns(matrix: sp.csr_matrix, scale: np.ndarray, row: int, decay: float) -> np.ndarray:
    """Multiply the scale of every n-gram column present in `row` by `decay`; return those columns."""
    columns = matrix.indices[matrix.indptr[row]: matrix.indptr[row + 1]]
    scale[columns] *= decay
    return columns


def _naive(matrix: sp.csr_matrix, c: np.ndarray, budget: int, decay: float) -> list[Pick]:
    n, m = matrix.shape
    scale = np.ones(m)
    picked = np.zeros(n, dtype=bool)
    picks: list[Pick] = []
    row_lengths = np.diff(matrix.indptr)
    # Current weights in CSR order; after a pick only the entries of its columns change.
    weights = _weights(matrix, scale, slice(None))
    by_column = np.argsort(matrix.indices, kind="stable")
    column_ptr = np.concatenate([[0], np.cumsum(np.bincount(matrix.indices, minlength=m))])
    while len(picks) < budget:
        informativeness = _segment_sums(weights, row_lengths)
        score = c * informativeness
        score[picked] = -np.inf
        best = int(np.argmax(score))  # first index on ties
        if not score[best] > 0:
            break
        picks.append(Pick(best, float(informativeness[best]), float(score[best])))
        columns = _decay_columns(matrix, scale, best, decay)
        changed = by_column[_segment_positions(column_ptr, columns)[0]]
        weights[changed] = _weights(matrix, scale, changed)
        picked[best] = True
    _fill_by_complexity(picks, budget, c, picked, matrix, scale, decay)
    return picks


def _lazy(matrix: sp.csr_matrix, c: np.ndarray, budget: int, decay: float) -> list[Pick]:
    n = matrix.shape[0]
    scale = np.ones(matrix.shape[1])
    picked = np.zeros(n, dtype=bool)
    picks: list[Pick] = []
    informativeness = row_informativeness(matrix, scale)
    score = c * informativeness
    # Heap entries (-score, row, step computed, informativeness); rows with score <= 0 never win.
    heap = [(-float(score[r]), int(r), 0, float(informativeness[r])) for r in np.flatnonzero(score > 0)]
    heapq.heapify(heap)
    step = 0
    while len(picks) < budget and heap:
        batch = 1
        while heap and heap[0][2] != step:  # the top is stale: recompute it (and a few below it)
            stale = []
            while heap and heap[0][2] != step and len(stale) < batch:
                stale.append(heapq.heappop(heap)[1])
            rows = np.array(stale)
            fresh_inf = row_informativeness(matrix, scale, rows)
            fresh_score = c[rows] * fresh_inf
            for r, s, i in zip(stale, fresh_score.tolist(), fresh_inf.tolist()):
                if s > 0:
                    heapq.heappush(heap, (-s, r, step, i))
            batch = min(2 * batch, _MAX_BATCH)
        if not heap:
            break
        neg_score, best, _, best_inf = heapq.heappop(heap)
        picks.append(Pick(best, best_inf, -neg_score))
        _decay_columns(matrix, scale, best, decay)
        picked[best] = True
        step += 1
    _fill_by_complexity(picks, budget, c, picked, matrix, scale, decay)
    return picks


def greedy_picks(matrix: sp.csr_matrix, complexity: Sequence[float], k: int, decay: float, *, naive: bool = False) -> list[Pick]:
    """Greedy IterIT selection on a fitted TF-IDF matrix: min(k, n) distinct picks, in pick order."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must be in [0, 1], got {decay}")
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    if not matrix.has_sorted_indices:
        matrix = matrix.sorted_indices()  # a copy: the caller's matrix is left as it is
    if matrix.nnz and matrix.data.min() < 0:
        raise ValueError("TF-IDF weights must be non-negative")
    c = _checked_complexity(complexity, matrix.shape[0])
    budget = min(k, matrix.shape[0])
    return (_naive if naive else _lazy)(matrix, c, budget, float(decay))


def greedy_select_detailed(responses: Sequence[str], complexity: Sequence[float], k: int, decay: float, *, naive: bool = False) -> list[Pick]:
    """IterIT's combined selection over `responses` (TF-IDF documents exactly as given)."""
    responses = list(responses)
    c = _checked_complexity(complexity, len(responses))
    return greedy_picks(fit_tfidf(responses).matrix, c, k, decay, naive=naive)


def greedy_select(responses: Sequence[str], complexity: Sequence[float], k: int, decay: float) -> list[int]:
    """Indices into `responses` in pick order (incremental implementation)."""
    return [p.index for p in greedy_select_detailed(responses, complexity, k, decay)]


def greedy_select_naive(responses: Sequence[str], complexity: Sequence[float], k: int, decay: float) -> list[int]:
    """Same as `greedy_select`, recomputing every row sum at every step (the reference's cost)."""
    return [p.index for p in greedy_select_detailed(responses, complexity, k, decay, naive=True)]


class BudgetTooSmall(UsageError, ValueError):
    """selection.ratio gives K < 1: no row to select per round."""


def smallest_ratio(n: int) -> float:
    """The smallest share with 2 significant digits whose K = floor(n * share) is at least 1 (n >= 1)."""
    digits = 1 - math.floor(math.log10(1 / n))
    share = math.ceil(round(10**digits / n, 9)) / 10**digits
    while math.floor(n * share) < 1:  # float rounding of n * share just under 1
        share += 10**-digits
    return share


def _budget(n: int, ratio: float) -> int:
    return min(int(ratio) if ratio > 1 else math.floor(n * ratio), n)


def budget_problem(n: int, ratio: float, pool: str | None = None) -> str | None:
    """Why `ratio` gives no row to select per round from `n` rows (described by `pool`); None when K >= 1."""
    pool = pool or f"a pool of {n} rows"
    if not (math.isfinite(ratio) and ratio > 0):
        return f"selection.ratio {ratio} must be a finite number > 0: a share of the pool in (0, 1] or a count of rows"
    if n < 1:
        return f"there is no row to select: {pool} is empty"
    if _budget(n, ratio) >= 1:
        return None
    return (f"selection.ratio {ratio:g} gives K = floor({ratio:g} x {n}) = 0 rows to select per round from {pool}: "
            f"set selection.ratio to at least {smallest_ratio(n):g} (e.g. --set selection.ratio={smallest_ratio(n):g}), "
            f"or to a whole number of rows per round")


def selection_budget(n: int, ratio: float) -> int:
    """K per round: floor(n * ratio), or `ratio` itself as an absolute count when ratio > 1 (at most n);
    BudgetTooSmall, saying which ratio would do, when that is 0."""
    problem = budget_problem(n, ratio)
    if problem:
        raise BudgetTooSmall(problem)
    return _budget(n, ratio)


def rescore_window(n: int, k: int, update_ratio: float) -> int:
    """Positions re-scored after the first round: k * update_ratio, or all n when update_ratio <= 1."""
    return n if update_ratio <= 1 else min(n, int(k * update_ratio))


def reorder(
    order: Sequence[int], scores: Sequence[float], responses: Sequence[str] | None,
    window: int, k: int, mode: Literal["ifd", "both"], decay: float,
) -> list[int]:
    """The reference's per-round UPDATE: rank the first `window` positions of `order`.

    Within the window, positions with score < 1 are candidates, score >= 1 are parked and NaN are
    dropped. Result: ranked[:k] + parked + ranked[k:] + order[window:], where ranked is the candidates
    by score descending (mode "ifd") or the greedy picks followed by the other candidates by score
    descending (mode "both"). Sorts are stable: ties keep window order. `scores[p]`, `responses[p]`
    are indexed by position p; positions past the window are passed through untouched.
    """
    return reorder_detailed(order, scores, responses, window, k, mode, decay)[0]


def reorder_detailed(
    order: Sequence[int], scores: Sequence[float], responses: Sequence[str] | None,
    window: int, k: int, mode: Literal["ifd", "both"], decay: float,
    eligible: Sequence[bool] | None = None,
) -> tuple[list[int], dict[int, Pick]]:
    """`reorder`, plus the greedy picks by position (informativeness and score at pick time).

    `eligible[p]` (by position) replaces the reference's `score < 1` test when given, so callers can
    add gates (a lower IFD bound, a misalignment check); ineligible positions are parked.
    """
    if mode not in ("ifd", "both"):
        raise ValueError(f"mode must be 'ifd' or 'both', got {mode!r}")
    if k < 0 or window < 0:
        raise ValueError("k and window must be >= 0")
    order = [int(p) for p in order]
    head, tail = order[:window], order[window:]
    head = [p for p in head if not math.isnan(float(scores[p]))]  # NaN: left out, the caller quarantines it
    ok = (lambda p: scores[p] < ELIGIBLE_BELOW) if eligible is None else (lambda p: bool(eligible[p]))
    candidates = [p for p in head if ok(p)]
    parked = [p for p in head if not ok(p)]
    by_score = sorted(candidates, key=lambda p: -float(scores[p]))
    picks: dict[int, Pick] = {}
    if mode == "ifd":
        ranked = by_score
    else:
        if responses is None:
            raise ValueError("mode 'both' needs the responses")
        detailed = greedy_select_detailed(
            [responses[p] for p in candidates], [float(scores[p]) for p in candidates], k, decay
        )
        picks = {candidates[pk.index]: pk for pk in detailed}
        ranked = list(picks) + [p for p in by_score if p not in picks]
    return ranked[:k] + parked + ranked[k:] + tail, picks
