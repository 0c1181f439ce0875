"""Exact deduplication: rows whose normalised dedup text is byte-identical (design §1, step 2).

Texts are grouped by a 128-bit BLAKE2b digest of their UTF-8 bytes (a collision between two
different texts has probability ~n^2 / 2^129, far below any data error). Each group keeps one row,
chosen by the keep policy:

- `first`: the earliest row in input order;
- `longest`: the row with the longest response; ties go to the earliest.

`choose_kept` applies the same policy to any grouping, so near-duplicate clusters keep their row the
same way.
"""
from __future__ import annotations

import hashlib
from typing import Literal, Sequence

import numpy as np

KeepPolicy = Literal["first", "longest"]


def text_digest(text: str) -> bytes:
    """Stable 16-byte digest of a text (the same in every process, unlike `hash`)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def exact_groups(texts: Sequence[str]) -> np.ndarray:
    """Group label of every text: the index of the first text identical to it."""
    first_index: dict[bytes, int] = {}
    return np.fromiter(
        (first_index.setdefault(text_digest(t), i) for i, t in enumerate(texts)),
        dtype=np.int64,
        count=len(texts),
    )


def choose_kept(
    groups: np.ndarray, *, keep: KeepPolicy = "first", lengths: Sequence[int] | None = None
) -> np.ndarray:
    """Index of the kept row of each row's group (a kept row maps to itself).

    `groups` holds one label per row (rows with the same label are duplicates of one another);
    `lengths` holds the response lengths and is needed for `keep="longest"`.
    """
    groups = np.asarray(groups)
    n = len(groups)
    index = np.arange(n)
    if keep == "first":
        order = np.lexsort((index, groups))
    elif keep == "longest":
        if lengths is None:
            raise ValueError('keep="longest" needs the response lengths')
        order = np.lexsort((index, -np.asarray(lengths, dtype=np.int64), groups))
    else:
        raise ValueError(f'unknown keep policy {keep!r}: use "first" or "longest"')
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]) if n else index
    group_sizes = np.diff(np.r_[starts, n])
    kept = np.empty(n, dtype=np.int64)
    kept[order] = np.repeat(order[starts], group_sizes)
    return kept


def exact_duplicates(
    texts: Sequence[str], *, keep: KeepPolicy = "first", lengths: Sequence[int] | None = None
) -> np.ndarray:
    """Index of the kept row for every text; rows where it differs from their own index are removed."""
    return choose_kept(exact_groups(texts), keep=keep, lengths=lengths)
