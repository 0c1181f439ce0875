"""Selection baselines: a seeded random subset, and the IFD-only ranking (IterIT's score_type "IFD")."""
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
