"""Per-step online policies inside a training round (docs/online-selection.md §1-§8).

Every optimizer step draws a candidate batch of N rows (the round's data order, `batch_size *
grad_accum` rows). A policy decides which of them the step trains on and with what loss weight:

- `uniform`: all N rows, weight 1 (plain training; bit-identical to the trainer without a policy).
- `random-in-batch` (baseline): k = ceil(keep_ratio * N) rows drawn uniformly, weight 1.
- `greats` (baseline, GREATS code semantics, docs/online-selection.md §8): per-sample gradients of
  every trainable linear layer for the N candidates and `target_batch` anchor rows in one forward/backward; greedy
  gain lr*<g_j, g_val> - lr^2 * sum_{s in S} <g_s, g_j>; k rows, weight 1.
- `filter-then-weight` (docs/online-selection.md §5-§7): the same per-sample gradients, preconditioned by the
  diagonal Adam preconditioner D read from the optimizer state (u_i = D^1/2 g_i, optionally
  Rademacher-projected), greedy Filter with gain lr*b_j - lr^2 * sum K_sj, NNLS weights on the
  filtered set; rows with weight 0 are dropped from the step.
- `adapt` (docs/online-selection.md §4): all N rows; the weight of row i is clip(sigmoid(s_i / tau), w_min, w_max)
  where s_i is the cosine of the row's position-weighted mean-pooled last-layer hidden state (taken
  from the training forward itself, no extra pass) to the anchors' centroid (re-encoded every
  `refresh_every` steps), or a BM25 score to the anchors computed once before training.

Selection gradients cover the trainable linear layers only (as GREATS and LESS use the LoRA/linear
modules); norms, embeddings and an output head tied to the embeddings are left out. The selecting policies run one extra forward/backward
over candidates + anchors per step (GREATS's released code does the same).

The loss of the step is `sum_i w_i sum_t CE_it / sum_i w_i n_i` (`loss: normalized`, the weights
only matter relative to each other) or `/ sum_i n_i` (`loss: raw`, the weights' scale sets the step
size, ADAPT's Eq. 7 at token level). Which the papers train with is unconfirmed, hence a parameter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from curate.config import AdaptOnline, FilterThenWeightOnline, OnlineParams
from curate.scoring.ifd import pad_batch, per_token_span_losses
from curate.training.state import derived_seed


@dataclass
class Decision:
    """What a step trains on: positions in the candidate batch, their loss weights (None when the
    policy weights rows during the training forward), their scores, and step metrics."""
    indices: list[int]
    weights: list[float] | None = None
    scores: list[float] | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def _generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed(*parts))


def _sequence_means(losses: torch.Tensor, seq_idx: torch.Tensor, n: int) -> torch.Tensor:
    """Token-mean loss of every sequence (the per-sample loss whose gradient is g_i)."""
    sums = torch.zeros(n, dtype=losses.dtype, device=losses.device).index_add(0, seq_idx, losses)
    counts = torch.zeros(n, dtype=losses.dtype, device=losses.device).index_add(0, seq_idx, torch.ones_like(losses))
    return sums / counts.clamp(min=1)


def _keep_count(n: int, keep_ratio: float) -> int:
    return max(1, min(n, math.ceil(keep_ratio * n)))


class Policy:
    """Uniform training; the base class of the others."""

    name = "uniform"
    needs_anchors = False
    reweights = False  # True: weights come from the training forward's hidden states (`reweight`)

    def __init__(self, cfg: OnlineParams, *, seed: int, round_index: int, pad_id: int, device, anchors=(), texts=()):
        self.cfg, self.seed, self.round_index, self.pad_id, self.device = cfg, seed, round_index, pad_id, device
        self.anchors = list(anchors)  # Example objects
        if self.needs_anchors and not self.anchors:
            raise ValueError(f"training.online.policy={self.name} needs anchor rows: set evaluation.anchor_rows > 0 "
                             f"and provide held-out sets ({'raw.eval_dir'})")

    def start_step(self, model, step_in_round: int) -> None:
        """Called before `choose` at every step (ADAPT refreshes its anchors here)."""

    def choose(self, model, optimizer, candidates: Sequence, example_ids: Sequence[int], step: int, lr: float) -> Decision:
        return Decision(list(range(len(candidates))))

    def reweight(self, hidden: torch.Tensor, mask: torch.Tensor, example_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        pass


class RandomInBatch(Policy):
    name = "random-in-batch"

    def choose(self, model, optimizer, candidates, example_ids, step, lr):
        k = _keep_count(len(candidates), self.cfg.keep_ratio)
        perm = torch.randperm(len(candidates), generator=_generator(self.seed, self.round_index, step, 17)).tolist()
        return Decision(sorted(perm[:k]))


class _GradientPolicy(Policy):
    """Shared part of GREATS and Filter-then-Weight: per-sample linear-layer gradients of candidates + targets."""

    needs_anchors = True

    def _targets(self, step: int) -> list:
        n = min(self.cfg.target_batch, len(self.anchors))
        perm = torch.randperm(len(self.anchors), generator=_generator(self.seed, self.round_index, step, 29)).tolist()
        return [self.anchors[i] for i in perm[:n]]

    def _factors(self, model, examples: Sequence) -> dict:
        """(X, Δ) of every selection layer for the examples' per-sample token-mean losses."""
        from curate.training.per_sample_grads import LinearGradCapture

        ids, mask, starts = pad_batch([e.encoded for e in examples], self.pad_id, self.device)
        modules = selection_modules(model)
        # the span-only head feeds the head a flat (tokens × d) input: fine unless the head is captured
        head_captured = any(m is model.get_output_embeddings() for m in modules.values())
        with LinearGradCapture(model, modules) as capture:
            losses, seq_idx = per_token_span_losses(model, ids, mask, starts, span_only_head=False if head_captured else None)
            capture.backward(_sequence_means(losses, seq_idx, len(examples)).sum())
        return capture.factors()

    def _gram(self, model, candidates: Sequence, step: int, scale=None, projection=None) -> torch.Tensor:
        """Gram matrix of the per-sample gradient features of candidates + the step's anchors, in that
        order (scaled by `scale`, e.g. √D; through the random projection when one is given)."""
        from curate.training.per_sample_grads import flat_features, gram

        factors = self._factors(model, list(candidates) + self._targets(step))
        if projection is None:
            return gram(factors, scale).double()
        features = flat_features(factors, scale=scale, projection=projection)
        return (features @ features.T).double()


def selection_modules(model) -> dict[str, torch.nn.Linear]:
    """The layers whose per-sample gradients the selecting policies use: every trainable nn.Linear
    except an output head tied to the input embeddings (its gradient there would be only part of
    the shared parameter's; LoRA setups never adapt the head either)."""
    embedding = model.get_input_embeddings()
    tied = embedding.weight if embedding is not None else None
    return {n: m for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and m.weight.requires_grad and m.weight is not tied}


class Greats(_GradientPolicy):
    name = "greats"

    def choose(self, model, optimizer, candidates, example_ids, step, lr):
        from curate.selection.greats import greats_select

        n = len(candidates)
        G = self._gram(model, candidates, step)
        tracin = G[:n, n:].mean(dim=1)
        picks = greats_select(tracin.cpu().numpy(), G[:n, :n].cpu().numpy(), _keep_count(n, self.cfg.keep_ratio), lr)
        return Decision(sorted(picks), scores=[float(tracin[i]) for i in sorted(picks)],
                        metrics={"score_mean": float(tracin.mean()), "score_std": float(tracin.std()) if n > 1 else 0.0})


class FilterThenWeight(_GradientPolicy):
    name = "filter-then-weight"

    def __init__(self, cfg: FilterThenWeightOnline, **kw):
        super().__init__(cfg, **kw)
        self._projection = None

    def _scales(self, model, optimizer) -> dict[str, torch.Tensor]:
        """sqrt(D) for the weight of every selection layer (D: linearised Adam, docs/online-selection.md (12))."""
        from curate.training.adam_precond import adam_preconditioner

        modules = selection_modules(model)
        weights = [m.weight for m in modules.values()]
        precond = adam_preconditioner(optimizer, weights, variant=self.cfg.precond_variant)
        return {name: d.sqrt() for name, d in zip(modules, precond)}

    def choose(self, model, optimizer, candidates, example_ids, step, lr):
        from curate.selection.filter_weight import filter_then_weight_kernel
        from curate.training.per_sample_grads import RademacherProjection

        n = len(candidates)
        scales = self._scales(model, optimizer)
        p = self.cfg.projection_dim
        if p and self._projection is None:
            dim = sum(s.numel() for s in scales.values())
            self._projection = RademacherProjection(dim, p, seed=self.seed)
        G = self._gram(model, candidates, step, scale=scales, projection=self._projection if p else None).cpu().numpy()
        K, b = G[:n, :n], G[:n, n:].mean(axis=1)  # b_i = u_i · mean(u_targets)
        k = _keep_count(n, self.cfg.keep_ratio)
        lam = self.cfg.lam
        selected, weights = filter_then_weight_kernel(
            K, b, k, lr, lam=lam, candidates=min(n, math.ceil(self.cfg.filter_factor * k)),
            require_positive=self.cfg.require_positive)
        # F(w)/F(0) = (wᵀK_SS w − 2λ b_Sᵀw + λ²‖u_T‖²) / λ²‖u_T‖²
        start = lam**2 * float(G[n:, n:].mean())  # λ²‖mean(u_targets)‖²
        idx = np.array(selected, dtype=int)
        residual = (weights @ K[np.ix_(idx, idx)] @ weights - 2 * lam * b[idx] @ weights + start) / max(start, 1e-30)
        kept = [(i, float(w)) for i, w in zip(selected, weights) if w > 0]
        return Decision([i for i, _ in kept], weights=[w for _, w in kept], scores=[float(b[i]) for i, _ in kept],
                        metrics={"residual": residual, "score_mean": float(b.mean()), "score_std": float(b.std())})


class Adapt(Policy):
    name = "adapt"
    needs_anchors = True

    def __init__(self, cfg: AdaptOnline, *, texts=(), **kw):
        super().__init__(cfg, texts=texts, **kw)
        self.centroid: torch.Tensor | None = None
        self.reweights = cfg.signal == "embed"
        self.bm25: np.ndarray | None = None
        if cfg.signal == "bm25":  # once, before training (docs/online-selection.md (7))
            from curate.selection.bm25 import bm25_scores

            scores = np.asarray(bm25_scores(list(texts), [a.text for a in self.anchors]), dtype=np.float64)
            if cfg.standardize_on:
                scores = (scores - scores.mean()) / max(scores.std(), 1e-8)
            self.bm25 = scores

    def start_step(self, model, step_in_round):
        if self.reweights and (self.centroid is None or step_in_round % self.cfg.refresh_every == 0):
            self.centroid = self._encode_anchors(model)

    @torch.no_grad()
    def _encode_anchors(self, model) -> torch.Tensor:
        from curate.selection.adapt import anchor_centroid

        was_training = model.training
        model.eval()
        ids, mask, _ = pad_batch([a.encoded for a in self.anchors], self.pad_id, self.device)
        hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        model.train(was_training)
        return anchor_centroid(hidden.float(), mask)

    def _gate(self, scores: torch.Tensor, standardize: bool) -> torch.Tensor:
        from curate.selection.adapt import adapt_weights

        return adapt_weights(scores, tau=self.cfg.tau, w_min=self.cfg.w_min, w_max=self.cfg.w_max, standardize=standardize)

    def choose(self, model, optimizer, candidates, example_ids, step, lr):
        if self.reweights:
            return Decision(list(range(len(candidates))))
        scores = torch.tensor([self.bm25[i] for i in example_ids], dtype=torch.float64)
        weights = self._gate(scores, standardize=False)  # already standardised over the pool
        return Decision(list(range(len(candidates))), weights=weights.tolist(), scores=scores.tolist())

    def reweight(self, hidden, mask, example_ids):
        from curate.selection.adapt import adapt_scores_from_centroid

        scores = adapt_scores_from_centroid(hidden.detach().float(), mask, self.centroid)
        return self._gate(scores, standardize=self.cfg.standardize_on), scores

    def state(self):
        return {"centroid": None if self.centroid is None else self.centroid.tolist()}

    def load_state(self, state):
        if state.get("centroid") is not None:
            self.centroid = torch.tensor(state["centroid"], dtype=torch.float32, device=self.device)


POLICY_CLASSES = {c.name: c for c in (Policy, RandomInBatch, Greats, FilterThenWeight, Adapt)}


def make_policy(cfg: OnlineParams, **kw) -> Policy:
    """The policy of the `training.online` section (one member of the union, already validated)."""
    return POLICY_CLASSES[cfg.policy](cfg, **kw)
