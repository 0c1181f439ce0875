"""Per-sample gradients of linear layers in factorised (outer-product) form (online-selection note §1.5
steps 2-3, §3.4).

For a linear layer z_t = W x_t applied at positions t = 1..T of sample i, with output gradients
δ_t = ∂L/∂z_t, the sample's weight gradient is G_i = Σ_t δ_t x_tᵀ = Δ_iᵀ X_i (X_i: T×d_in, Δ_i:
T×d_out). `LinearGradCapture` records X (forward hook) and Δ (a hook on the output tensor), so one
forward/backward of `sum_i loss_i` yields every sample's gradient of its own loss term.

Inner products ⟨G_i, G_j⟩_F come two ways (they agree; tests check it):
- ghost: sum((Δ_iΔ_jᵀ) ⊙ (X_iX_jᵀ)), never forming G (cheap when T is short);
- materialised: G_i by one batched GEMM, then a plain dot product (cheap when d_in·d_out is small).
GhostSuite's rule picks ghost iff 2T² ≤ d_in·d_out (`use_ghost`).

LoRA needs nothing special: peft's lora_A / lora_B are nn.Linear modules, the only trainable ones,
and the LoRA scale lands in lora_B's output gradient, so ∇B = s Σ δ (A x)ᵀ and ∇A = s Σ (Bᵀδ) xᵀ
(note TV3) come out of the same hooks. Biases (none in Llama or LoRA layers) are left out; their
per-sample gradient is Δ_i summed over t (`bias_grads`).
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import nn

Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]  # module name -> (X: B×T×d_in, Δ: B×T×d_out)


class LinearGradCapture:
    """Record every captured linear layer's inputs and output gradients during one forward/backward.

        with LinearGradCapture(model) as cap:
            per_sample_losses(model, batch).sum().backward()   # or: cap.backward(loss)
        factors = cap.factors()

    `cap.backward(loss)` takes the gradients with respect to the captured layers' outputs only, so
    autograd skips every weight-gradient GEMM (about a third of a backward pass); `.backward()` also
    works but fills `.grad`. `modules`: name -> nn.Linear; default: every nn.Linear whose weight
    requires grad. Positions with zero loss (padding) get Δ = 0 and contribute nothing. Each module
    may run once per forward.
    """

    def __init__(self, model: nn.Module, modules: dict[str, nn.Linear] | None = None):
        if modules is None:
            modules = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.weight.requires_grad}
        self.modules = modules
        self._x: dict[str, torch.Tensor] = {}
        self._delta: dict[str, torch.Tensor] = {}
        self._out: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def _forward_hook(self, name: str):
        def hook(module, inputs, output):
            if name in self._x:
                raise RuntimeError(f"module {name} ran twice in one forward; LinearGradCapture needs one call per forward")
            self._x[name] = inputs[0].detach()
            if output.requires_grad:
                self._out[name] = output
                output.register_hook(lambda grad: self._delta.__setitem__(name, grad.detach()))
        return hook

    def __enter__(self) -> "LinearGradCapture":
        self._handles = [m.register_forward_hook(self._forward_hook(n)) for n, m in self.modules.items()]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def backward(self, loss: torch.Tensor) -> None:
        """Output gradients of every captured layer for `loss`, without computing weight gradients."""
        names = list(self._out)
        for name, grad in zip(names, torch.autograd.grad(loss, [self._out[n] for n in names], allow_unused=True)):
            if grad is not None:
                self._delta[name] = grad.detach()
        self._out.clear()

    def factors(self) -> Factors:
        """(X, Δ) per module that saw both a forward and a backward, as B×T×d tensors (2-D inputs get T = 1)."""
        out = {}
        for name in self.modules:
            if name in self._x and name in self._delta:
                x, d = self._x[name], self._delta[name]
                out[name] = (x.unsqueeze(1), d.unsqueeze(1)) if x.dim() == 2 else (x, d)
        return out


def use_ghost(T: int, d_in: int, d_out: int) -> bool:
    """GhostSuite's rule: the T×T Gram route is cheaper iff 2T² ≤ d_in·d_out."""
    return 2 * T * T <= d_in * d_out


def materialized_grads(factors: Factors) -> dict[str, torch.Tensor]:
    """G_i = Δ_iᵀ X_i for every module: B×d_out×d_in, one batched GEMM each."""
    return {name: torch.bmm(delta.transpose(1, 2), x) for name, (x, delta) in factors.items()}


def bias_grads(factors: Factors) -> dict[str, torch.Tensor]:
    """Per-sample bias gradients Σ_t δ_t: B×d_out (for layers that have a bias)."""
    return {name: delta.sum(dim=1) for name, (_, delta) in factors.items()}


def _ghost(xa: torch.Tensor, da: torch.Tensor, xb: torch.Tensor, db: torch.Tensor) -> torch.Tensor:
    """Σ_{t,s} (δ_{i,t}·δ_{j,s})(x_{i,t}·x_{j,s}) for all i, j, one row i at a time (memory Nb·T²)."""
    rows = [((da[i] @ db.transpose(1, 2)) * (xa[i] @ xb.transpose(1, 2))).sum(dim=(1, 2)) for i in range(xa.shape[0])]
    return torch.stack(rows) if rows else xa.new_zeros((0, xb.shape[0]))


def ghost_inner_products(factors_a: Factors, factors_b: Factors) -> torch.Tensor:
    """Na×Nb matrix of ⟨g_i, g_j⟩ summed over modules, without materialising any gradient."""
    return sum(_ghost(*factors_a[n], *factors_b[n]) for n in factors_a)


def inner_products(factors_a: Factors, factors_b: Factors, route: str = "auto") -> torch.Tensor:
    """Na×Nb matrix of ⟨g_i, g_j⟩ summed over modules; per module ghost or materialised (`route`)."""
    if route not in ("auto", "ghost", "materialize"):
        raise ValueError(f"route must be auto, ghost or materialize, got {route!r}")
    total = None
    for name, (xa, da) in factors_a.items():
        xb, db = factors_b[name]
        T = max(xa.shape[1], xb.shape[1])
        ghost = route == "ghost" or (route == "auto" and use_ghost(T, xa.shape[2], da.shape[2]))
        if ghost:
            part = _ghost(xa, da, xb, db)
        else:
            ga = torch.bmm(da.transpose(1, 2), xa).flatten(1)
            gb = torch.bmm(db.transpose(1, 2), xb).flatten(1)
            part = ga @ gb.T
        total = part if total is None else total + part
    if total is None:
        raise ValueError("no captured module: nothing to take inner products of")
    return total


class RademacherProjection:
    """φ = R u with R ∈ {±1/√p}^{p×dim} (TRAK/LESS style), generated block by block from `seed`
    so that the whole matrix never exists at once; the same seed gives the same R."""

    BLOCK = 1 << 16

    def __init__(self, dim: int, p: int, seed: int):
        if p <= 0 or dim <= 0:
            raise ValueError(f"projection needs dim > 0 and p > 0, got dim={dim}, p={p}")
        self.dim, self.p, self.seed = dim, p, seed

    def _block(self, index: int, rows: int, dtype, device) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        signs = torch.randint(0, 2, (rows, self.p), generator=gen, dtype=torch.int8)
        return (signs.to(dtype) * 2 - 1).div_(math.sqrt(self.p)).to(device)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[-1] != self.dim:
            raise ValueError(f"features have {features.shape[-1]} columns, the projection expects {self.dim}")
        out = features.new_zeros((features.shape[0], self.p))
        for index, start in enumerate(range(0, self.dim, self.BLOCK)):
            chunk = features[:, start : start + self.BLOCK]
            out += chunk @ self._block(index, chunk.shape[1], features.dtype, features.device)
        return out


def _scaled_grads(factors: Factors, scale: dict[str, torch.Tensor] | None) -> Iterator[torch.Tensor]:
    for name, grads in materialized_grads(factors).items():
        if scale is not None:
            grads = grads * scale[name].to(grads)
        yield grads.flatten(1)


def gram(factors: Factors, scale: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """B×B matrix of ⟨s⊙g_i, s⊙g_j⟩ over all samples, accumulated module by module (no N×P
    concatenation): the kernel and the alignments of Filter-then-Weight and GREATS in one product."""
    total = None
    for grads in _scaled_grads(factors, scale):
        part = grads @ grads.T
        total = part if total is None else total + part
    if total is None:
        raise ValueError("no captured module: nothing to take inner products of")
    return total


def flat_features(factors: Factors, scale: dict[str, torch.Tensor] | None = None,
                  projection: RademacherProjection | None = None) -> torch.Tensor:
    """N×P per-sample gradients, each module's multiplied elementwise by `scale[name]` (e.g. √D),
    flattened and concatenated in the capture's module order; N×p when projected."""
    features = torch.cat(list(_scaled_grads(factors, scale)), dim=1)
    return projection(features) if projection is not None else features
