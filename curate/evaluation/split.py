"""The held-out split of a pool that comes without held-out files.

A row is held out when a hash of its row_id falls below the share: the decision depends on the row's
content alone, not on the pool around it, so a row held out tonight stays held out on every later
night (the pool grows, the split of the old rows does not move) and is never selected nor trained.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np

SALT = b"curate-holdout\0"
KIND = "holdout"  # `kind` in the held-out part's stats.json: how evaluation recognises a split's held-out rows


def holdout_point(row_id: str) -> float:
    """A row's uniform point in [0, 1): the first 8 bytes of sha256(salt + row_id)."""
    return int.from_bytes(hashlib.sha256(SALT + row_id.encode()).digest()[:8], "big") / 2.0**64


def holdout_mask(row_ids: Iterable[str], share: float) -> np.ndarray:
    """True for the rows held out: each independently with probability `share` (0 = none)."""
    if not 0 <= share < 1:
        raise ValueError(f"evaluation.holdout must be in [0, 1), got {share}")
    return np.asarray([holdout_point(r) < share for r in row_ids], dtype=bool)
