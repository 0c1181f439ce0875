"""Fitting a conversation into a token budget, the way chat trainers do: long and multi-turn rows are
data, not errors.

The budget is `max_length` capped by the model's context length (`token_budget`). A row that exceeds
it keeps the head of its scored (last) response, `response_tokens_kept`: all of it when the prompt
leaves room, else at least `share` of the budget. The prompt gets the rest (`fit_prompt`):

1. the oldest turns go first, whole exchanges at a time (the kept turns start with a user turn);
   the system prompt and the last user turn stay;
2. if the system prompt and the last user turn alone are too long, the last user turn keeps its
   tail (the end, next to the response);
3. if even an empty last user turn is too long, the system prompt goes too and step 2 is repeated.

The rule measures a candidate prompt through a callback (its token count as the chat template
renders it with the generation prompt), so it does not depend on a tokenizer. Scoring, training and
evaluation all encode rows through `curate.models.chat.encode_conversation`, which applies it.
"""
from __future__ import annotations

from typing import Callable, Sequence

RESPONSE_SHARE = 0.5  # default share of the budget a long response keeps (scoring/training.response_share)
Message = dict[str, str]
LengthFn = Callable[[list[Message]], int]


def token_budget(max_length: int, context_length: int | None) -> int:
    """`max_length` capped by the model's context length (config `max_position_embeddings`), when known."""
    return min(max_length, int(context_length)) if context_length else max_length


def response_tokens_kept(span_len: int, prompt_len: int, budget: int, share: float) -> int:
    """Tokens of the response span kept (its head): all when prompt + span fit, else at least
    `share` of the budget or what the prompt leaves free, whichever is more; at least one prompt
    token always stays (the first response token is predicted from it)."""
    if prompt_len + span_len <= budget:
        return span_len
    return max(0, min(span_len, max(int(share * budget), budget - prompt_len), budget - 1))


def fit_prompt(prompt: Sequence[Message], budget: int, length: LengthFn) -> list[Message] | None:
    """The prompt messages (system?, earlier turns, last user turn) cut by the rule above so that
    `length` of them is at most `budget`; None when not even the generation prompt fits."""
    prompt = list(prompt)
    if length(prompt) <= budget:
        return prompt
    system = prompt[:1] if len(prompt) > 1 and prompt[0]["role"] == "system" else []
    earlier, last = prompt[len(system):-1], prompt[-1]
    # drop counts that leave the kept turns starting with a non-assistant turn; the last drops them all
    cuts = [k for k in range(1, len(earlier) + 1) if k == len(earlier) or earlier[k]["role"] != "assistant"]
    if length(system + [last]) <= budget:
        lo, hi = 0, len(cuts) - 1  # the smallest cut that fits (lengths shrink as turns go)
        while lo < hi:
            mid = (lo + hi) // 2
            if length(system + earlier[cuts[mid]:] + [last]) <= budget:
                hi = mid
            else:
                lo = mid + 1
        return system + earlier[cuts[lo]:] + [last]
    for head in ([system, []] if system else [[]]):
        tail = _tail_of_last_turn(head, last, budget, length)
        if tail is not None:
            return tail
    return None


def _tail_of_last_turn(head: list[Message], last: Message, budget: int, length: LengthFn) -> list[Message] | None:
    """head + the last turn cut to its longest tail (in characters) that fits; None if an empty one does not."""
    text = last["content"]

    def cut(start: int) -> list[Message]:
        return head + [{**last, "content": text[start:]}]

    if length(cut(len(text))) > budget:
        return None
    lo, hi = 0, len(text)  # the smallest start that fits
    while lo < hi:
        mid = (lo + hi) // 2
        if length(cut(mid)) <= budget:
            hi = mid
        else:
            lo = mid + 1
    return cut(lo)
