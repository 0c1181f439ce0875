"""One training round of supervised fine-tuning on the selected rows (IterIT note §3).

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
- Weights are loaded, trained and saved in float32 (CPU-first; a bf16 checkpoint is upcast).
- Every round starts from a torch RNG seeded by (seed, round): a round's result is a function of
  its inputs, not of the process history. Checkpoints inside a round (`save_every`) hold weights,
  optimizer, data order, position and RNG, so a killed round resumes to bit-identical weights.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pyarrow as pa
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from curate.artifacts import atomic_path, digest, text_digest
from curate.models.chat import Encoded, encode_conditional
from curate.scoring.ifd import pad_batch, per_token_span_losses
from curate.training.schedule import lr_at
from curate.training.state import (
    TRAINER_STATE,
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
        ("seconds", pa.float64()),
    ]
)

Progress = Callable[[int, int, float, float], None]  # (step in round, steps in round, loss, tokens/s)


@dataclass
class RoundResult:
    out_dir: Path
    steps: int  # optimizer steps taken in this round
    final_loss: float  # loss of the round's last optimizer step (NaN when no step was taken)
    log: pa.Table  # LOG_SCHEMA, one row per optimizer step
    trained_rows: int
    skipped_rows: int  # rows with an empty response span (e.g. truncated away by max_length)


@dataclass
class Example:
    encoded: Encoded  # token ids and the first response token
    weight: float

    @property
    def n_response(self) -> int:
        """Tokens the loss is taken on (token 0 has no prediction)."""
        return len(self.encoded.input_ids) - max(self.encoded.span_start, 1)


def build_examples(
    tokenizer, rows: Sequence[dict], system_prompt: str, max_length: int, row_weights: Sequence[float] | None = None
) -> tuple[list[Example], int]:
    """Encode rows for training. Returns the examples and how many rows had an empty response span."""
    if row_weights is not None and len(row_weights) != len(rows):
        raise ValueError(f"row_weights has {len(row_weights)} entries for {len(rows)} rows")
    examples, skipped = [], 0
    for i, row in enumerate(rows):
        enc = encode_conditional(tokenizer, row, system_prompt, max_length)
        if enc.span_len == 0:
            skipped += 1
            continue
        examples.append(Example(enc, 1.0 if row_weights is None else float(row_weights[i])))
    return examples, skipped


def micro_batch_loss(
    model, examples: Sequence[Example], pad_id: int, denom: float, device
) -> tuple[torch.Tensor, int, int]:
    """sum_i w_i * sum_t CE_it / denom over a right-padded micro-batch; also its token and span-token counts."""
    ids, mask, starts = pad_batch([e.encoded for e in examples], pad_id, device)
    losses, seq_idx = per_token_span_losses(model, ids, mask, starts)
    weights = torch.tensor([e.weight for e in examples], dtype=torch.float32, device=losses.device)
    return (weights[seq_idx] * losses).sum() / denom, int(mask.sum()), int(losses.numel())


def steps_per_round(n_rows: int, batch_size: int, grad_accum: int, epochs: int = 1) -> int:
    """Optimizer steps a round over `n_rows` trainable rows takes (for planning `total_steps`)."""
    micro_batches = math.ceil(n_rows / batch_size)
    return epochs * math.ceil(micro_batches / grad_accum)


def _derived_seed(*parts: int) -> int:
    blob = ":".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") >> 1


def epoch_order(n: int, seed: int, round_index: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(_derived_seed(seed, round_index, epoch))
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
    """What an in-round checkpoint must match to be resumed: input weights, examples, hyper-parameters."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.encoded.input_ids, e.encoded.span_start, e.weight]).encode())
    return text_digest(digest(checkpoint_in), h.hexdigest(), hyper)


def _load_model(path: Path, device: torch.device):
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model.to(device)


def _save_checkpoint(path: Path, model, optimizer, state: dict[str, Any], tokenizer=None) -> None:
    with atomic_path(path) as tmp:
        model.save_pretrained(tmp)
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
    device: str | None = None,
) -> RoundResult:
    """Train one round from `checkpoint_in` on `rows` and write the checkpoint to `out_dir`.

    `total_steps` is the planned number of optimizer steps of the whole run (all rounds); the
    schedule position is the global step stored in `checkpoint_in/trainer_state` (0 for a bare
    model). With `save_every > 0` an in-round checkpoint is written every `save_every` steps to
    `out_dir.parent/.inprogress-<name>/`; calling again with the same arguments resumes from it.
    """
    checkpoint_in, out_dir = Path(checkpoint_in), Path(out_dir)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = AutoTokenizer.from_pretrained(checkpoint_in)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    examples, skipped = build_examples(tokenizer, rows, system_prompt, max_length, row_weights)
    prev_state = read_state(checkpoint_in)
    global_start = int(prev_state["global_step"]) if prev_state else 0
    hyper = dict(
        system_prompt=system_prompt, max_length=max_length, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
        weight_decay=weight_decay, warmup_steps=warmup_steps, total_steps=total_steps, schedule=schedule,
        epochs=epochs, seed=seed, round_index=round_index,
    )
    partial = inprogress_dir(out_dir)
    fingerprint = _fingerprint(checkpoint_in, examples, hyper) if save_every > 0 else None
    resume = read_state(partial) if save_every > 0 else None
    if resume is not None and resume.get("fingerprint") != fingerprint:
        resume = None  # left by a different call: start over
    if resume is None and partial.exists():
        shutil.rmtree(partial)

    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []), _deterministic():
        torch.manual_seed(_derived_seed(seed, round_index))
        model = _load_model(partial if resume else checkpoint_in, dev)
        model.train()
        optimizer = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, weight_decay=weight_decay)
        if resume:
            load_optimizer(optimizer, partial / TRAINER_STATE)
            orders = resume["orders"]
            start, log_rows = int(resume["step_in_round"]), list(resume["log"])
            set_rng_state(resume["rng"])
        else:
            if prev_state is not None:
                load_optimizer(optimizer, checkpoint_in / TRAINER_STATE)
            orders = [epoch_order(len(examples), seed, round_index, e) for e in range(epochs)]
            start, log_rows = 0, []
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
            step_lr = lr_at(global_start + k, total_steps, warmup_steps, lr, schedule)
            for group in optimizer.param_groups:
                group["lr"] = step_lr
            step_examples = [examples[i] for mb in micro_batches for i in mb]
            denom = sum(e.weight * e.n_response for e in step_examples) or 1.0
            optimizer.zero_grad(set_to_none=True)
            step_loss, tokens, response_tokens = 0.0, 0, 0
            for mb in micro_batches:
                loss, n_tokens, n_response = micro_batch_loss(model, [examples[i] for i in mb], pad_id, denom, dev)
                loss.backward()
                step_loss += loss.item()
                tokens += n_tokens
                response_tokens += n_response
            torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            optimizer.step()
            seconds = time.perf_counter() - t0
            log_rows.append(
                dict(step=global_start + k + 1, round=round_index, epoch=epoch, loss=step_loss, lr=step_lr,
                     tokens=tokens, response_tokens=response_tokens, seconds=seconds)
            )
            if save_every > 0 and (k + 1) % save_every == 0 and k + 1 < len(plan):
                _save_checkpoint(partial, model, optimizer, state(k + 1, completed=False))
            if progress is not None:
                progress(k + 1, len(plan), step_loss, tokens / max(seconds, 1e-9))

        _save_checkpoint(out_dir, model, optimizer, state(len(plan), completed=True), tokenizer)
    if partial.exists():
        shutil.rmtree(partial)
    log = pa.Table.from_pylist(log_rows, schema=LOG_SCHEMA)
    final_loss = log_rows[-1]["loss"] if log_rows else float("nan")
    return RoundResult(out_dir, len(plan), final_loss, log, len(examples), skipped)
