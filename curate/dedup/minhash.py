"""MinHash signatures of word n-gram shingles (Broder 1997, "On the resemblance and containment of
documents", §3; Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*, §3.3).

For a document with shingle set S and K hash functions h_k, the signature is
`sig[k] = min_{s in S} h_k(s)`, and for two documents P[sig_A[k] == sig_B[k]] = J(A, B), the Jaccard
similarity of their shingle sets; the fraction of agreeing positions estimates J (MMDS eq. 3.3.3).

How the signatures are computed, all vectorised with numpy over a batch of documents:

1. Words: runs of non-whitespace bytes (texts come normalised, see `normalize.py`), each hashed to
   64 bits from its UTF-8 bytes by a murmur-style mix (`word_hashes`), all words of a batch at once.
   The hash depends on the bytes only, so signatures are the same in every process (Python's
   `hash` of a str is salted per process and is not used).
2. Shingles: every run of `ngram` consecutive words inside one document, hashed by a polynomial
   over the word hashes, `s = sum_j w_j * P^(ngram-1-j) mod 2^64`, keeping the top 32 bits. A
   document with fewer than `ngram` words is one shingle (the whole document; an empty document is
   the shingle of no words).
3. Hash functions: `h_k(x) = (a_k * x + b_k) mod 2^32` with odd `a_k`, a bijection of 32-bit values,
   applied to all shingles of a batch at once; the per-document minimum is one
   `np.minimum.reduceat` over the documents' segments. This is datasketch's `affine32` scheme; a prime modulus
   (`(a x + b) mod (2^61 - 1)`) estimates no better on hashed inputs and costs a 64-bit division
   per entry. `a_k` and `b_k` come from BLAKE2b of (seed, k), so they do not depend on numpy's
   random streams, and signatures stay comparable across library versions.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_SHINGLE_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd: the polynomial keeps every word's bits
_DOCS_PER_BATCH = 4_096  # documents tokenised at once (bounds memory)


_ASCII_WHITESPACE = np.zeros(32, dtype=bool)  # the control characters `str.split` splits on
_ASCII_WHITESPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31]] = True
_FMIX_SHIFT = np.uint64(33)
_FMIX_MULTIPLIERS = (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))
_LENGTH_MULTIPLIER = np.uint64(0x2545F4914F6CDD1D)
_LOW_BYTES_MASK = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)  # k low bytes set


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, in place: a bijection that mixes every input bit into every
    output bit."""
    for multiplier in _FMIX_MULTIPLIERS:
        h ^= h >> _FMIX_SHIFT
        h *= multiplier
    h ^= h >> _FMIX_SHIFT
    return h


def word_hashes(texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the words of every text, concatenated in text order, and word offsets
    (text i's words are `hashes[offsets[i]:offsets[i+1]]`).

    A word is a maximal run of bytes that are not ASCII whitespace (the ASCII characters `str.split`
    splits on). Texts should be normalised first (`normalize_text` turns every Unicode space into
    ASCII). A word's hash reads its UTF-8 bytes in 8-byte little-endian blocks:
    `h = len * L; h = fmix64(h ^ block)` for each block, all words at once with numpy. It depends on
    the bytes only, so it is the same in every process.
    """
    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        texts = pa.array(texts, pa.large_string())
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = pc.fill_null(texts.cast(pa.large_string()), "")
    byte_offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    raw = np.frombuffer(texts.buffers()[2] or b"", dtype=np.uint8)[byte_offsets[0] : byte_offsets[-1]]
    byte_offsets = byte_offsets - byte_offsets[0]
    # A space before every text (so no word runs from one text into the next) and 8 after the last
    # (so 8-byte reads never overrun): text i's bytes start at byte_offsets[i] + i + 1.
    data = np.concatenate((np.insert(raw, byte_offsets[:-1], 32), np.full(8, 32, dtype=np.uint8)))

    is_space = data <= 32
    controls = np.flatnonzero(data < 32)
    is_space[controls] = _ASCII_WHITESPACE[data[controls]]
    spaces = np.flatnonzero(is_space[: len(data) - 7])  # the first and the last are spaces
    starts, lengths = spaces[:-1] + 1, np.diff(spaces) - 1
    if not lengths.all():  # runs of several spaces, or empty texts
        starts, lengths = starts[lengths > 0], lengths[lengths > 0]

    blocks = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))  # unaligned 8-byte reads
    hashes = lengths.astype(np.uint64) * _LENGTH_MULTIPLIER
    hashes ^= _masked_blocks(blocks[starts], lengths)
    fmix64(hashes)
    block_start, long_words = 8, np.flatnonzero(lengths > 8)
    while len(long_words):
        block = _masked_blocks(blocks[starts[long_words] + block_start], lengths[long_words] - block_start)
        hashes[long_words] = fmix64(hashes[long_words] ^ block)
        block_start += 8
        long_words = long_words[lengths[long_words] > block_start]
    return hashes, np.searchsorted(starts, byte_offsets + np.arange(1, len(byte_offsets) + 1))


def _masked_blocks(blocks: np.ndarray, remaining: np.ndarray) -> np.ndarray:
    """Zero the bytes of each 8-byte block past the end of its word (`remaining` >= 1 bytes are left)."""
    blocks &= _LOW_BYTES_MASK.take(np.minimum(remaining, 8))
    return blocks


class MinHasher:
    """K-permutation MinHash of word n-gram shingles; see the module docstring.

    Two signatures are comparable only when made by hashers with the same `params`.
    """

    def __init__(self, num_perm: int = 128, ngram: int = 3, seed: int = 1, threads: int | None = None):
        if num_perm < 1 or ngram < 1:
            raise ValueError("num_perm and ngram must be >= 1")
        self.num_perm, self.ngram, self.seed = num_perm, ngram, seed
        self.threads = threads or os.cpu_count() or 1  # signatures do not depend on it
        coefficients = np.frombuffer(
            b"".join(hashlib.blake2b(f"minhash:{seed}:{k}".encode(), digest_size=8).digest() for k in range(num_perm)),
            dtype="<u4",
        ).reshape(num_perm, 2)
        self.a = (coefficients[:, 0] | np.uint32(1)).astype(np.uint32)  # odd: a bijection mod 2^32
        self.b = coefficients[:, 1].astype(np.uint32)

    @property
    def params(self) -> dict:
        return {"scheme": "words-fmix64/affine32", "num_perm": self.num_perm, "ngram": self.ngram, "seed": self.seed}

    def signatures(self, texts: Sequence[str] | pa.Array) -> np.ndarray:
        """MinHash signatures, shape (len(texts), num_perm), dtype uint32; a null text counts as ""."""
        texts = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.large_string())
        out = np.empty((len(texts), self.num_perm), dtype=np.uint32)

        def one_batch(start: int) -> None:
            batch = texts[start : start + _DOCS_PER_BATCH]
            shingles, doc_starts = self.shingle_hashes(batch)
            out[start : start + len(batch)] = self._min_over_documents(shingles, doc_starts).T

        starts = range(0, len(texts), _DOCS_PER_BATCH)
        workers = min(self.threads, len(starts))
        if workers <= 1:
            for start in starts:
                one_batch(start)
        else:  # numpy and Arrow kernels release the GIL: batches run in parallel on separate slices
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(one_batch, starts))
        return out

    def shingle_hashes(self, texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        """32-bit hashes of every document's shingles, concatenated in document order, and the index
        of each document's first shingle (every document has at least one)."""
        token_hashes, offsets = word_hashes(texts)
        lengths = np.diff(offsets)
        window_counts = np.maximum(lengths - self.ngram + 1, 0)
        shingles = self._window_hashes(token_hashes, offsets)
        is_short = window_counts == 0
        if is_short.any():
            whole = self._whole_document_hashes(token_hashes, offsets[:-1][is_short], lengths[is_short])
            windows_before = np.cumsum(window_counts) - window_counts
            shingles = np.insert(shingles, windows_before[is_short], whole)
        counts = np.where(is_short, 1, window_counts)
        shingles >>= np.uint64(32)
        return shingles.astype(np.uint32), np.cumsum(counts) - counts

    def _window_hashes(self, token_hashes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Polynomial hash of every n-word window that lies inside one document, in order."""
        n_windows = len(token_hashes) - self.ngram + 1
        if n_windows <= 0:
            return np.empty(0, dtype=np.uint64)
        windows = token_hashes[:n_windows].copy()
        for j in range(1, self.ngram):
            windows *= _SHINGLE_MULTIPLIER
            windows += token_hashes[j : j + n_windows]
        crossing = (offsets[1:, None] - np.arange(1, self.ngram)).ravel()  # windows running past a text's end
        inside = np.ones(n_windows, dtype=bool)
        inside[crossing[(crossing >= 0) & (crossing < n_windows)]] = False
        return windows[inside]

    @staticmethod
    def _whole_document_hashes(token_hashes: np.ndarray, first_tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Polynomial hash of all words of each short document (no words: 0)."""
        hashes = np.zeros(len(lengths), dtype=np.uint64)
        for j in range(int(lengths.max(initial=0))):
            has_word = lengths > j
            hashes[has_word] = hashes[has_word] * _SHINGLE_MULTIPLIER + token_hashes[first_tokens[has_word] + j]
        return hashes

    def _min_over_documents(self, shingles: np.ndarray, doc_starts: np.ndarray) -> np.ndarray:
        """min over each document's shingles of (a_k x + b_k) mod 2^32, shape (num_perm, documents).

        One hash function at a time over all shingles of the batch (a contiguous vector that stays
        in cache), then one `reduceat` over the documents' segments.
        """
        mins = np.empty((self.num_perm, len(doc_starts)), dtype=np.uint32)
        hashed = np.empty_like(shingles)
        for k in range(self.num_perm if len(doc_starts) else 0):
            np.multiply(shingles, self.a[k], out=hashed)
            hashed += self.b[k]
            np.minimum.reduceat(hashed, doc_starts, out=mins[k])
        return mins


def estimated_jaccard(signatures_a: np.ndarray, signatures_b: np.ndarray) -> np.ndarray:
    """Fraction of agreeing signature positions, row by row: the MinHash estimate of J (MMDS §3.3.3)."""
    return np.mean(np.asarray(signatures_a) == np.asarray(signatures_b), axis=-1)
