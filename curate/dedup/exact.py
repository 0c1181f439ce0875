"""Exact deduplication: rows whose normalised dedup text is byte-identical (docs/architecture.md §2).

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


def text_digests(texts: Sequence[str]) -> list[bytes]:
    """`text_digest` of every text, in order."""
    return [text_digest(t) for t in texts]


def exact_groups(texts: Sequence[str]) -> np.ndarray:
    """Group label of every text: the index of the first text identical to it."""
    first_index: dict[bytes, int] = {}
    return np.fromiter(
        (first_index.setdefault(d, i) for i, d in enumerate(text_digests(texts))),
        dtype=np.int64,
        count=len(texts),
    )


def choose_kept(
    groups: np.ndarray,
    *,
    keep: KeepPolicy = "first",
    lengths: Sequence[int] | None = None,
    anchors: np.ndarray | None = None,
) -> np.ndarray:
    """Index of the kept row of each row's group (a kept row maps to itself).

    `groups` holds one label per row (rows with the same label are duplicates of one another);
    `lengths` holds the response lengths and is needed for `keep="longest"`. `anchors` marks rows
    kept on an earlier run: a group holding any keeps its lowest-index anchored row whatever the
    policy, and every anchored row stays kept.
    """
    groups = np.asarray(groups)
    n = len(groups)
    index = np.arange(n)
    anchored_first = () if anchors is None else (~np.asarray(anchors, dtype=bool),)
    if keep == "first":
        order = np.lexsort((index, *anchored_first, groups))
    elif keep == "longest":
        if lengths is None:
            raise ValueError('keep="longest" needs the response lengths')
        by_length = -np.asarray(lengths, dtype=np.int64)
        if anchors is not None:  # anchored rows: by index only
            by_length = np.where(anchors, 0, by_length)
        order = np.lexsort((index, by_length, *anchored_first, groups))
    else:
        raise ValueError(f'unknown keep policy {keep!r}: use "first" or "longest"')
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]) if n else index
    group_sizes = np.diff(np.r_[starts, n])
    kept = np.empty(n, dtype=np.int64)
    kept[order] = np.repeat(order[starts], group_sizes)
    if anchors is not None:
        kept[anchors] = index[anchors]
    return kept


def exact_duplicates(
    texts: Sequence[str], *, keep: KeepPolicy = "first", lengths: Sequence[int] | None = None
) -> np.ndarray:
    """Index of the kept row for every text; rows where it differs from their own index are removed."""
    return choose_kept(exact_groups(texts), keep=keep, lengths=lengths)
