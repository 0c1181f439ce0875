"""One raw record -> one normalised row (schema curate.schema.ROWS), and the stable row id (docs/architecture.md §3).

Record kinds:
- alpaca:   {instruction, input?, output | response, system?}
- sharegpt: {conversations: [{from: human|user|gpt|assistant|system, value}], system?}
- openai:   {messages: [{role: system|user|assistant, content}]}

A conversation keeps all its turns: the last assistant turn is the response, the user turn right
before it the instruction, leading system turns the system prompt, everything else the context.
A record that cannot become a row raises RecordError with a reason "<code>: <detail>". Length is
not a reason: long and multi-turn rows are data, cut to the token budget when encoded
(`curate.models.truncation`); only a row over the byte safety limit is refused (`too_large`).
"""
from __future__ import annotations

import hashlib
import json
import unicodedata
from typing import Any, Iterable, Mapping, Sequence

RECORD_KINDS = ("alpaca", "sharegpt", "openai")

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "chatgpt": "assistant", "model": "assistant", "bing": "assistant", "bard": "assistant",
                   "system": "system"}
_OPENAI_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


class RecordError(ValueError):
    def __init__(self, code: str, detail: str, row_id: str | None = None):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.row_id = row_id


def canonical_text(text: str) -> str:
    """NFKC-normalised, whitespace collapsed to single spaces, stripped; case preserved."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def row_id(system: str, context: Iterable[Mapping[str, str] | Sequence[str]], instruction: str, input: str,
           response: str) -> str:
    """Digest of a row's canonical content: equal for whitespace/Unicode-form variants of the same row."""
    turns = [
        [t["role"], canonical_text(t["content"])] if isinstance(t, Mapping) else [t[0], canonical_text(t[1])]
        for t in context
    ]
    blob = json.dumps(
        [canonical_text(system), turns, canonical_text(instruction), canonical_text(input), canonical_text(response)],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def record_kind(keys: Iterable[str]) -> str | None:
    """The record kind a set of keys (a JSON object's or a table's columns) belongs to, if any."""
    keys = set(keys)
    if "messages" in keys:
        return "openai"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys and ("output" in keys or "response" in keys):
        return "alpaca"
    return None


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _shown(value: Any, limit: int = 80) -> str:
    """`repr(value)`, cut to `limit` characters (a quarantine reason names a bad value, it does not copy it)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _text(record: Mapping[str, Any], key: str, required: bool, missing_label: str | None = None) -> str:
    value = record.get(key)
    if value is None:
        if required:
            raise RecordError("missing_field", f"'{missing_label or key}' is missing")
        return ""
    if not isinstance(value, str):
        raise RecordError("wrong_type", f"'{key}' is {_type_name(value)}, expected a string")
    return value


def _optional_label(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    return value if isinstance(value, str) else None


def _alpaca(record: Mapping[str, Any]) -> dict:
    instruction = _text(record, "instruction", required=True)
    input_ = _text(record, "input", required=False)
    response_key = "output" if record.get("output") is not None or "response" not in record else "response"
    response = _text(record, response_key, required=True, missing_label="output (or response)")
    return dict(system=_text(record, "system", required=False), context=[], instruction=instruction, input=input_,
                response=response)


def _turns(record: Mapping[str, Any], list_key: str, role_key: str, content_key: str,
           roles: Mapping[str, str]) -> list[tuple[str, str]]:
    turns = record.get(list_key)
    if turns is None:
        raise RecordError("missing_field", f"'{list_key}' is missing")
    if not isinstance(turns, list):
        raise RecordError("wrong_type", f"'{list_key}' is {_type_name(turns)}, expected a list of turns")
    out = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, Mapping) or role_key not in turn or content_key not in turn:
            raise RecordError("bad_conversation", f"turn {i} is not an object with '{role_key}' and '{content_key}'")
        role = roles.get(str(turn[role_key]).lower())
        if role is None:
            raise RecordError("bad_conversation", f"turn {i} has unsupported role {_shown(turn[role_key])}")
        out.append((role, _content(turn[content_key], i)))
    return out


def _content(value: Any, i: int) -> str:
    if isinstance(value, str):
        return value
    # OpenAI content parts: [{"type": "text", "text": ...}, ...]
    if isinstance(value, list) and all(isinstance(p, Mapping) and p.get("type") == "text" for p in value):
        return "".join(str(p.get("text", "")) for p in value)
    raise RecordError("wrong_type", f"content of turn {i} is {_type_name(value)}, expected a string")


def _conversation(turns: list[tuple[str, str]], top_level_system: str) -> dict:
    if not turns:
        raise RecordError("bad_conversation", "conversation has no turns")
    lead = 0
    while lead < len(turns) and turns[lead][0] == "system":
        lead += 1
    system = "\n\n".join(c for _, c in turns[:lead]) or top_level_system
    rest = turns[lead:]
    if not rest or rest[-1][0] != "assistant":
        raise RecordError("bad_conversation", "conversation does not end with an assistant turn")
    if len(rest) < 2 or rest[-2][0] != "user":
        raise RecordError("bad_conversation", "the last assistant turn does not follow a user turn")
    context = [{"role": r, "content": c} for r, c in rest[:-2]]
    return dict(system=system, context=context, instruction=rest[-2][1], input="", response=rest[-1][1])


def _utf8_size(texts: Iterable[str]) -> int:
    """Bytes of `texts` in UTF-8; RecordError for text no UTF-8 can hold (lone surrogates, from undecodable bytes
    or from `\\ud800`-style JSON escapes)."""
    try:
        return sum(len(text.encode("utf-8")) for text in texts)
    except UnicodeEncodeError:
        raise RecordError("invalid_utf8", "text contains undecodable bytes or lone surrogates") from None


def record_to_row(record: Any, kind: str, max_bytes: int) -> dict:
    """The row fields (without source/position) of one record of `kind`, or RecordError."""
    if not isinstance(record, Mapping):
        raise RecordError("not_an_object", f"record is {_type_name(record)}, expected an object")
    if kind == "alpaca":
        row = _alpaca(record)
    elif kind == "sharegpt":
        turns = _turns(record, "conversations", "from", "value", _SHAREGPT_ROLES)
        row = _conversation(turns, _text(record, "system", required=False))
    elif kind == "openai":
        row = _conversation(_turns(record, "messages", "role", "content", _OPENAI_ROLES), "")
    else:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {RECORD_KINDS}")
    size = _utf8_size([row["system"], row["instruction"], row["input"], row["response"]]
                      + [t["content"] for t in row["context"]])
    row["skill"] = _optional_label(record, "skill")
    row["truth"] = _optional_label(record, "truth")
    _utf8_size([label for label in (row["skill"], row["truth"]) if label is not None])
    if not row["instruction"].strip():
        raise RecordError("empty_field", "instruction (last user turn) is empty")
    if not row["response"].strip():
        raise RecordError("empty_field", "response (last assistant turn) is empty")
    row["row_id"] = row_id(row["system"], row["context"], row["instruction"], row["input"], row["response"])
    if size > max_bytes:
        raise RecordError("too_large", f"{size} bytes of text (UTF-8, all fields) > ingest.max_bytes {max_bytes}; "
                          f"raise ingest.max_bytes to keep the row", row_id=row["row_id"])
    return row
