"""Text normalisation for deduplication (docs/architecture.md §2, dedup stage).

A row's *dedup text* is the text that exact and near-duplicate detection compare: its earlier
conversation turns, instruction, input and response, each normalised on its own, then joined with
`FIELD_SEPARATOR`. The system prompt is left out: rows that differ only in it are duplicates.

Normalisation of one field, in this order:

1. Unicode NFKC: compatibility characters fold to their plain form (full-width letters, ligatures,
   non-breaking and other exotic spaces, superscript digits).
2. Case folding (`str.casefold`, optional): case-insensitive matching, including the cases
   `str.lower` misses (German sharp s, Greek final sigma).
3. Whitespace collapse: every run of Unicode whitespace becomes one ASCII space, and the ends are
   stripped.

Each field is normalised separately, so the separator is never collapsed away and text cannot
move between fields unnoticed ("ab" + "c" differs from "a" + "bc"). The separator is a visible,
non-whitespace symbol, so word shingles see a field boundary as a word of its own.
"""
from __future__ import annotations

import unicodedata
from typing import Iterable, Sequence

import pyarrow as pa

FIELD_SEPARATOR = " \u241e "  # SYMBOL FOR RECORD SEPARATOR, spaced so it is a word of its own


def normalize_text(text: str, *, casefold: bool = True) -> str:
    """NFKC, then optional case folding, then whitespace collapsed to single spaces and stripped."""
    text = unicodedata.normalize("NFKC", text)
    if casefold:
        text = text.casefold()
    return " ".join(text.split())


def dedup_text(
    instruction: str,
    input_: str,
    response: str,
    context: Sequence[str] = (),
    *,
    casefold: bool = True,
) -> str:
    """The normalised dedup text of one row: context turns, instruction, input, response.

    `context` holds the contents of the earlier turns in conversation order. An empty field still
    takes its place, so a row whose input is empty differs from one whose input is " ".
    """
    fields: Iterable[str] = (*context, instruction, input_, response)
    return FIELD_SEPARATOR.join(normalize_text(f or "", casefold=casefold) for f in fields)


def dedup_texts(rows: pa.Table, *, casefold: bool = True) -> list[str]:
    """Dedup texts of every row of a table with the `curate.schema.ROWS` columns, in row order."""
    columns = rows.select(["context", "instruction", "input", "response"]).to_pydict()
    return [
        dedup_text(
            instruction,
            input_,
            response,
            [turn["content"] or "" for turn in context or ()],
            casefold=casefold,
        )
        for context, instruction, input_, response in zip(
            columns["context"], columns["instruction"], columns["input"], columns["response"]
        )
    ]
