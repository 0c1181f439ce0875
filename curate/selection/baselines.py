"""Selection baselines: a seeded random subset, the IFD-only ranking (IterIT's score_type "IFD"), and a
ranking by a per-row key (`longest`: response tokens; `rds`: RDS+ similarity, curate/selection/rds.py)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from curate.selection.iterit import ELIGIBLE_BELOW


def random_select(n: int, k: int, seed: int) -> list[int]:
    """min(k, n) distinct indices in [0, n), drawn uniformly with numpy's default Generator."""
    if n < 0 or k < 0:
        raise ValueError("n and k must be >= 0")
    rng = np.random.default_rng(seed)
    return rng.choice(n, size=min(k, n), replace=False).tolist()


def ifd_rank(scores: Sequence[float], k: int) -> list[int]:
    """Up to k indices with score < 1 (NaN excluded), by score descending; ties keep index order."""
    if k < 0:
        raise ValueError("k must be >= 0")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    eligible = np.flatnonzero(s < ELIGIBLE_BELOW)
    return eligible[np.argsort(-s[eligible], kind="stable")][:k].tolist()


def ranked_by(key: Sequence[float], row_ids: Sequence[str]) -> list[int]:
    """Positions by `key` descending, ties by row_id; NaN keys last (the `longest` and `rds` rankings)."""
    k = np.asarray(key, dtype=np.float64)
    return sorted(range(len(k)), key=lambda p: (np.isnan(k[p]), -k[p] if not np.isnan(k[p]) else 0.0, row_ids[p]))
