"""GREATS online batch selection, with its released code's semantics (online-selection note §3.3, TV5).

Scores start at η·tracin_i (tracin_i = mean over validation samples of ⟨g_i, g_v⟩); K times: pick
i* = argmax, subtract η²·⟨g_{i*}, g_j⟩ from every score, retire i*. The marginal gain of j given S
is η⟨g_j, g_val⟩ − η² Σ_{s∈S} ⟨g_s, g_j⟩ (H ≈ I, no self term), i.e. Filter-then-Weight's filter
with D = I.
"""
from __future__ import annotations

import numpy as np


def greats_select(tracin, kernel, k: int, lr: float) -> list[int]:
    """Indices of the K picks, in pick order."""
    scores = lr * np.asarray(tracin, dtype=np.float64).copy()
    kernel = np.asarray(kernel, dtype=np.float64)
    picks: list[int] = []
    for _ in range(min(k, len(scores))):
        i = int(np.argmax(scores))
        picks.append(i)
        scores -= lr**2 * kernel[i]
        scores[picks] = -np.inf
    return picks
