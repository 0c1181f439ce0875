"""Contrastive misalignment check (non-reference; docs/iterit.md §3, (7)).

IFD ranks highest the rows whose instruction helps least, and that includes responses paired with
the wrong instruction. For row i we also score its response under another row's prompt (partner j):

    margin(i) = L(y_i | x_j) - L(y_i | x_i)      (mean response-token cross-entropy, nats)

A matching instruction should make the response clearly more likely than a random other one, so a
small margin (below `mismatch_margin`, default 0.3 nat) flags a possible mismatch. Partners come from
a seeded derangement, so every row gets a partner other than itself.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def partners(n: int, seed: int) -> np.ndarray:
    """partner[i] != i for every i (n >= 2): each row's successor in a seeded random cycle."""
    if n < 2:
        return np.arange(n)
    cycle = np.random.default_rng(seed).permutation(n)
    partner = np.empty(n, dtype=np.int64)
    partner[cycle] = np.roll(cycle, -1)
    return partner


def swapped_rows(rows: Sequence[dict[str, Any]], partner: np.ndarray) -> list[dict[str, Any]]:
    """Row i's response under row partner[i]'s prompt (system, context, instruction, input)."""
    out = []
    for i, j in enumerate(partner):
        donor = rows[int(j)]
        out.append({**rows[i], "system": donor.get("system"), "context": donor.get("context") or [],
                    "instruction": donor["instruction"], "input": donor.get("input") or ""})
    return out


def mismatch_margin(loss_swapped: np.ndarray, loss_cond: np.ndarray) -> np.ndarray:
    return np.asarray(loss_swapped, dtype=np.float64) - np.asarray(loss_cond, dtype=np.float64)
