"""GREATS online batch selection, with its released code's semantics (docs/online-selection.md §8, (20)).

Scores start at η·tracin_i (tracin_i = mean over validation samples of ⟨g_i, g_v⟩); K times: pick
i* = argmax, subtract η²·⟨g_{i*}, g_j⟩ from every score, retire i* (score −∞). The marginal gain of
j given S is η⟨g_j, g_val⟩ − η² Σ_{s∈S} ⟨g_s, g_j⟩ (H ≈ I, no self term), i.e. Filter-then-Weight's
filter with D = I.
"""
from __future__ import annotations

import numpy as np


def greats_select(tracin, kernel, k: int, lr: float, *, return_scores: bool = False):
    """Indices of the min(k, N) picks, in pick order. With `return_scores`, also the score vector
    each pick was made from (one row per pick, −∞ for retired samples): (picks, N_picks×N array)."""
    scores = lr * np.asarray(tracin, dtype=np.float64).copy()
    kernel = np.asarray(kernel, dtype=np.float64)
    if scores.ndim != 1 or kernel.shape != (len(scores), len(scores)):
        raise ValueError(f"tracin must be N and kernel N×N, got {scores.shape} and {kernel.shape}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    picks: list[int] = []
    trace = []
    for _ in range(min(k, len(scores))):
        trace.append(scores.copy())
        i = int(np.argmax(scores))
        picks.append(i)
        scores -= lr**2 * kernel[i]
        scores[picks] = -np.inf
    if return_scores:
        return picks, np.array(trace).reshape(len(picks), len(scores))
    return picks
