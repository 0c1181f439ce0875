"""Held-out evaluation of a checkpoint, per skill (docs/iterit.md §10: loss (19), exact match).

Per set: the token-weighted mean cross-entropy over response tokens (the training objective on
unseen rows: same chat-template text and response span as training), and the exact-match rate of
greedy decoding from the generation prompt (decoded answer, stripped, equal to the reference
response, stripped; decoding stops at EOS `<|end|>`). Set means are taken with equal weight per set.
Batching (length buckets under a token budget) and the span losses are the scorer's
(`curate.scoring.ifd`), so a held-out loss and an IFD conditional loss are computed the same way,
with the same truncation rule (`curate.models.truncation`): the budget is max_length capped by the
model's context length; a generation prompt gets that budget minus `max_new_tokens`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from curate.models.chat import encode_conditional, generation_prompt_ids, use_chat_template
from curate.models.truncation import RESPONSE_SHARE, token_budget
from curate.scoring.ifd import length_buckets, mean_span_losses


def _left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, width - len(s) :] = torch.tensor(list(s), dtype=torch.long)
        mask[r, width - len(s) :] = 1
    return ids, mask


def row_losses(model, tokenizer, rows: Sequence[dict], system_prompt: str, max_length: int, batch_tokens: int,
               response_share: float = RESPONSE_SHARE) -> tuple[np.ndarray, np.ndarray, int]:
    """Each row's mean response cross-entropy (NaN without a response token), its response token count,
    and the number of rows cut to the budget."""
    encoded = [encode_conditional(tokenizer, r, system_prompt, max_length, response_share) for r in rows]
    means, counts = mean_span_losses(model, encoded, tokenizer.pad_token_id, batch_tokens)
    return means, counts, sum(e.truncated for e in encoded)


def token_weighted(means: np.ndarray, counts: np.ndarray) -> float:
    """The set's loss: the token-weighted mean of its rows' mean losses (NaN without a token)."""
    total = int(counts.sum())
    return float(np.nansum(means * counts)) / total if total else math.nan


def greedy_answers(
    model, tokenizer, rows: Sequence[dict], system_prompt: str, max_length: int, batch_tokens: int, max_new_tokens: int
) -> list[str]:
    """Greedy continuation of each row's generation prompt up to EOS, decoded (left-padded batches);
    prompt + answer fit in `max_length`."""
    budget = max(max_length - max_new_tokens, 1)
    prompts = [generation_prompt_ids(tokenizer, r, system_prompt, budget) for r in rows]
    device = next(model.parameters()).device
    eos_id, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    answers = [""] * len(rows)
    for batch in length_buckets([len(p) + max_new_tokens for p in prompts], batch_tokens):
        ids, mask = _left_pad([prompts[i] for i in batch], pad_id)
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
            do_sample=False, eos_token_id=eos_id, pad_token_id=pad_id,
        )
        for r, i in enumerate(batch):
            new = out[r, ids.shape[1] :].tolist()
            if eos_id in new:
                new = new[: new.index(eos_id)]
            answers[i] = tokenizer.decode(new, skip_special_tokens=True)
    return answers


def is_exact_match(answer: str, reference: str) -> bool:
    return answer.strip() == reference.strip()


def evaluate(
    model,
    tokenizer,
    sets: dict[str, list[dict]],
    system_prompt: str,
    max_length: int,
    batch_tokens: int = 8192,
    exact_match: bool = True,
    max_new_tokens: int = 48,
    response_share: float = RESPONSE_SHARE,
) -> dict[str, Any]:
    """Evaluate on held-out sets.

    Returns `{"sets": {name: {"loss", "n", "response_tokens", "rows_truncated", "exact_match"}},
    "mean_loss", "mean_exact_match", "rows_truncated", "rows"}`; `rows`: per set, the evaluated rows'
    `row_id`, mean `loss` (NaN without a response token) and response `tokens` (the paired statistics
    of `curate compare` compare arms row by row). `exact_match` is None when not computed; a
    set with no scorable response token has loss NaN and is left out of `mean_loss`.
    """
    max_length = token_budget(max_length, getattr(model.config, "max_position_embeddings", None))
    was_training = model.training
    model.eval()
    per_set: dict[str, dict[str, Any]] = {}
    per_row: dict[str, dict[str, list]] = {}
    try:
        with torch.inference_mode():
            for name, rows in sets.items():
                means, counts, n_cut = row_losses(model, tokenizer, rows, system_prompt, max_length, batch_tokens,
                                                  response_share)
                per_row[name] = {"row_id": [r.get("row_id") for r in rows], "loss": means.tolist(),
                                 "tokens": counts.tolist()}
                em = None
                if exact_match and rows:
                    answers = greedy_answers(
                        model, tokenizer, rows, system_prompt, max_length, batch_tokens, max_new_tokens
                    )
                    em = sum(is_exact_match(a, r["response"]) for a, r in zip(answers, rows)) / len(rows)
                per_set[name] = {"loss": token_weighted(means, counts), "n": len(rows),
                                 "response_tokens": int(counts.sum()), "rows_truncated": n_cut,
                                 "exact_match": em}
    finally:
        model.train(was_training)
    losses = [s["loss"] for s in per_set.values() if not math.isnan(s["loss"])]
    ems = [s["exact_match"] for s in per_set.values() if s["exact_match"] is not None]
    return {
        "sets": per_set,
        "mean_loss": sum(losses) / len(losses) if losses else math.nan,
        "mean_exact_match": sum(ems) / len(ems) if ems else None,
        "rows_truncated": sum(s["rows_truncated"] for s in per_set.values()),
        "rows": per_row,
    }


def evaluate_checkpoint(checkpoint: Path, sets: dict[str, list[dict]], system_prompt: str, max_length: int,
                        chat_template: str | None = None, **kwargs):
    """`evaluate` on a saved checkpoint directory (model + tokenizer, save_pretrained format);
    `chat_template` (base_model.chat_template) replaces the tokenizer's when given."""
    tokenizer = use_chat_template(AutoTokenizer.from_pretrained(checkpoint), chat_template)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    return evaluate(model, tokenizer, sets, system_prompt, max_length, **kwargs)
