"""Locality-sensitive hashing of MinHash signatures by banding (Leskovec, Rajaraman & Ullman,
*Mining of Massive Datasets*, §3.4).

A signature of K values is cut into b bands of r rows (b * r <= K). Two documents are a candidate
pair when all r values of at least one band agree, which happens with probability
`1 - (1 - s^r)^b` for Jaccard similarity s (MMDS §3.4.2): an S-curve rising around
`(1/b)^(1/r)`. `optimal_bands` picks (b, r) for a threshold t by minimising the area of false
positives, `∫_0^t 1 - (1 - s^r)^b ds`, and the area of false negatives, `∫_t^1 (1 - s^r)^b ds`,
weighted (datasketch's `MinHashLSH` objective; it weighs both 0.5). `LSHIndex` weighs false
negatives 0.9: its candidates are verified, so a false positive costs one comparison while a false
negative loses a duplicate for good. At t = 0.8, K = 128 this moves (b, r) from
(9, 13) to (14, 9) and the chance that a pair at similarity 0.85 becomes a candidate from 0.69
to 0.97.

Each band's r values are hashed to one 64-bit bucket key; documents with equal keys in a band
share a bucket. Candidates are only candidates: the caller verifies them (`dedup_batches`: by the
exact Jaccard of their shingle sets, `jaccard.py`, or by signature agreement).

`LSHIndex` holds ids, signatures and bucket keys, so the same object serves a one-off batch
(`candidate_pairs` inside the index) and an incremental run (`query` new signatures against the
rows kept before; `index.py` persists the signatures and bucket keys between runs).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from curate.dedup.minhash import fmix64

MAX_ALL_PAIRS_BUCKET = 256  # a bucket with more members pairs them with its first member only
_BAND_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(64)


def _integral(f, lo: float, hi: float) -> np.ndarray:
    """Gauss-Legendre quadrature of f over [lo, hi] (f takes an array of points, last axis)."""
    points = (hi - lo) / 2 * _GAUSS_NODES + (hi + lo) / 2
    return (hi - lo) / 2 * (f(points) @ _GAUSS_WEIGHTS)


@lru_cache(maxsize=None)
def optimal_bands(threshold: float, num_perm: int, false_negative_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimising the weighted false-positive plus
    false-negative area of the banding S-curve around `threshold` (MMDS §3.4.2)."""
    if not 0 < threshold < 1 or not 0 <= false_negative_weight <= 1:
        raise ValueError("threshold must be in (0, 1) and false_negative_weight in [0, 1]")
    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)], dtype=np.float64)
    bands, rows = pairs[:, :1], pairs[:, 1:]
    candidate = lambda s: 1 - (1 - s**rows) ** bands  # noqa: E731  (P[candidate] at similarity s)
    false_positive = _integral(candidate, 0.0, threshold)
    false_negative = _integral(lambda s: 1 - candidate(s), threshold, 1.0)
    best = int(np.argmin((1 - false_negative_weight) * false_positive + false_negative_weight * false_negative))
    return int(pairs[best, 0]), int(pairs[best, 1])


class LSHIndex:
    """Banded LSH over MinHash signatures of one `MinHasher` configuration.

    `ids` are the caller's labels of the rows (e.g. row ids); positions (0..len-1, in insertion
    order) are what the pair methods return.
    """

    def __init__(
        self,
        threshold: float = 0.7,
        num_perm: int = 128,
        *,
        false_negative_weight: float = 0.9,
        hasher_params: dict | None = None,
    ):
        self.threshold, self.num_perm, self.false_negative_weight = threshold, num_perm, false_negative_weight
        self.bands, self.rows = optimal_bands(threshold, num_perm, false_negative_weight)
        self.hasher_params = dict(hasher_params or {})
        self.ids = np.empty(0, dtype=str)
        self.signatures = np.empty((0, num_perm), dtype=np.uint32)
        self._keys = np.empty((0, self.bands), dtype=np.uint64)
        self._sorted_keys: tuple[np.ndarray, np.ndarray] | None = None  # per band: order, sorted keys

    def __len__(self) -> int:
        return len(self.signatures)

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """Bucket key of every band of every signature, shape (n, bands)."""
        rows = np.asarray(signatures, dtype=np.uint32)[:, : self.bands * self.rows]
        rows = rows.reshape(len(rows), self.bands, self.rows).astype(np.uint64)
        keys = np.zeros(rows.shape[:2], dtype=np.uint64)
        for j in range(self.rows):
            keys ^= rows[:, :, j]
            keys *= _BAND_MULTIPLIER
            fmix64(keys)
        return keys

    def add(self, ids, signatures: np.ndarray, keys: np.ndarray | None = None) -> None:
        """Add rows; `keys` are their `band_keys` when already known (a loaded index), else computed."""
        signatures = np.asarray(signatures, dtype=np.uint32)
        if signatures.ndim != 2 or signatures.shape[1] != self.num_perm or len(signatures) != len(ids):
            raise ValueError(f"need one signature of {self.num_perm} values per id")
        if keys is not None and np.shape(keys) != (len(signatures), self.bands):
            raise ValueError(f"need {self.bands} band keys per signature, got shape {np.shape(keys)}")
        ids = np.asarray(ids)
        ids = ids.astype(str) if ids.dtype == object else ids  # .npz without pickle
        self.ids = np.concatenate((self.ids, ids)) if len(self) else ids
        self.signatures = np.concatenate((self.signatures, signatures))
        self._keys = np.concatenate((self._keys, self.band_keys(signatures) if keys is None else keys))
        self._sorted_keys = None

    def candidate_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Pairs of positions (i < j) sharing a bucket in at least one band, without repeats.

        In a bucket of at most `MAX_ALL_PAIRS_BUCKET` members every pair is a candidate; a larger
        bucket pairs its first member with each other member (bounding the work on templated
        data, at the price of pairs the star misses).
        """
        n = len(self)
        codes = [_bucket_pairs(self._keys[:, band]) for band in range(self.bands)]
        codes = np.unique(np.concatenate(codes)) if codes else np.empty(0, dtype=np.int64)
        return codes // max(n, 1), codes % max(n, 1)

    def query(self, signatures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pairs (query position, index position) sharing a bucket in at least one band, without repeats."""
        keys = self.band_keys(signatures)
        n = len(self)
        if self._sorted_keys is None:
            order = np.argsort(self._keys, axis=0, kind="stable")
            self._sorted_keys = order, np.take_along_axis(self._keys, order, axis=0)
        orders, sorted_keys = self._sorted_keys
        codes = []
        for band in range(self.bands):
            order = orders[:, band]
            lo = np.searchsorted(sorted_keys[:, band], keys[:, band], side="left")
            hi = np.searchsorted(sorted_keys[:, band], keys[:, band], side="right")
            counts = hi - lo
            queries = np.repeat(np.arange(len(keys)), counts)
            slots = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(lo, counts)
            codes.append(queries * n + order[slots])
        codes = np.unique(np.concatenate(codes)) if codes else np.empty(0, dtype=np.int64)
        return codes // max(n, 1), codes % max(n, 1)


def _bucket_pairs(keys: np.ndarray) -> np.ndarray:
    """Codes i * n + j (i < j) of the pairs of positions with equal keys (see `candidate_pairs`)."""
    n = len(keys)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, n])
    shared = sizes > 1
    starts, sizes = starts[shared], sizes[shared]
    codes = []
    # Star pairs of the large buckets.
    large = sizes > MAX_ALL_PAIRS_BUCKET
    for start, size in zip(starts[large], sizes[large]):
        members = order[start : start + size]
        codes.append(np.minimum(members[0], members[1:]) * n + np.maximum(members[0], members[1:]))
    # All pairs of the others: the member at rank k pairs with the one at rank k + d, for d = 1, 2, ...
    starts, sizes = starts[~large], sizes[~large]
    member = np.repeat(starts, sizes) + (np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes))
    room = np.repeat(starts + sizes, sizes) - member - 1  # members after this one in its bucket
    for d in range(1, int(sizes.max(initial=1))):
        keep = room >= d
        member, room = member[keep], room[keep]
        a, b = order[member], order[member + d]
        codes.append(np.minimum(a, b) * n + np.maximum(a, b))
    return np.concatenate(codes) if codes else np.empty(0, dtype=np.int64)
