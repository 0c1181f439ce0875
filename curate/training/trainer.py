"""One training round of supervised fine-tuning on the selected rows (docs/iterit.md §9).

- Loss: causal-LM cross-entropy on the response span only (equivalent to labels = input ids on the
  span, -100 elsewhere; the span includes the end-of-turn token, as the reference's `output + eos`
  target). Token losses come from `curate.scoring.ifd.per_token_span_losses`, the scorer's own
  function, so training and scoring see the same span; it applies the LM head only at span positions.
  Reduction: token-weighted mean over every response token of the optimizer step (all
  accumulated micro-batches), as Hugging Face's Trainer does when it knows `num_items_in_batch`.
  With `row_weights` each row's token losses are scaled by its weight and the step loss is
  `sum_i w_i * sum_t ce_it / sum_i w_i * n_i` (a weighted token mean; all weights 1 gives the
  plain token mean).
- Data order: a seeded permutation per epoch (generator seeded from seed, round, epoch), like the
  reference's SubsetRandomSampler with a seeded generator. Micro-batches of `batch_size` rows in
  that order; `grad_accum` micro-batches make an optimizer step; the last step of an epoch may
  hold fewer micro-batches (the reference instead carries them into the next epoch's first step).
- AdamW (torch, decoupled weight decay not applied to 1-D parameters: norms and biases, as the
  HF Trainer does), gradient-norm clipping at 1.0, lr = `lr_at(global_step, ...)` set on every
  step. The schedule and the AdamW moments continue across rounds through `trainer_state/`.
- Weights are loaded, trained and saved in float32 (CPU-first; a bf16 checkpoint is upcast); with
  `precision` bf16 the forward passes run under bf16 autocast. With `lora` enabled the trained
  weights are LoRA adapters on a frozen base and the checkpoint is the adapter (`curate.training.lora`).
- Online policies (`online`, see `curate.training.online` and docs/online-selection.md §1): each
  step's rows (the candidate batch) go through the policy, which picks the rows the step trains on
  and their loss weights; every trained row's (row_id, step, weight, score) goes to the round's lineage table.
- Every round starts from a torch RNG seeded by (seed, round): a round's result is a function of
  its inputs, not of the process history. Checkpoints inside a round (`save_every`) hold weights,
  optimizer, data order, position and RNG, so a killed round resumes to bit-identical weights.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import torch
from transformers import AutoTokenizer

from curate.artifacts import atomic_path, digest, text_digest
from curate.models.chat import Encoded, encode_conditional, use_chat_template
from curate.models.loading import context_length
from curate.models.truncation import RESPONSE_SHARE, token_budget
from curate.schema import user_text
from curate.scoring.ifd import pad_batch, per_token_span_losses
from curate.training.lora import (autocast, autocast_dtype, load_trainable, lora_enabled, resolve_device, save_weights,
                                  without_checkpointing)
from curate.training.online import Policy, make_policy
from curate.training.schedule import lr_at
from curate.training.state import (
    TRAINER_STATE,
    derived_seed,
    load_optimizer,
    read_state,
    rng_state,
    save_optimizer,
    set_rng_state,
    write_state,
)

MAX_GRAD_NORM = 1.0
INPROGRESS_PREFIX = ".inprogress-"

LOG_SCHEMA = pa.schema(
    [
        ("step", pa.int64()),  # global optimizer step, 1-based (the step just taken)
        ("round", pa.int64()),
        ("epoch", pa.int64()),
        ("loss", pa.float64()),  # the step's objective (weighted token mean over the step)
        ("lr", pa.float64()),
        ("tokens", pa.int64()),  # non-padding tokens processed in the step
        ("response_tokens", pa.int64()),  # tokens the loss was taken on
        ("candidates", pa.int64()),  # rows the policy chose from
        ("kept", pa.int64()),  # rows the step trained on
        ("weight_sum", pa.float64()),  # sum of their loss weights
        ("residual", pa.float64()),  # filter-then-weight: ||U_S w - lam u_T||^2 / ||lam u_T||^2 (else null)
        ("score_mean", pa.float64()),  # the policy's per-row score over the candidates (else null)
        ("score_std", pa.float64()),
    ]
)

LINEAGE_SCHEMA = pa.schema(
    [
        ("row_id", pa.string()),
        ("step", pa.int64()),  # global optimizer step the row trained in
        ("weight", pa.float64()),  # its loss weight in that step
        ("score", pa.float64()),  # the policy's score of the row (null for uniform / random)
    ]
)

Progress = Callable[[int, int, float, float], None]  # (step in round, steps in round, loss, tokens/s)


@dataclass
class RoundResult:
    out_dir: Path
    steps: int  # optimizer steps taken in this round
    final_loss: float  # loss of the round's last optimizer step (NaN when no step was taken)
    log: pa.Table  # LOG_SCHEMA, one row per optimizer step (content only: no timings)
    lineage: pa.Table  # LINEAGE_SCHEMA, one row per (trained row, step)
    trained_rows: int
    skipped_rows: int  # rows with an empty response span (an empty response)
    truncated_rows: int = 0  # trained rows cut to the token budget (curate.models.truncation)
    step_seconds: list[float] = field(default_factory=list)  # wall time of each step (kept out of `log`)


@dataclass
class Example:
    encoded: Encoded  # token ids and the response span(s)
    weight: float
    row_id: str = ""
    text: str = ""  # prompt + response (BM25 signal)

    @property
    def n_response(self) -> int:
        """Tokens the loss is taken on (token 0 has no prediction)."""
        return self.encoded.n_loss_tokens


def build_examples(
    tokenizer, rows: Sequence[dict], system_prompt: str, max_length: int, row_weights: Sequence[float] | None = None,
    response_share: float = RESPONSE_SHARE, assistant_turns: str = "last",
) -> tuple[list[Example], int]:
    """Encode rows for training. Returns the examples and how many rows had an empty response span.
    `assistant_turns` "all" puts the loss on every kept assistant turn of a conversation, "last" on the last only."""
    if row_weights is not None and len(row_weights) != len(rows):
        raise ValueError(f"row_weights has {len(row_weights)} entries for {len(rows)} rows")
    examples, skipped = [], 0
    for i, row in enumerate(rows):
        enc = encode_conditional(tokenizer, row, system_prompt, max_length, response_share, assistant_turns == "all")
        if enc.span_len == 0:
            skipped += 1
            continue
        examples.append(Example(enc, 1.0 if row_weights is None else float(row_weights[i]), row.get("row_id", ""),
                                f"{user_text(row.get('instruction', ''), row.get('input', ''))}\n{row.get('response', '')}"))
    return examples, skipped


@dataclass
class MicroBatch:
    loss: torch.Tensor  # sum_i w_i * sum_t CE_it / denom
    tokens: int  # non-padding tokens
    response_tokens: int
    weighted_tokens: float  # sum_i w_i * n_i
    weights: list[float]  # w_i (static row weight x policy weight)
    scores: list[float] | None  # the policy's scores when it weighted the rows in this forward


def micro_batch_loss(model, examples: Sequence[Example], pad_id: int, denom: float, device,
                     weights: Sequence[float] | None = None, policy: Policy | None = None,
                     example_ids: Sequence[int] = ()) -> MicroBatch:
    """The weighted span loss of a right-padded micro-batch. Row weights: each example's static weight,
    times `weights` (the policy's step decision) or the policy's `reweight` of this forward's hidden states."""
    ids, mask, starts = pad_batch([e.encoded for e in examples], pad_id, device)
    reweight = policy is not None and policy.reweights
    out = per_token_span_losses(model, ids, mask, starts, return_hidden=reweight)
    losses, seq_idx = out[0], out[1]
    w = torch.tensor([e.weight for e in examples], dtype=torch.float32, device=losses.device)
    scores = None
    if reweight:
        gate, gate_scores = policy.reweight(out[2], mask, example_ids)
        w, scores = w * gate.to(w), gate_scores.tolist()
    elif weights is not None:
        w = w * torch.tensor(list(weights), dtype=torch.float32, device=losses.device)
    n = torch.bincount(seq_idx, minlength=len(examples)).to(w)
    return MicroBatch((w[seq_idx] * losses).sum() / denom, int(mask.sum()), int(losses.numel()),
                      float((w * n).sum()), w.tolist(), scores)


def epoch_order(n: int, seed: int, round_index: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(derived_seed(seed, round_index, epoch))
    return torch.randperm(n, generator=generator).tolist()


def _plan(orders: list[list[int]], batch_size: int, grad_accum: int) -> list[tuple[int, list[list[int]]]]:
    """Optimizer steps of the round: (epoch, micro-batches of example indices)."""
    steps = []
    for epoch, order in enumerate(orders):
        micro = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        steps += [(epoch, micro[i : i + grad_accum]) for i in range(0, len(micro), grad_accum)]
    return steps


def _param_groups(model, weight_decay: float) -> list[dict[str, Any]]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [(n, p) for n, p in named if p.ndim >= 2]
    no_decay = [(n, p) for n, p in named if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def inprogress_dir(out_dir: Path) -> Path:
    return out_dir.parent / f"{INPROGRESS_PREFIX}{out_dir.name}"


def _fingerprint(checkpoint_in: Path, examples: list[Example], hyper: dict[str, Any]) -> str:
    """What an in-round checkpoint must match to be resumed: input weights, examples (and anchors), hyper-parameters."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.encoded.input_ids, e.encoded.spans, e.weight, e.row_id]).encode())
    return text_digest(digest(checkpoint_in), h.hexdigest(), hyper)


def _save_checkpoint(path: Path, model, optimizer, state: dict[str, Any], tokenizer=None,
                     base_ref: dict[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        save_weights(model, tmp, base_ref)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        save_optimizer(optimizer, tmp / TRAINER_STATE)
        write_state(tmp / TRAINER_STATE, state)


def train_round(
    checkpoint_in: Path,
    out_dir: Path,
    rows: Sequence[dict],
    *,
    system_prompt: str,
    max_length: int,
    batch_size: int,
    grad_accum: int,
    lr: float,
    weight_decay: float,
    warmup_steps: int,
    total_steps: int,
    schedule: str,
    epochs: int = 1,
    seed: int,
    round_index: int,
    save_every: int = 0,
    progress: Progress | None = None,
    row_weights: Sequence[float] | None = None,
    online: dict[str, Any] | None = None,
    anchors: Sequence[dict] = (),
    device: str | None = None,
    lora: dict[str, Any] | None = None,
    precision: str = "fp32",
    gradient_checkpointing: bool = False,
    response_share: float = RESPONSE_SHARE,
    assistant_turns: str = "last",
    chat_template: str | None = None,
) -> RoundResult:
    """Train one round from `checkpoint_in` on `rows` and write the checkpoint to `out_dir`.

    `total_steps` is the planned number of optimizer steps of the whole run (all rounds); the
    schedule position is the global step stored in `checkpoint_in/trainer_state` (0 for a bare
    model). With `save_every > 0` an in-round checkpoint is written every `save_every` steps to
    `out_dir.parent/.inprogress-<name>/`; calling again with the same arguments resumes from it.
    `online` is the `training.online` parameter section (None: uniform); `anchors` are the rows the
    anchor-based policies (adapt, greats, filter-then-weight) take their target from. `lora` is the
    `training.lora` section (None or disabled: full weights); `precision` fp32 | bf16 | auto (bf16
    autocast on CUDA with bf16 support); `device` auto | cpu | cuda. Rows longer than `max_length`
    (capped by the model's context length) are cut by `curate.models.truncation` with
    `response_share`; `assistant_turns` last | all; `chat_template` replaces the tokenizer's.
    """
    checkpoint_in, out_dir = Path(checkpoint_in), Path(out_dir)
    dev = resolve_device(device)
    amp = autocast_dtype(precision, dev)
    tokenizer = use_chat_template(AutoTokenizer.from_pretrained(checkpoint_in), chat_template)
    max_length = token_budget(max_length, context_length(checkpoint_in))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    examples, skipped = build_examples(tokenizer, rows, system_prompt, max_length, row_weights, response_share,
                                       assistant_turns)
    anchor_examples, _ = build_examples(tokenizer, anchors, system_prompt, max_length, response_share=response_share)
    policy_cfg = dict(online or {"policy": "uniform"})
    prev_state = read_state(checkpoint_in)
    global_start = int(prev_state["global_step"]) if prev_state else 0
    hyper = dict(
        system_prompt=system_prompt, max_length=max_length, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
        weight_decay=weight_decay, warmup_steps=warmup_steps, total_steps=total_steps, schedule=schedule,
        epochs=epochs, seed=seed, round_index=round_index, online=policy_cfg, response_share=response_share,
        assistant_turns=assistant_turns,
        anchors=[[a.encoded.input_ids, a.encoded.span_start] for a in anchor_examples],
        lora=lora if lora_enabled(lora) else None, autocast=str(amp),
    )
    partial = inprogress_dir(out_dir)
    fingerprint = _fingerprint(checkpoint_in, examples, hyper) if save_every > 0 else None
    resume = read_state(partial) if save_every > 0 else None
    if resume is not None and resume.get("fingerprint") != fingerprint:
        resume = None  # left by a different call: start over
    if resume is None and partial.exists():
        shutil.rmtree(partial)

    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []), _deterministic():
        torch.manual_seed(derived_seed(seed, round_index))
        model, base_ref = load_trainable(partial if resume else checkpoint_in, lora, dev, gradient_checkpointing)
        model.train()
        optimizer = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, weight_decay=weight_decay)
        policy = make_policy(policy_cfg, seed=seed, round_index=round_index, pad_id=pad_id, device=dev,
                             anchors=anchor_examples, texts=[e.text for e in examples])
        if resume:
            load_optimizer(optimizer, partial / TRAINER_STATE)
            orders = resume["orders"]
            start, log_rows, lineage_rows = int(resume["step_in_round"]), list(resume["log"]), list(resume["lineage"])
            policy.load_state(resume["policy"])
            set_rng_state(resume["rng"])
        else:
            if prev_state is not None:
                load_optimizer(optimizer, checkpoint_in / TRAINER_STATE)
            orders = [epoch_order(len(examples), seed, round_index, e) for e in range(epochs)]
            start, log_rows, lineage_rows = 0, [], []
        plan = _plan(orders, batch_size, grad_accum)
        params = [p for g in optimizer.param_groups for p in g["params"]]

        def state(step_in_round: int, completed: bool) -> dict[str, Any]:
            return {
                "global_step": global_start + step_in_round,
                "round_index": round_index,
                "step_in_round": step_in_round,
                "steps_in_round": len(plan),
                "completed": completed,
                "orders": None if completed else orders,
                "log": [] if completed else log_rows,
                "lineage": [] if completed else lineage_rows,
                "policy": {} if completed else policy.state(),
                "rng": rng_state(),
                "fingerprint": fingerprint,
                "seed": seed,
                "total_steps": total_steps,
                "warmup_steps": warmup_steps,
                "schedule": schedule,
                "base_lr": lr,
            }

        for k in range(start, len(plan)):
            t0 = time.perf_counter()
            epoch, micro_batches = plan[k]
            step = global_start + k + 1
            step_lr = lr_at(global_start + k, total_steps, warmup_steps, lr, schedule)
            for group in optimizer.param_groups:
                group["lr"] = step_lr
            candidate_ids = [i for mb in micro_batches for i in mb]
            with autocast(dev, amp), without_checkpointing(model):
                policy.start_step(model, k)
                decision = policy.choose(model, optimizer, [examples[i] for i in candidate_ids], candidate_ids, step, step_lr)
            chosen = [candidate_ids[j] for j in decision.indices]
            # the chosen rows keep the step's micro-batch size; each micro-batch's loss is over sum_i n_i of the step
            groups = [list(range(j, min(j + batch_size, len(chosen)))) for j in range(0, len(chosen), batch_size)]
            denom = float(sum(examples[i].n_response for i in chosen)) or 1.0
            optimizer.zero_grad(set_to_none=True)
            step_loss, tokens, response_tokens, weighted = 0.0, 0, 0, 0.0
            kept_weights, kept_scores = [], []
            for group in groups:
                with autocast(dev, amp):
                    mb = micro_batch_loss(model, [examples[chosen[j]] for j in group], pad_id, denom, dev,
                                          weights=None if decision.weights is None else [decision.weights[j] for j in group],
                                          policy=policy, example_ids=[chosen[j] for j in group])
                mb.loss.backward()
                step_loss += mb.loss.item()
                tokens += mb.tokens
                response_tokens += mb.response_tokens
                weighted += mb.weighted_tokens
                kept_weights += mb.weights
                kept_scores += mb.scores if mb.scores is not None else (
                    [decision.scores[j] for j in group] if decision.scores is not None else [None] * len(group))
            if chosen:
                if policy_cfg.get("loss", "normalized") == "normalized" and weighted not in (0.0, denom):
                    # sum w*CE / sum n  ->  sum w*CE / sum w*n (a weighted token mean)
                    scale = denom / weighted
                    for prm in params:
                        if prm.grad is not None:
                            prm.grad.mul_(scale)
                    step_loss *= scale
                torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
                optimizer.step()
            seconds = time.perf_counter() - t0
            scored = [x for x in kept_scores if x is not None]
            log_rows.append(
                dict(step=step, round=round_index, epoch=epoch, loss=step_loss, lr=step_lr,
                     tokens=tokens, response_tokens=response_tokens, seconds=seconds,
                     candidates=len(candidate_ids), kept=len(chosen), weight_sum=float(sum(kept_weights)),
                     residual=decision.metrics.get("residual"),
                     score_mean=decision.metrics.get("score_mean", float(np.mean(scored)) if scored else None),
                     score_std=decision.metrics.get("score_std", float(np.std(scored)) if scored else None))
            )
            lineage_rows += [dict(row_id=examples[i].row_id, step=step, weight=w, score=sc)
                             for i, w, sc in zip(chosen, kept_weights, kept_scores)]
            if save_every > 0 and (k + 1) % save_every == 0 and k + 1 < len(plan):
                _save_checkpoint(partial, model, optimizer, state(k + 1, completed=False), base_ref=base_ref)
            if progress is not None:
                progress(k + 1, len(plan), step_loss, tokens / max(seconds, 1e-9))

        _save_checkpoint(out_dir, model, optimizer, state(len(plan), completed=True), tokenizer, base_ref)
    if partial.exists():
        shutil.rmtree(partial)
    log = pa.Table.from_pylist(log_rows, schema=LOG_SCHEMA)
    lineage = pa.Table.from_pylist(lineage_rows, schema=LINEAGE_SCHEMA)
    final_loss = log_rows[-1]["loss"] if log_rows else float("nan")
    return RoundResult(out_dir, len(plan), final_loss, log, lineage, len(examples), skipped,
                       sum(e.encoded.truncated for e in examples), [r["seconds"] for r in log_rows])
