"""Exact Jaccard similarity of shingle sets, to verify LSH candidate pairs (MMDS §3.1.1: J(A, B) =
|A ∩ B| / |A ∪ B|).

MinHash estimates J with a standard deviation of sqrt(J(1-J)/K) (≈ 0.035 at J = 0.8, K = 128), so
a pair decided by its signatures alone is wrong for a few percent of pairs near the threshold. The
candidates are few (LSH proposes them), so their shingle sets are rebuilt from the texts and compared
exactly. Shingles are the `MinHasher`'s own 32-bit shingle hashes (the same words and n-grams the
signatures were made from); with a few hundred shingles per document a hash collision is rare
enough to ignore, so this is the exact Jaccard of the shingle sets.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from curate.dedup.minhash import MinHasher


def shingle_sets(hasher: MinHasher, texts: pa.Array | list[str]) -> list[np.ndarray]:
    """Each text's distinct shingle hashes, sorted (uint32)."""
    texts = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.large_string())
    if len(texts) == 0:
        return []
    shingles, starts = hasher.shingle_hashes(texts)
    return [np.unique(part) for part in np.split(shingles, starts[1:])]


def exact_jaccard(sets: dict[int, np.ndarray], left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """J(sets[left[i]], sets[right[i]]) for every pair i (sets as returned by `shingle_sets`)."""
    out = np.empty(len(left), dtype=np.float64)
    for i, (a, b) in enumerate(zip(left.tolist(), right.tolist())):
        x, y = sets[a], sets[b]
        common = len(np.intersect1d(x, y, assume_unique=True))
        union = len(x) + len(y) - common
        out[i] = common / union if union else 1.0
    return out
