"""One training round of supervised fine-tuning on the selected rows (docs/iterit.md §9), as a recipe:
`RoundConfig` (the hyper-parameters), `TrainerState` (what `trainer_state/state.json` holds) and
`RoundRecipe` (setup, train_step, save_state / load_state, run).

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
- Several processes (`Ranks`, launched by `curate.training.distributed`): data parallel. Every
  process holds the same weights and plans the same steps; a step's micro-batches are dealt round
  robin to the processes, each divides its losses by the step's global response-token count, and the
  gradients are summed across processes before clipping, so the step's gradient is the one of a
  single process up to the order of the float sums (docs/execution.md).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import torch
from transformers import AutoTokenizer

from curate.artifacts import atomic_path, digest, text_digest
from curate.config import LoraParams, OnlineParams, TrainingParams, UniformOnline
from curate.models.chat import Encoded, encode_conditional, use_chat_template
from curate.models.loading import context_length
from curate.models.truncation import RESPONSE_SHARE, token_budget
from curate.schema import user_text
from curate.scoring.ifd import pad_batch, per_token_span_losses
from curate.training.lora import autocast, autocast_dtype, load_trainable, resolve_device, save_weights, without_checkpointing
from curate.training.online import Decision, Policy, make_policy
from curate.training.schedule import lr_at, warmup_steps_for
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


class Ranks:
    """The processes a round trains in; this one: one process alone (rank 0 of 1). Multi-process
    training (`curate.training.distributed.TorchRanks`) overrides the collectives."""
    rank, world = 0, 1

    @property
    def writer(self) -> bool:
        """Whether this process writes checkpoints and reports progress."""
        return self.rank == 0

    def mine(self, n: int) -> list[int]:
        """Which of a step's `n` micro-batches this process computes: dealt round robin."""
        return list(range(self.rank, n, self.world))

    def barrier(self) -> None:
        pass

    def sum_gradients(self, params: Sequence[torch.Tensor]) -> None:
        pass

    def gather(self, obj: Any) -> list[Any]:
        """`obj` of every process, in rank order."""
        return [obj]


@dataclass(frozen=True)
class RoundConfig:
    """A round's hyper-parameters (`from_params`: from the typed `training` section, as the train stage does)."""
    system_prompt: str
    max_length: int  # token budget, capped by the model's context length
    batch_size: int
    grad_accum: int
    lr: float
    weight_decay: float
    warmup_steps: int
    total_steps: int  # planned optimizer steps of the whole run (all rounds): the schedule spans them
    schedule: str
    seed: int
    round_index: int
    epochs: int = 1
    save_every: int = 0  # an in-round checkpoint every N optimizer steps (0 = off)
    online: OnlineParams = field(default_factory=UniformOnline)  # the step's policy (training.online)
    lora: LoraParams = field(default_factory=LoraParams)  # disabled: full weights
    precision: str = "fp32"  # fp32 | bf16 | auto (bf16 autocast on CUDA with bf16 support)
    gradient_checkpointing: bool = False
    device: str = "auto"  # auto | cpu | cuda
    response_share: float = RESPONSE_SHARE  # how rows longer than max_length are cut (curate.models.truncation)
    assistant_turns: str = "last"  # last | all
    chat_template: str | None = None  # replaces the tokenizer's

    @classmethod
    def from_params(cls, t: TrainingParams, *, system_prompt: str, chat_template: str | None, seed: int,
                    round_index: int, total_steps: int) -> RoundConfig:
        return cls(system_prompt=system_prompt, max_length=t.max_length, batch_size=t.batch_size,
                   grad_accum=t.grad_accum, lr=t.lr, weight_decay=t.weight_decay,
                   warmup_steps=warmup_steps_for(total_steps, t.warmup_ratio), total_steps=total_steps,
                   schedule=t.schedule, seed=seed, round_index=round_index, epochs=t.epochs_per_round,
                   save_every=t.save_every, online=t.online, lora=t.lora, precision=t.precision,
                   gradient_checkpointing=t.gradient_checkpointing, device=t.device, response_share=t.response_share,
                   assistant_turns=t.assistant_turns, chat_template=chat_template)


@dataclass
class TrainerState:
    """`trainer_state/state.json` of a checkpoint (`curate.training.state.read_state` reads it as a dict).

    A completed round keeps the counters and the schedule; an in-round checkpoint also the data
    order, the log and lineage so far and the policy's state."""
    global_step: int  # optimizer steps of the run so far: the schedule position
    round_index: int
    step_in_round: int
    steps_in_round: int
    completed: bool
    orders: list[list[int]] | None  # the round's data order, one permutation per epoch
    log: list[dict[str, Any]]  # LOG_SCHEMA rows so far, with each step's `seconds`
    lineage: list[dict[str, Any]]  # LINEAGE_SCHEMA rows so far
    policy: dict[str, Any]  # the online policy's state (ADAPT's anchor centroid)
    rng: dict[str, Any]  # torch RNG states (`curate.training.state.rng_state`)
    fingerprint: str | None  # what a resumed call must match (`RoundRecipe.fingerprint`); None without save_every
    seed: int
    total_steps: int
    warmup_steps: int
    schedule: str
    base_lr: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerState:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass
class StepTotals:
    """What the micro-batches of one optimizer step add up to."""
    denom: float  # sum_i n_i over the chosen rows (1 when none): every micro-batch loss is divided by it
    loss: float = 0.0
    tokens: int = 0
    response_tokens: int = 0
    weighted: float = 0.0  # sum_i w_i * n_i
    weights: list[float] = field(default_factory=list)  # w_i of every chosen row, in order
    scores: list[float | None] = field(default_factory=list)


class RoundRecipe:
    """One training round from `checkpoint_in` on `rows`, written to `out_dir`.

    The schedule position is the global step stored in `checkpoint_in/trainer_state` (0 for a bare
    model). With `config.save_every > 0` an in-round checkpoint is written every `save_every` steps
    to `out_dir.parent/.inprogress-<name>/`; running the same recipe again resumes from it.
    `row_weights` are static loss weights per row; `anchors` are the rows the anchor-based policies
    (adapt, greats, filter-then-weight) take their target from; `progress` is called after every step.
    `ranks`: the processes this round trains in (default: this one alone).
    """

    def __init__(self, config: RoundConfig, checkpoint_in: Path, out_dir: Path, rows: Sequence[dict], *,
                 row_weights: Sequence[float] | None = None, anchors: Sequence[dict] = (),
                 progress: Progress | None = None, ranks: Ranks | None = None):
        self.config, self.rows, self.row_weights, self.anchors, self.progress = config, rows, row_weights, anchors, progress
        self.ranks = ranks or Ranks()
        self.checkpoint_in, self.out_dir = Path(checkpoint_in), Path(out_dir)
        self.partial = inprogress_dir(self.out_dir)
        self.device = resolve_device(config.device)
        self.amp = autocast_dtype(config.precision, self.device)

    def run(self) -> RoundResult:
        """Set up, train every step of the round (from where a killed call stopped), save the checkpoint."""
        c = self.config
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), _deterministic():
            self.setup()
            for k in range(self.state.step_in_round, len(self.plan)):
                row = self.train_step(k)
                if c.save_every > 0 and (k + 1) % c.save_every == 0 and k + 1 < len(self.plan):
                    self.save_state(self.partial)
                if self.progress is not None and self.ranks.writer:
                    self.progress(k + 1, len(self.plan), row["loss"], row["tokens"] / max(row["seconds"], 1e-9))
            self.save_state(self.out_dir, completed=True)
        if self.ranks.writer and self.partial.exists():
            shutil.rmtree(self.partial)
        log = self.state.log
        return RoundResult(self.out_dir, len(self.plan), log[-1]["loss"] if log else float("nan"),
                           pa.Table.from_pylist(log, schema=LOG_SCHEMA),
                           pa.Table.from_pylist(self.state.lineage, schema=LINEAGE_SCHEMA), len(self.examples),
                           self.skipped, sum(e.encoded.truncated for e in self.examples), [r["seconds"] for r in log])

    def setup(self) -> None:
        """Tokenizer, examples, model, optimizer and policy; resume from an in-round checkpoint of the same call,
        else continue the optimizer of `checkpoint_in`. The model's fresh weights (LoRA) come from a torch RNG
        seeded by (seed, round): a round's result is a function of its inputs, not of the process history."""
        c = self.config
        self._encode()
        previous = read_state(self.checkpoint_in)
        self.global_start = TrainerState.from_dict(previous).global_step if previous else 0
        fingerprint = self.fingerprint() if c.save_every > 0 else None
        resume = read_state(self.partial) if c.save_every > 0 else None
        if resume is not None and resume.get("fingerprint") != fingerprint:
            resume = None  # left by a different call: start over
        if resume is None and self.partial.exists() and self.ranks.writer:
            shutil.rmtree(self.partial)
        self.ranks.barrier()
        torch.manual_seed(derived_seed(c.seed, c.round_index))
        self.model, self.base_ref = load_trainable(self.partial if resume else self.checkpoint_in, c.lora, self.device,
                                                   c.gradient_checkpointing)
        self.model.train()
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, c.weight_decay), lr=c.lr, weight_decay=c.weight_decay)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.policy = make_policy(c.online, seed=c.seed, round_index=c.round_index, pad_id=self.pad_id,
                                  device=self.device, anchors=self.anchor_examples, texts=[e.text for e in self.examples])
        if resume:
            self.load_state(self.partial)
        else:
            if previous is not None:
                load_optimizer(self.optimizer, self.checkpoint_in / TRAINER_STATE)
            orders = [epoch_order(len(self.examples), c.seed, c.round_index, e) for e in range(c.epochs)]
            self.state = TrainerState(self.global_start, c.round_index, 0, 0, False, orders, [], [], {}, {}, fingerprint,
                                      c.seed, c.total_steps, c.warmup_steps, c.schedule, c.lr)
        self.plan = _plan(self.state.orders, c.batch_size, c.grad_accum)
        self.state.steps_in_round = len(self.plan)

    def _encode(self) -> None:
        """The tokenizer (with the configured chat template), the token budget capped by the model's context,
        the training examples and the anchors."""
        c = self.config
        self.tokenizer = tok = use_chat_template(AutoTokenizer.from_pretrained(self.checkpoint_in), c.chat_template)
        self.max_length = token_budget(c.max_length, context_length(self.checkpoint_in))
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.examples, self.skipped = build_examples(tok, self.rows, c.system_prompt, self.max_length, self.row_weights,
                                                     c.response_share, c.assistant_turns)
        self.anchor_examples, _ = build_examples(tok, self.anchors, c.system_prompt, self.max_length,
                                                 response_share=c.response_share)

    def fingerprint(self) -> str:
        """What an in-round checkpoint must match to be resumed: input weights, examples, anchors, hyper-parameters."""
        c = self.config
        hyper = dict(
            system_prompt=c.system_prompt, max_length=self.max_length, batch_size=c.batch_size, grad_accum=c.grad_accum,
            lr=c.lr, weight_decay=c.weight_decay, warmup_steps=c.warmup_steps, total_steps=c.total_steps,
            schedule=c.schedule, epochs=c.epochs, seed=c.seed, round_index=c.round_index, online=c.online.model_dump(),
            response_share=c.response_share, assistant_turns=c.assistant_turns,
            anchors=[[a.encoded.input_ids, a.encoded.span_start] for a in self.anchor_examples],
            lora=c.lora.model_dump() if c.lora.enabled else None, autocast=str(self.amp),
            **({"processes": self.ranks.world} if self.ranks.world > 1 else {}),
        )
        h = hashlib.sha256()
        for e in self.examples:
            h.update(json.dumps([e.encoded.input_ids, e.encoded.spans, e.weight, e.row_id]).encode())
        return text_digest(digest(self.checkpoint_in), h.hexdigest(), hyper)

    def train_step(self, k: int) -> dict[str, Any]:
        """Optimizer step `k` of the round (0-based): the policy's choice among the step's candidate rows, the
        weighted loss of the chosen ones, clipping and AdamW. Returns the step's log row."""
        c, t0 = self.config, time.perf_counter()
        epoch, micro_batches = self.plan[k]
        step = self.global_start + k + 1
        step_lr = lr_at(self.global_start + k, c.total_steps, c.warmup_steps, c.lr, c.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = step_lr
        candidate_ids = [i for mb in micro_batches for i in mb]
        with autocast(self.device, self.amp), without_checkpointing(self.model):
            self.policy.start_step(self.model, k)
            decision = self.policy.choose(self.model, self.optimizer, [self.examples[i] for i in candidate_ids],
                                          candidate_ids, step, step_lr)
        chosen = [candidate_ids[j] for j in decision.indices]
        t = self._backward(chosen, decision)
        if chosen:
            self._update(t)
        seconds = time.perf_counter() - t0
        scored = [x for x in t.scores if x is not None]
        row = dict(step=step, round=c.round_index, epoch=epoch, loss=t.loss, lr=step_lr, tokens=t.tokens,
                   response_tokens=t.response_tokens, seconds=seconds, candidates=len(candidate_ids), kept=len(chosen),
                   weight_sum=float(sum(t.weights)), residual=decision.metrics.get("residual"),
                   score_mean=decision.metrics.get("score_mean", float(np.mean(scored)) if scored else None),
                   score_std=decision.metrics.get("score_std", float(np.std(scored)) if scored else None))
        self.state.log.append(row)
        self.state.lineage += [dict(row_id=self.examples[i].row_id, step=step, weight=w, score=sc)
                               for i, w, sc in zip(chosen, t.weights, t.scores)]
        self.state.step_in_round, self.state.global_step = k + 1, step
        return row

    def _backward(self, chosen: list[int], decision: Decision) -> StepTotals:
        """Gradients of the step loss over the chosen rows. They keep the step's micro-batch size; each
        micro-batch's loss is over sum_i n_i of the whole step. With several processes each computes its
        share of the micro-batches (`Ranks.mine`), the gradients are summed across processes and the
        totals are added up in micro-batch order, as one process would."""
        size = self.config.batch_size
        t = StepTotals(float(sum(self.examples[i].n_response for i in chosen)) or 1.0)
        self.optimizer.zero_grad(set_to_none=True)
        groups = [list(range(j, min(j + size, len(chosen)))) for j in range(0, len(chosen), size)]
        parts = {}
        for g in self.ranks.mine(len(groups)):
            group = groups[g]
            with autocast(self.device, self.amp):
                mb = micro_batch_loss(self.model, [self.examples[chosen[j]] for j in group], self.pad_id, t.denom,
                                      self.device,
                                      weights=None if decision.weights is None else [decision.weights[j] for j in group],
                                      policy=self.policy, example_ids=[chosen[j] for j in group])
            mb.loss.backward()
            scores = mb.scores if mb.scores is not None else (
                [decision.scores[j] for j in group] if decision.scores is not None else [None] * len(group))
            parts[g] = (mb.loss.item(), mb.tokens, mb.response_tokens, mb.weighted_tokens, mb.weights, scores)
        self.ranks.sum_gradients(self.params)
        parts = {g: part for shard in self.ranks.gather(parts) for g, part in shard.items()}
        for g in range(len(groups)):
            loss, tokens, response_tokens, weighted, weights, scores = parts[g]
            t.loss += loss
            t.tokens += tokens
            t.response_tokens += response_tokens
            t.weighted += weighted
            t.weights += weights
            t.scores += scores
        return t

    def _update(self, t: StepTotals) -> None:
        """Clip at MAX_GRAD_NORM and take the AdamW step. `loss: normalized` first turns
        sum w*CE / sum n into sum w*CE / sum w*n, a weighted token mean (docs/online-selection.md (2))."""
        if self.config.online.loss == "normalized" and t.weighted not in (0.0, t.denom):
            scale = t.denom / t.weighted
            for prm in self.params:
                if prm.grad is not None:
                    prm.grad.mul_(scale)
            t.loss *= scale
        torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        self.optimizer.step()

    def save_state(self, path: Path, completed: bool = False) -> None:
        """Weights (or the adapter), optimizer and trainer state at `path`: an in-round checkpoint, or with
        `completed` the round's checkpoint (with the tokenizer; counters and schedule only). With several
        processes every one calls it: their RNG states are gathered and the first process writes."""
        rng = rng_state() if self.ranks.world == 1 else {"ranks": self.ranks.gather(rng_state())}
        state = replace(self.state, completed=completed, policy={} if completed else self.policy.state(), rng=rng)
        if completed:
            state = replace(state, orders=None, log=[], lineage=[])
        if self.ranks.writer:
            self._write(path, state, completed)
        self.ranks.barrier()

    def _write(self, path: Path, state: TrainerState, completed: bool) -> None:
        with atomic_path(path) as tmp:
            save_weights(self.model, tmp, self.base_ref)
            if completed:
                self.tokenizer.save_pretrained(tmp)
            save_optimizer(self.optimizer, tmp / TRAINER_STATE)
            write_state(tmp / TRAINER_STATE, state.to_dict())

    def load_state(self, path: Path) -> None:
        """Resume from the in-round checkpoint at `path`: optimizer, position, log, lineage, policy and RNG
        (its weights are loaded by `setup`)."""
        load_optimizer(self.optimizer, path / TRAINER_STATE)
        self.state = TrainerState.from_dict(read_state(path))
        self.policy.load_state(self.state.policy)
        set_rng_state(self.state.rng if self.ranks.world == 1 else self.state.rng["ranks"][self.ranks.rank])
