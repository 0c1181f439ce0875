"""Proxy fidelity: does a smaller scoring model (scoring.model, Superfiltering-style) rank rows as the
model being trained would?

A seeded sample of the pool (`scoring.fidelity_share`, at least 2 rows) is scored by both models. On the
rows where both IFDs are finite the check reports
- the Spearman rank correlation of the two IFDs (Pearson correlation of their ranks, ties averaged);
- the top overlap: with k = ceil(TOP_SHARE x rows), the share of the proxy's k highest-IFD rows that are
  among the trained model's k highest (ties by position), beside k / rows, its expectation for
  unrelated rankings.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats

TOP_SHARE = 0.1  # the top of the ranking the overlap looks at (K rows are often a few % to 10% of a pool)


def fidelity_sample(n: int, share: float, seed: int) -> list[int]:
    """Sorted positions of the rows the check scores twice: round(share x n), at least 2 (all rows if fewer)."""
    if share <= 0 or n == 0:
        return []
    size = min(n, max(2, round(share * n)))
    return sorted(np.random.default_rng(seed).choice(n, size=size, replace=False).tolist())


def _top(values: np.ndarray, k: int) -> set[int]:
    return set(np.argsort(-values, kind="stable")[:k].tolist())


def proxy_fidelity(proxy_ifd: Sequence[float], trained_ifd: Sequence[float], top_share: float = TOP_SHARE) -> dict:
    """Spearman correlation and top overlap of two IFD rankings of the same rows (module docstring)."""
    a, b = np.asarray(proxy_ifd, dtype=np.float64), np.asarray(trained_ifd, dtype=np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    a, b = a[both], b[both]
    n = len(a)
    if n < 2:
        return {"rows": n, "spearman": None, "top_k": 0, "top_overlap": None, "random_overlap": None}
    rho = stats.spearmanr(a, b).statistic
    k = max(1, math.ceil(top_share * n))
    return {"rows": n, "spearman": None if not np.isfinite(rho) else float(rho), "top_share": top_share, "top_k": k,
            "top_overlap": len(_top(a, k) & _top(b, k)) / k, "random_overlap": k / n}
