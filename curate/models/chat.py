"""Text construction for scoring and training (IterIT note §1, "Text construction").

- conditional text: chat template over [system, earlier turns, user, assistant=response]
- prior text: chat template over [assistant=response] only (as the reference builds it: it still
  contains the template's boilerplate)
- the response span: the tokens from the first token that overlaps the response's character
  offset (found with `rfind`, as the reference does) to the end of the text, so the template's
  end-of-turn token is inside the span.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from curate.schema import user_text

# Chat template of the default tiny model. Every turn ends with <|end|>, which is also EOS.
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
TINY_SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]


@dataclass
class Encoded:
    input_ids: list[int]
    span_start: int  # first response token; == len(input_ids) when the span is empty

    @property
    def span_len(self) -> int:
        return len(self.input_ids) - self.span_start


def conversation(row: dict[str, Any], system_prompt: str | None) -> list[dict[str, str]]:
    """Messages of a row, ending with the scored assistant response."""
    msgs: list[dict[str, str]] = []
    system = row.get("system") or system_prompt
    if system:
        msgs.append({"role": "system", "content": system})
    for turn in row.get("context") or []:
        msgs.append({"role": turn["role"], "content": turn["content"]})
    msgs.append({"role": "user", "content": user_text(row["instruction"], row.get("input") or "")})
    msgs.append({"role": "assistant", "content": row["response"]})
    return msgs


def prompt_messages(row: dict[str, Any], system_prompt: str | None) -> list[dict[str, str]]:
    """Messages up to (not including) the assistant response, for generation."""
    return conversation(row, system_prompt)[:-1]


def encode_with_span(tokenizer, messages: Sequence[dict[str, str]], max_length: int) -> Encoded:
    """Render `messages` with the chat template and locate the last message's content as a token span."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False)
    response = messages[-1]["content"]
    idx = text.rfind(response) if response else -1
    if idx < 0 and response.strip():
        idx = text.rfind(response.strip())
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])[:max_length]
    offsets = list(enc["offset_mapping"])[: len(ids)]
    if idx < 0:
        return Encoded(ids, len(ids))
    start = len(ids)
    for i, (_, end) in enumerate(offsets):
        if end > idx:
            start = i
            break
    return Encoded(ids, start)


def encode_conditional(tokenizer, row: dict[str, Any], system_prompt: str | None, max_length: int) -> Encoded:
    return encode_with_span(tokenizer, conversation(row, system_prompt), max_length)


def encode_prior(tokenizer, row: dict[str, Any], span_len: int, max_length: int) -> Encoded:
    """Prior ("direct answer") text; its span is the last `span_len` tokens, the conditional span length."""
    enc = encode_with_span(tokenizer, [{"role": "assistant", "content": row["response"]}], max_length)
    own = enc.span_len
    n = min(span_len, own) if own else 0
    return Encoded(enc.input_ids[: enc.span_start + n], enc.span_start)


def generation_prompt_ids(tokenizer, row: dict[str, Any], system_prompt: str | None, max_length: int) -> list[int]:
    ids = tokenizer.apply_chat_template(
        prompt_messages(row, system_prompt), tokenize=True, add_generation_prompt=True
    )
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)[-max_length:]
