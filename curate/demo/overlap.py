"""Word n-gram Jaccard similarity between rows (the near-duplicate measure of MinHash-LSH dedup,
computed exactly). Used to check that injected near-duplicates are near and clean rows are not.

Two tokenisations are offered because a deduplicator may or may not keep punctuation:
`"words"` (lowercased whitespace tokens, punctuation attached) and `"alnum"` (lowercased `\\w+` runs).
"""
from __future__ import annotations

import re
from typing import Mapping

TOKENIZERS = ("words", "alnum")
_ALNUM = re.compile(r"\w+")


def tokens(text: str, mode: str = "words") -> list[str]:
    if mode == "words":
        return text.lower().split()
    if mode == "alnum":
        return _ALNUM.findall(text.lower())
    raise ValueError(f"unknown tokenizer {mode!r}; expected one of {TOKENIZERS}")


def shingles(text: str, n: int = 3, mode: str = "words") -> set[tuple[str, ...]]:
    toks = tokens(text, mode)
    if len(toks) < n:
        return {tuple(toks)} if toks else set()
    return {tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def row_text(row: Mapping[str, str]) -> str:
    """The document a row is compared as: instruction, input and response joined by spaces."""
    response = row.get("output", row.get("response", ""))
    return " ".join(t for t in (row.get("instruction", ""), row.get("input", ""), response) if t)


def row_jaccard(a: Mapping[str, str], b: Mapping[str, str], n: int = 3, mode: str = "words") -> float:
    return jaccard(shingles(row_text(a), n, mode), shingles(row_text(b), n, mode))


def min_row_jaccard(a: Mapping[str, str], b: Mapping[str, str], n: int = 3) -> float:
    """The smaller of the two tokenisations' Jaccard similarities."""
    return min(row_jaccard(a, b, n, mode) for mode in TOKENIZERS)


def max_row_jaccard(a: Mapping[str, str], b: Mapping[str, str], n: int = 3) -> float:
    return max(row_jaccard(a, b, n, mode) for mode in TOKENIZERS)
