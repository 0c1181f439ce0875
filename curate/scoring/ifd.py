"""Instruction-following difficulty (IFD), the IterIT complexity score S_COM (docs/iterit.md §2, (1)-(5)).

For row i with prompt x_i and response y_i, under the scoring model θ:

    L_cond(i)  = mean over the response span of -log p_θ(y_t | template(system, x_i), y_<t)
    L_prior(i) = mean over the same number of response tokens of -log p_θ(y_t | template(y), y_<t)
    ppl_ratio  = exp(L_cond) / exp(L_prior)          (reference; 0.0 when L_prior == 0)
    loss_ratio = L_cond / L_prior                    (Cherry-LLM's variant; not the reference)

The texts and spans come from `curate.models.chat` (the span includes the end-of-turn token). A
multi-turn row scores its LAST assistant turn, with all earlier turns as context; its prior is that
response alone. Rows longer than the budget (max_length capped by the model's context length) are
cut by `curate.models.truncation`: oldest turns first, the response keeps its head.
ppl_ratio is evaluated as exp(L_cond - L_prior) in float64: identical to the reference's ratio of
exponentials up to float rounding (relative error ~1e-16), and it cannot overflow. An empty span gives
NaN (the reference drops such rows). precision="bf16" stores the score rounded to bfloat16, as the
reference's score tensor does (0.999 -> 1.0; many exact ties).

`score_rows` is the fast path: conditional and prior sequences of all rows are sorted by length,
packed into right-padded batches under a token budget, and run through one forward per batch (the two
kinds mixed); the LM head is applied only at the positions that predict span tokens. It is
`plan_scoring` (sequences, batches and contrast partners, over all rows), `mean_span_losses` over the
planned batches and `finish_scoring`: the score stage's shards (execution.shards) each run a contiguous
group of the planned batches, with the same bits as one pass.
`score_rows_unbatched` is the naive per-row loop (one full forward per text, batch size 1), kept as
the benchmark baseline and the equivalence oracle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from curate.models.chat import Encoded, encode_conditional, encode_prior
from curate.models.truncation import RESPONSE_SHARE, token_budget
from curate.scoring.misalignment import partners, swapped_rows
from curate.sharding import padded_tokens

VARIANTS = ("ppl_ratio", "loss_ratio")
PRECISIONS = ("fp32", "bf16")
# Length bucketing: on the demo pool (conditional ~50 tokens, prior ~13) a pure token budget of
# 8192 pads 19% of the positions in 10 batches; closing a batch below 80% of its longest sequence
# pads 5% in 18 batches.
MIN_FILL = 0.8

ProgressFn = Callable[[int, int], None]  # (done, total): sequences in mean_span_losses, rows in score_rows


def ifd_from_losses(loss_cond, loss_prior, variant: str = "ppl_ratio", precision: str = "fp32") -> np.ndarray:
    """IFD from mean span losses (arrays or scalars): 0.0 where L_prior == 0, NaN where a loss is NaN."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    lc = np.asarray(loss_cond, dtype=np.float64)
    lp = np.asarray(loss_prior, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        score = np.exp(lc - lp) if variant == "ppl_ratio" else lc / lp
    score = np.where(lp == 0.0, 0.0, score)
    score = np.where(np.isnan(lc) | np.isnan(lp), np.nan, score)
    if precision == "bf16":
        score = torch.from_numpy(np.ascontiguousarray(score)).to(torch.bfloat16).to(torch.float64).numpy()
    return score


def _span_head_supported(model) -> bool:
    """True when logits = output_embeddings(decoder hidden states), with no post-processing."""
    cfg = model.config
    return (
        hasattr(model, "get_decoder")
        and model.get_output_embeddings() is not None
        and getattr(cfg, "final_logit_softcapping", None) is None
        and getattr(cfg, "logit_scale", None) is None
    )


def per_token_span_losses(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          span_starts: torch.Tensor, span_only_head: bool | None = None, return_hidden: bool = False):
    """Token CE of every span token in a right-padded batch.

    Token t of sequence b is in the span when span_starts[b] <= t < length[b] and t >= 1; it is
    predicted from position t-1. `span_starts` may instead be a [B, T] bool mask of span tokens
    (sequences with several spans, see `pad_batch`). Returns (losses float32 [n], sequence index [n]) in batch order,
    plus the last-layer hidden states [B, T, d] (after the final norm) with `return_hidden`.
    With span_only_head (default: when the architecture allows it) the LM head runs only at the
    n predicting positions instead of all B*T positions (on the demo pool with the default tiny
    model, vocab 2048: ~15% less time than full logits + masked CE).
    """
    pos = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
    in_span = span_starts if span_starts.dim() == 2 else pos >= span_starts.unsqueeze(1)
    target = in_span & (pos >= 1) & attention_mask.bool()
    seq_idx, tok_idx = target.nonzero(as_tuple=True)
    labels = input_ids[seq_idx, tok_idx]
    if span_only_head is None:
        span_only_head = _span_head_supported(model)
    if span_only_head:
        hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = model.get_output_embeddings()(hidden[seq_idx, tok_idx - 1])
    else:
        out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=return_hidden)
        logits = out.logits[seq_idx, tok_idx - 1]
        hidden = out.hidden_states[-1] if return_hidden else None
    losses = F.cross_entropy(logits.float(), labels, reduction="none")
    return (losses, seq_idx, hidden) if return_hidden else (losses, seq_idx)


def length_buckets(lengths: Sequence[int], batch_tokens: int, min_fill: float = MIN_FILL) -> list[list[int]]:
    """Indices sorted by length (longest first), grouped into batches for right padding.

    A batch closes before a sequence that would push len(batch) * max_len over `batch_tokens`, or
    that is shorter than `min_fill` times the batch's longest (so padding stays under 1 - min_fill of
    any batch's positions). A sequence longer than the budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else 0
        if current and ((len(current) + 1) * longest > batch_tokens or lengths[i] < min_fill * longest):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def pad_batch(seqs: Sequence[Encoded], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, span_starts) of a batch; when a sequence has earlier
    spans (multi-turn training), a [B, T] bool mask of every span's tokens instead of the starts."""
    T = max(len(s.input_ids) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, : len(s.input_ids)] = torch.tensor(s.input_ids, dtype=torch.long)
        mask[b, : len(s.input_ids)] = 1
    if any(s.earlier_spans for s in seqs):
        spans = torch.zeros((len(seqs), T), dtype=torch.bool)
        for b, s in enumerate(seqs):
            for start, end in s.spans:
                spans[b, start:end] = True
        return ids.to(device), mask.to(device), spans.to(device)
    starts = torch.tensor([s.span_start for s in seqs], dtype=torch.long)
    return ids.to(device), mask.to(device), starts.to(device)


def mean_span_losses(model, seqs: Sequence[Encoded], pad_id: int, batch_tokens: int = 8192,
                     progress: ProgressFn | None = None,
                     batches: Sequence[Sequence[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean CE over each sequence's span (NaN for an empty span) and the span token counts.

    Length-bucketed, token-budgeted batches (or the given `batches`; a sequence in none of them gets
    NaN and count 0); one forward per batch under inference_mode.
    """
    n = len(seqs)
    sums = torch.zeros(n, dtype=torch.float64)
    counts = torch.zeros(n, dtype=torch.float64)
    device = next(model.parameters()).device
    model.eval()
    lengths = [len(s.input_ids) for s in seqs]
    done = 0
    with torch.inference_mode():
        for batch in length_buckets(lengths, batch_tokens) if batches is None else batches:
            live = [i for i in batch if lengths[i] > max(seqs[i].span_start, 1)]
            if live:
                ids, mask, starts = pad_batch([seqs[i] for i in live], pad_id, device)
                losses, seq_idx = per_token_span_losses(model, ids, mask, starts)
                where = torch.tensor(live, dtype=torch.long)[seq_idx.cpu()]
                sums.index_add_(0, where, losses.cpu().double())
                counts.index_add_(0, where, torch.ones_like(losses, device="cpu", dtype=torch.float64))
            done += len(batch)
            if progress is not None:
                progress(done, n)
    with np.errstate(invalid="ignore"):
        means = np.where(counts.numpy() > 0, sums.numpy() / counts.numpy(), np.nan)
    return means, counts.numpy().astype(np.int64)


def encode_rows(tokenizer, rows: Sequence[dict[str, Any]], system_prompt: str | None, max_length: int,
                response_share: float = RESPONSE_SHARE) -> tuple[list[Encoded], list[Encoded]]:
    """Conditional and prior sequences of every row; the prior span holds the conditional span's tokens."""
    cond = [encode_conditional(tokenizer, row, system_prompt, max_length, response_share) for row in rows]
    prior = [encode_prior(tokenizer, row, c.span_len, max_length, c.span_len + c.span_cut) for row, c in zip(rows, cond)]
    return cond, prior


def _result(loss_cond, loss_prior, n_tokens, truncated, variant, precision) -> dict[str, np.ndarray]:
    loss_cond = np.asarray(loss_cond, dtype=np.float64)
    loss_prior = np.asarray(loss_prior, dtype=np.float64)
    return {
        "loss_cond": loss_cond,
        "loss_prior": loss_prior,
        "ifd": ifd_from_losses(loss_cond, loss_prior, variant, precision),
        "n_response_tokens": np.asarray(n_tokens, dtype=np.int64),
        "truncated": np.asarray(truncated, dtype=bool),
    }


@dataclass(frozen=True)
class ScoringPlan:
    """What `score_rows` puts through the model, fixed before the first forward: the sequences
    (conditional, prior, then one conditional per contrast partner and row) and their length-bucketed
    batches over all rows. Any split of `batches` scores to the same bits (a sequence's mean depends
    only on its own batch)."""
    seqs: list[Encoded]
    batches: list[list[int]]
    rows: int
    partners: int  # contrast passes (0: no contrast)


def plan_scoring(tokenizer, rows: Sequence[dict[str, Any]], system_prompt: str | None, max_length: int,
                 batch_tokens: int = 8192, contrast_seed: int | None = None, contrast_partners: int = 1,
                 response_share: float = RESPONSE_SHARE) -> ScoringPlan:
    """The plan of `score_rows` (`max_length` already capped by the model's context, see `token_budget`);
    contrast partners are drawn once over all rows."""
    cond, prior = encode_rows(tokenizer, rows, system_prompt, max_length, response_share)
    seqs = cond + prior
    n_partners = contrast_partners if contrast_seed is not None else 0
    for k in range(n_partners):
        swapped = swapped_rows(rows, partners(len(rows), contrast_seed + k))
        seqs += [encode_conditional(tokenizer, row, system_prompt, max_length, response_share) for row in swapped]
    return ScoringPlan(seqs, length_buckets([len(x.input_ids) for x in seqs], batch_tokens), len(rows), n_partners)


def batch_costs(plan: ScoringPlan) -> list[int]:
    """Each planned batch's padded tokens (rows x its longest sequence): the work of its forward."""
    return padded_tokens([len(s.input_ids) for s in plan.seqs], plan.batches)


def finish_scoring(plan: ScoringPlan, means: np.ndarray, variant: str = "ppl_ratio",
                   precision: str = "fp32") -> dict[str, np.ndarray]:
    """`score_rows`' result from the mean span loss of every planned sequence."""
    n, cond = plan.rows, plan.seqs[: plan.rows]
    result = _result(means[:n], means[n : 2 * n], [c.span_len for c in cond], [c.truncated for c in cond], variant, precision)
    lengths = np.asarray([len(x.input_ids) for x in plan.seqs], dtype=np.int64)
    result["tokens_conditional"], result["tokens_prior"] = lengths[:n], lengths[n : 2 * n]
    if plan.partners:
        k = plan.partners
        result["loss_swapped"] = np.asarray(means[2 * n :], dtype=np.float64).reshape(k, n).mean(axis=0)
        result["tokens_contrast"] = lengths[2 * n :].reshape(k, n).sum(axis=0)
    return result


def score_rows(model, tokenizer, rows: Sequence[dict[str, Any]], system_prompt: str | None,
               max_length: int = 256, batch_tokens: int = 8192, variant: str = "ppl_ratio",
               precision: str = "fp32", progress: ProgressFn | None = None,
               contrast_seed: int | None = None, contrast_partners: int = 1,
               response_share: float = RESPONSE_SHARE) -> dict[str, np.ndarray]:
    """IFD of every row, in input order: loss_cond, loss_prior, ifd, n_response_tokens, truncated
    (numpy arrays).

    `rows` are ROWS-like dicts (system, context, instruction, input, response). n_response_tokens is
    the conditional span length (the number of tokens both means run over); `truncated` marks rows
    cut to the budget (max_length capped by the model's context length). With `contrast_seed`,
    each response is also scored under `contrast_partners` other rows' prompts (one seeded
    derangement each, seeds contrast_seed, contrast_seed + 1, ...; curate.scoring.misalignment) in
    the same batched pass; `loss_swapped` is the mean of those losses. `tokens_conditional`,
    `tokens_prior` (and `tokens_contrast`) count each row's tokens through the model per pass (the cost).
    Equivalent to `plan_scoring`, `mean_span_losses` over the plan's batches, `finish_scoring`.
    """
    max_length = token_budget(max_length, getattr(model.config, "max_position_embeddings", None))
    plan = plan_scoring(tokenizer, rows, system_prompt, max_length, batch_tokens, contrast_seed, contrast_partners,
                        response_share)
    n = plan.rows
    passes = len(plan.seqs) // max(n, 1)
    per_row = None if progress is None else (lambda done, _total: progress(done // passes, n))
    means, _ = mean_span_losses(model, plan.seqs, tokenizer.pad_token_id, progress=per_row, batches=plan.batches)
    return finish_scoring(plan, means, variant, precision)


def _single_span_loss(model, seq: Encoded, device) -> float:
    start = max(seq.span_start, 1)
    if len(seq.input_ids) <= start:
        return float("nan")
    ids = torch.tensor([seq.input_ids], dtype=torch.long, device=device)
    logits = model(input_ids=ids).logits[0, :-1].float()
    losses = F.cross_entropy(logits, ids[0, 1:], reduction="none")
    return float(losses[start - 1 :].double().mean())


def score_rows_unbatched(model, tokenizer, rows: Sequence[dict[str, Any]], system_prompt: str | None,
                         max_length: int = 256, variant: str = "ppl_ratio", precision: str = "fp32",
                         progress: ProgressFn | None = None, response_share: float = RESPONSE_SHARE) -> dict[str, np.ndarray]:
    """The naive reference loop: per row one conditional and one prior forward, batch size 1."""
    device = next(model.parameters()).device
    model.eval()
    max_length = token_budget(max_length, getattr(model.config, "max_position_embeddings", None))
    loss_cond, loss_prior, n_tokens, truncated = [], [], [], []
    with torch.no_grad():
        for k, row in enumerate(rows):
            c = encode_conditional(tokenizer, row, system_prompt, max_length, response_share)
            p = encode_prior(tokenizer, row, c.span_len, max_length, c.span_len + c.span_cut)
            loss_cond.append(_single_span_loss(model, c, device))
            loss_prior.append(_single_span_loss(model, p, device))
            n_tokens.append(c.span_len)
            truncated.append(c.truncated)
            if progress is not None:
                progress(k + 1, len(rows))
    return _result(loss_cond, loss_prior, n_tokens, truncated, variant, precision)
