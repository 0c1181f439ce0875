"""Text construction for scoring and training (docs/iterit.md §1, "Texts and the response span").

- conditional text: chat template over [system, earlier turns, user, assistant=response]
- prior text: chat template over [assistant=response] only (as the reference builds it: it still
  contains the template's boilerplate)
- the response span is found from the template's structure, never by searching for the response
  text: it is the rendering of the whole conversation minus the rendering of the prompt with the
  generation prompt (`add_generation_prompt=True`), in tokens. Where that prompt is not a token prefix
  of the whole (a template that renders the last assistant turn differently, or a token that merges
  across the boundary), the span starts at the first token where the two differ. The span runs to
  the end of the text, so the template's end-of-turn token is inside it.
- rows longer than the token budget are cut by `curate.models.truncation` (oldest turns first; the
  response keeps its head), so a long context never empties the span.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from jinja2 import TemplateError

from curate.models.truncation import RESPONSE_SHARE, fit_prompt, response_tokens_kept
from curate.schema import user_text

# Chat template of the default tiny model. Every turn ends with <|end|>, which is also EOS.
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
TINY_SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]


class ChatTemplateError(ValueError):
    pass


@dataclass
class Encoded:
    input_ids: list[int]
    span_start: int  # first token of the scored (last) response; == len(input_ids) when the span is empty
    earlier_spans: tuple[tuple[int, int], ...] = ()  # [start, end) of earlier assistant turns that also take the loss
    truncated: bool = False  # the row exceeded the token budget and was cut
    span_cut: int = 0  # tokens cut off the end of the (last) response span

    @property
    def span_len(self) -> int:
        return len(self.input_ids) - self.span_start

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        return (*self.earlier_spans, (self.span_start, len(self.input_ids)))

    @property
    def n_loss_tokens(self) -> int:
        """Span tokens that have a prediction (token 0 has none)."""
        return sum(max(0, end - max(start, 1)) for start, end in self.spans)


def use_chat_template(tokenizer, chat_template: str | None = None):
    """The tokenizer with `chat_template` (base_model.chat_template) set when given; an error when it has none."""
    if chat_template:
        tokenizer.chat_template = chat_template
    if not tokenizer.chat_template:
        raise ChatTemplateError(
            "the model's tokenizer has no chat template, so conversations cannot be rendered: set "
            "base_model.chat_template to a Jinja chat template (a string, e.g. the one of the model's "
            "instruct variant)"
        )
    return tokenizer


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


def render_ids(tokenizer, messages: Sequence[dict[str, str]], generation_prompt: bool = False) -> list[int]:
    """Token ids of the chat-template rendering of `messages`. A template that refuses a system
    message (Gemma's) gets the system prompt folded into the first user turn instead."""
    use_chat_template(tokenizer)
    messages = list(messages)
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except TemplateError as refused:
        if not messages or messages[0]["role"] != "system":
            raise
        try:
            text = tokenizer.apply_chat_template(_fold_system(messages), tokenize=False,
                                                 add_generation_prompt=generation_prompt)
        except TemplateError:
            raise refused from None
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The system message's text moved to the start of the first user turn (dropped when there is none)."""
    system, rest = messages[0]["content"], messages[1:]
    for i, m in enumerate(rest):
        if m["role"] == "user":
            return rest[:i] + [{**m, "content": f"{system}\n\n{m['content']}"}] + rest[i + 1:]
    return rest


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _span_start(tokenizer, ids: list[int], prompt: Sequence[dict[str, str]]) -> int:
    """First token of the last turn in `ids`: where `ids` leaves the rendering of `prompt` + generation prompt."""
    return _common_prefix(ids, render_ids(tokenizer, prompt, generation_prompt=True))


def _earlier_spans(tokenizer, messages: Sequence[dict[str, str]], ids: list[int], end: int) -> list[tuple[int, int]]:
    """[start, end) in `ids` of every assistant turn before the last one, each found like the last span."""
    spans = []
    for j, m in enumerate(messages[:-1]):
        if m["role"] != "assistant" or not m["content"].strip():
            continue
        start = _span_start(tokenizer, ids, messages[:j])
        stop = min(_common_prefix(ids, render_ids(tokenizer, messages[: j + 1])), end)
        if start < stop:
            spans.append((start, stop))
    return spans


def encode_conversation(tokenizer, messages: Sequence[dict[str, str]], max_length: int,
                        response_share: float = RESPONSE_SHARE, all_turns: bool = False) -> Encoded:
    """`messages` (ending with the scored assistant turn) as at most `max_length` token ids and the
    response span; with `all_turns` also the spans of the earlier assistant turns that were kept.

    A response that is empty (or whitespace) gets an empty span. A longer row is cut by
    `curate.models.truncation`; if even its rule leaves the prompt too long, the prompt keeps its
    last tokens.
    """
    messages = list(messages)
    ids = render_ids(tokenizer, messages)
    start = _span_start(tokenizer, ids, messages[:-1])
    if not messages[-1]["content"].strip():
        start = min(start, max_length)
        return Encoded(ids[:start], start, truncated=len(ids) > max_length)
    truncated = len(ids) > max_length
    if truncated:
        keep = response_tokens_kept(len(ids) - start, start, max_length, response_share)
        prompt = fit_prompt(messages[:-1], max_length - keep,
                            lambda m: len(render_ids(tokenizer, m, generation_prompt=True)))
        if prompt is not None:
            messages = prompt + messages[-1:]
            ids = render_ids(tokenizer, messages)
            start = _span_start(tokenizer, ids, prompt)
        span = ids[start:][: max(keep, max_length - start)]
        drop = max(0, start - (max_length - len(span)))  # leading prompt tokens that still do not fit
    else:
        span, drop = ids[start:], 0
    earlier = _earlier_spans(tokenizer, messages, ids, start) if all_turns else []
    shifted = tuple((max(a - drop, 0), b - drop) for a, b in earlier if b - drop > 0)
    return Encoded(ids[drop:start] + span, start - drop, shifted, truncated, len(ids) - start - len(span))


def encode_conditional(tokenizer, row: dict[str, Any], system_prompt: str | None, max_length: int,
                       response_share: float = RESPONSE_SHARE, all_turns: bool = False) -> Encoded:
    return encode_conversation(tokenizer, conversation(row, system_prompt), max_length, response_share, all_turns)


def encode_prior(tokenizer, row: dict[str, Any], span_len: int, max_length: int,
                 full_span_len: int | None = None) -> Encoded:
    """Prior ("direct answer") text [assistant=response]; its span holds the same response tokens as
    the conditional span: of the text's last `full_span_len` tokens (the conditional span before its
    end was cut; default `span_len`), the first `span_len`.

    A template that refuses a conversation opening with an assistant turn (one that enforces
    user/assistant alternation) renders [user="", assistant=response] instead.
    """
    response = {"role": "assistant", "content": row["response"]}
    try:
        ids = render_ids(tokenizer, [response])
    except TemplateError:
        ids = render_ids(tokenizer, [{"role": "user", "content": ""}, response])
    if span_len == 0:
        return Encoded(ids[:0], 0)
    full = span_len if full_span_len is None else full_span_len
    start = max(len(ids) - full, 0)
    ids = ids[: start + span_len]
    drop = max(0, len(ids) - max_length)
    return Encoded(ids[drop:], start - drop, truncated=drop > 0 or span_len < full)


def generation_prompt_ids(tokenizer, row: dict[str, Any], system_prompt: str | None, max_length: int) -> list[int]:
    """Token ids of the row's prompt + generation prompt within `max_length`, cut by the same rule."""
    prompt = prompt_messages(row, system_prompt)
    kept = fit_prompt(prompt, max_length, lambda m: len(render_ids(tokenizer, m, generation_prompt=True)))
    ids = render_ids(tokenizer, kept if kept is not None else prompt, generation_prompt=True)
    return ids[-max_length:]
