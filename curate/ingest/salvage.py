"""Records of a JSON array file that may be damaged: read element by element, keep every complete one.

A JSON file that `json.loads` rejects is not always lost. Exports cut off mid-write (the public
ShareGPT dump is one) hold thousands of complete records before the damage. `array_elements`
walks the top-level array with `json.JSONDecoder.raw_decode`, one element at a time, and yields
each complete element; at the first element that does not parse it yields one error item that
covers the rest of the file (its character offset and a preview), and stops: after a syntax error
there is no reliable way to find where the next element starts. An element nested deeper than the
parser can follow (Python's recursion limit) is well-formed text whose end a bracket count finds:
it is one `too_deep` error item, and reading goes on after it.

`parse` is `json.loads` with that depth failure as `TooDeep`, a ValueError like every other parse
failure, so one line or record of any content can be quarantined, never abort a run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

_DECODER = json.JSONDecoder()
_WS = " \t\n\r"
ERROR_PREVIEW_CHARS = 2000  # of the damaged rest, kept with the error item


class TooDeep(ValueError):
    """JSON nested deeper than the parser can follow (Python's recursion limit)."""

    def __init__(self, end: int | None = None):
        super().__init__("nested deeper than the JSON parser's recursion limit allows")
        self.end = end  # in `array_elements`: where the too deep element ends (None: the text ends inside it)


def parse(text: str) -> Any:
    """`json.loads(text)`; TooDeep (a ValueError) instead of RecursionError for a too deeply nested value."""
    try:
        return json.loads(text)
    except RecursionError:
        raise TooDeep() from None


def reason(error: ValueError) -> str:
    """The quarantine reason of a parse failure: `too_deep: ...` or `invalid_json: ...`."""
    return f"{'too_deep' if isinstance(error, TooDeep) else 'invalid_json'}: {error}"


@dataclass(frozen=True)
class Element:
    value: Any  # the parsed element (None when `error` is set)
    raw: str  # its text (for an error: the start of the damaged rest)
    error: str | None = None  # "invalid_json: ..." for the damaged rest of the file, "too_deep: ..." for one element


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def is_array(text: str) -> bool:
    """The text starts (after a BOM and white space) with '[': a JSON array, complete or not."""
    i = _skip_ws(text, 1 if text.startswith("\ufeff") else 0)
    return i < len(text) and text[i] == "["


def _bracketed_end(text: str, i: int) -> int | None:
    """End of the array or object starting at `text[i]`, by counting brackets outside strings (no
    recursion: any depth); None when the text ends first."""
    depth, in_string, escaped = 0, False, False
    for j in range(i, len(text)):
        c = text[j]
        if in_string:
            escaped, in_string = (False, True) if escaped else (c == "\\", c != '"')
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return j + 1
    return None


def _decode(text: str, i: int) -> tuple[Any, int]:
    """(element, end) at `text[i]`; TooDeep with the element's end as `end` when it is too deeply nested."""
    try:
        return _DECODER.raw_decode(text, i)
    except RecursionError:
        raise TooDeep(_bracketed_end(text, i) if text[i] in "[{" else None) from None


def array_elements(text: str) -> Iterator[Element]:
    """The elements of the JSON array in `text`, in order; too deep ones as `too_deep` error items;
    at most one other error item, last."""
    i = _skip_ws(text, 1 if text.startswith("\ufeff") else 0)
    if i >= len(text) or text[i] != "[":
        raise ValueError("not a JSON array: the text does not start with '['")
    i = _skip_ws(text, i + 1)
    if i < len(text) and text[i] == "]":
        return
    while True:
        try:
            value, end = _decode(text, i)
        except json.JSONDecodeError as e:
            yield Element(None, text[i : i + ERROR_PREVIEW_CHARS],
                          f"invalid_json: damaged or truncated from character {i} ({e.msg})")
            return
        except TooDeep as e:
            if e.end is None:
                yield Element(None, text[i : i + ERROR_PREVIEW_CHARS], f"{reason(e)}; the file ends inside it")
                return
            yield Element(None, text[i : min(e.end, i + ERROR_PREVIEW_CHARS)], reason(e))
            end = e.end
        else:
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
