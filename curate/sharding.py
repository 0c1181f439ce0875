"""Sharding a planned pass: contiguous groups of its batches with about equal work, so that a shard
computes exactly the batches one pass would (the same batch composition, the same bits)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> list[int]:
    """Each batch's padded tokens (its items x its longest item's `lengths`): the work of its forward."""
    return [len(b) * max(lengths[i] for i in b) for b in batches]


def shard_batches(costs: Sequence[float], shards: int) -> list[range]:
    """`shards` contiguous groups of batch indices with about equal total cost (`padded_tokens`; the
    batches come longest first, so equal counts would give the first shard most of the work). Every
    group is non-empty when shards <= len(costs)."""
    n = len(costs)
    prefix = np.concatenate([[0.0], np.cumsum(np.asarray(costs, dtype=np.float64))])
    bounds = [0]
    for i in range(1, shards):
        target = prefix[-1] * i / shards
        j = int(np.searchsorted(prefix, target))
        if j > 0 and (j > n or target - prefix[j - 1] <= prefix[j] - target):
            j -= 1  # the boundary nearest the target
        if n >= shards:
            j = min(max(j, bounds[-1] + 1), n - (shards - i))
        bounds.append(min(max(j, bounds[-1]), n))
    bounds.append(n)
    return [range(bounds[k], bounds[k + 1]) for k in range(shards)]
