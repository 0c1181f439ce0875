"""Records of a JSON array file that may be damaged: read element by element, keep every complete one.

A JSON file that `json.loads` rejects is not always lost. Exports cut off mid-write (the public
ShareGPT dump is one) hold thousands of complete records before the damage. `array_elements`
walks the top-level array with `json.JSONDecoder.raw_decode`, one element at a time, and yields
each complete element; at the first element that does not parse it yields one error item that
covers the rest of the file (its character offset and a preview), and stops: after a syntax error
there is no reliable way to find where the next element starts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

_DECODER = json.JSONDecoder()
_WS = " \t\n\r"
ERROR_PREVIEW_CHARS = 2000  # of the damaged rest, kept with the error item


@dataclass(frozen=True)
class Element:
    value: Any  # the parsed element (None when `error` is set)
    raw: str  # its text (for an error: the start of the damaged rest)
    error: str | None = None  # "invalid_json: ..." for the damaged rest of the file


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def is_array(text: str) -> bool:
    """The text starts (after a BOM and white space) with '[': a JSON array, complete or not."""
    i = _skip_ws(text, 1 if text.startswith("\ufeff") else 0)
    return i < len(text) and text[i] == "["


def array_elements(text: str) -> Iterator[Element]:
    """The elements of the JSON array in `text`, in order; at most one error item, last."""
    i = _skip_ws(text, 1 if text.startswith("\ufeff") else 0)
    if i >= len(text) or text[i] != "[":
        raise ValueError("not a JSON array: the text does not start with '['")
    i = _skip_ws(text, i + 1)
    if i < len(text) and text[i] == "]":
        return
    while True:
        try:
            value, end = _DECODER.raw_decode(text, i)
        except json.JSONDecodeError as e:
            yield Element(None, text[i : i + ERROR_PREVIEW_CHARS],
                          f"invalid_json: damaged or truncated from character {i} ({e.msg})")
            return
        yield Element(value, text[i:end])
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == "]":
            return
        if i >= len(text) or text[i] != ",":
            what = "the file ends" if i >= len(text) else f"{text[i]!r} follows"
            yield Element(None, text[i : i + ERROR_PREVIEW_CHARS], f"invalid_json: damaged or truncated from character {i} ({what} "
                                          f"where ',' or ']' was expected)")
            return
        i = _skip_ws(text, i + 1)
