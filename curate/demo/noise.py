"""Noise injected into the demo pool, one function per kind (the `truth` labels of the pool rows).

- exact_dup: a byte-identical copy of a clean row (made in pool.py, nothing to edit).
- near_dup: a clean row with a filler word added at one end and (when the row is long enough) the
  final punctuation of the other field changed, so the normalised exact hash differs while the
  word-3-gram Jaccard similarity to the original stays high (checked, see `near_duplicate`).
- shuffled: the prompt of one item with the response of an item of another skill (made in pool.py).
- garbage: random characters or random word salad in place of the response (and sometimes the prompt).
- truncated: the response cut in the middle.
- empty: an empty or whitespace-only response.
"""
from __future__ import annotations

import random
import string

from curate.demo.overlap import min_row_jaccard
from curate.demo.world import WORDS

NOISE_KINDS = ("exact_dup", "near_dup", "shuffled", "garbage", "truncated", "empty")

PREFIX_FILLERS = ("Please,", "Hey,", "Okay,", "Hi!", "So,", "Now,", "Quickly:")
SUFFIX_FILLERS = ("Thanks.", "Done!", "Cheers.", "Enjoy!", "Indeed.", "Easy.")


def _swap_final_punctuation(text: str, rng: random.Random) -> str:
    if text.endswith("."):
        return text[:-1] + rng.choice(("!", "", " ."))
    if text.endswith("?"):
        return text[:-1] + rng.choice(("??", "", " ?"))
    return text + rng.choice((".", "!"))


def near_duplicate(row: dict, rng: random.Random, min_jaccard: float) -> dict | None:
    """A lightly edited copy of `row`: a filler word at the start of the instruction or the end of the
    response, plus a changed final punctuation mark in the other field when the row is long enough to
    keep the word-3-gram Jaccard similarity (smaller of the two tokenisations) >= `min_jaccard`.
    None when even the filler alone would drop below it."""
    if rng.random() < 0.5:
        with_filler = {"instruction": f"{rng.choice(PREFIX_FILLERS)} {row['instruction']}"}
        punctuated = {**with_filler, "output": _swap_final_punctuation(row["output"], rng)}
    else:
        with_filler = {"output": f"{row['output']} {rng.choice(SUFFIX_FILLERS)}"}
        punctuated = {**with_filler, "instruction": _swap_final_punctuation(row["instruction"], rng)}
    for edit in (punctuated, with_filler):
        edited = {**row, **edit, "truth": "near_dup"}
        if min_row_jaccard(row, edited) >= min_jaccard:
            return edited
    return None


def garbage_text(rng: random.Random) -> str:
    if rng.random() < 0.5:
        alphabet = string.ascii_letters + string.digits + string.punctuation + "      "
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(20, 120))).strip() or "#"
    pieces = [rng.choice(WORDS) if rng.random() < 0.7 else str(rng.randint(0, 9999)) for _ in range(rng.randint(5, 25))]
    return " ".join(pieces)


def garbage(row: dict, rng: random.Random) -> dict:
    """Random response; in half the cases the prompt is random too."""
    out = {**row, "output": garbage_text(rng), "truth": "garbage"}
    if rng.random() < 0.5:
        out.update(instruction=garbage_text(rng), input="")
    return out


def truncated(row: dict, rng: random.Random) -> dict:
    text = row["output"]
    cut = rng.randint(max(1, len(text) // 4), max(1, (3 * len(text)) // 4))
    return {**row, "output": text[:cut].rstrip() or text[:1], "truth": "truncated"}


def empty(row: dict, rng: random.Random) -> dict:
    return {**row, "output": rng.choice(("", "", " ", "\n")), "truth": "empty"}
