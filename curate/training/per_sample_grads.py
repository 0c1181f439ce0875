"""Per-sample gradients of linear layers in factorised (outer-product) form (docs/online-selection.md §5,
(9)-(11)).

For a linear layer z_t = W x_t applied at positions t = 1..T of sample i, with output gradients
δ_t = ∂L/∂z_t, the sample's weight gradient is G_i = Σ_t δ_t x_tᵀ = Δ_iᵀ X_i (X_i: T×d_in, Δ_i:
T×d_out). `LinearGradCapture` records X (forward hook) and Δ (a hook on the output tensor), so one
forward/backward of `sum_i loss_i` yields every sample's gradient of its own loss term.

Inner products ⟨G_i, G_j⟩_F come two ways (they agree; tests check it):
- ghost: sum((Δ_iΔ_jᵀ) ⊙ (X_iX_jᵀ)), never forming G (cheap when T is short);
- materialised: G_i by one batched GEMM, then a plain dot product (cheap when d_in·d_out is small).
GhostSuite's rule picks ghost iff 2T² ≤ d_in·d_out (`use_ghost`).

Which loss: the captured gradient of sample i is the gradient of sample i's own term *as it appears
in the loss passed to backward*. Backward on `sum_i loss_i` gives ∇loss_i; backward on
`mean_i loss_i` gives ∇loss_i / B (multiply by B, as GREATS does, or pass the sum). Samples must not
interact in the forward (no batch norm). Padding: give it zero loss, then Δ = 0 there and whatever
X holds at padding positions drops out of G_i.

LoRA needs nothing special: peft's lora_A / lora_B are nn.Linear modules, the only trainable ones,
and the LoRA scale lands in lora_B's output gradient, so ∇B = s Σ δ (A x)ᵀ and ∇A = s Σ (Bᵀδ) xᵀ
come out of the same hooks. Bias gradients are Δ_i summed over t (`bias_grads`,
`LinearGradCapture.bias_grads`); the inner products and features below cover the weights only
(Llama/LoRA layers have no bias).
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
        self.with_bias = [n for n, m in modules.items() if m.bias is not None and m.bias.requires_grad]
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


    def bias_grads(self) -> dict[str, torch.Tensor]:
        """Per-sample bias gradients Σ_t δ_t (B×d_out) of the captured modules that have a trainable bias."""
        factors = self.factors()
        return bias_grads({n: factors[n] for n in self.with_bias if n in factors})


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
    return inner_products(factors_a, factors_b, route="ghost")


def inner_products(factors_a: Factors, factors_b: Factors, route: str = "auto") -> torch.Tensor:
    """Na×Nb matrix of ⟨g_i, g_j⟩ summed over modules; per module ghost or materialised (`route`;
    "auto" applies `use_ghost` with the longer of the two sides' T)."""
    if route not in ("auto", "ghost", "materialize"):
        raise ValueError(f"route must be auto, ghost or materialize, got {route!r}")
    if set(factors_a) != set(factors_b):
        raise ValueError(f"both sides need the same modules, got {sorted(factors_a)} and {sorted(factors_b)}")
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
    so that the whole matrix never has to exist at once; the same (dim, p, seed) gives the same R on
    any device and for any chunking of the input. Block b holds input coordinates
    [b·block_rows, (b+1)·block_rows), about BLOCK_ENTRIES entries. Drawing R costs several times the
    product itself, so blocks are kept for later calls while they fit in `cache_bytes`."""

    BLOCK_ENTRIES = 1 << 22

    def __init__(self, dim: int, p: int, seed: int, *, cache_bytes: int = 256 << 20):
        if p <= 0 or dim <= 0:
            raise ValueError(f"projection needs dim > 0 and p > 0, got dim={dim}, p={p}")
        self.dim, self.p, self.seed, self.cache_bytes = dim, p, seed, cache_bytes
        self.block_rows = max(1, self.BLOCK_ENTRIES // p)
        self._cache: dict[tuple, torch.Tensor] = {}
        self._cached = 0

    def _block(self, index: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Block `index` of √p·Rᵀ (rows = input coordinates, entries ±1)."""
        key = (index, dtype, device)
        if key in self._cache:
            return self._cache[key]
        rows = min(self.block_rows, self.dim - index * self.block_rows)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        signs = torch.randint(0, 2, (rows, self.p), generator=gen, dtype=torch.int8).mul_(2).sub_(1)
        block = signs.to(device=device, dtype=dtype)
        if self._cached + block.nbytes <= self.cache_bytes:
            self._cache[key] = block
            self._cached += block.nbytes
        return block

    def project_slice(self, features: torch.Tensor, start: int) -> torch.Tensor:
        """R[:, start:start+w] applied to N×w `features` (input coordinates start..start+w−1): the
        projections of consecutive slices add up to the projection of their concatenation."""
        stop = start + features.shape[-1]
        if start < 0 or stop > self.dim:
            raise ValueError(f"features cover columns {start}..{stop}, the projection expects {self.dim} columns")
        out = features.new_zeros((features.shape[0], self.p))
        if stop == start:
            return out
        for index in range(start // self.block_rows, (stop - 1) // self.block_rows + 1):
            lo = max(start, index * self.block_rows)
            hi = min(stop, (index + 1) * self.block_rows)
            rows = self._block(index, features.dtype, features.device)[lo - index * self.block_rows : hi - index * self.block_rows]
            out += features[:, lo - start : hi - start] @ rows
        return out.div_(math.sqrt(self.p))

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[-1] != self.dim:
            raise ValueError(f"features have {features.shape[-1]} columns, the projection expects {self.dim}")
        return self.project_slice(features, 0)


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
    flattened and concatenated in the capture's module order; N×p when projected (then module by
    module, so the N×P matrix is never formed)."""
    if not factors:
        raise ValueError("no captured module: no features to build")
    if projection is None:
        return torch.cat(list(_scaled_grads(factors, scale)), dim=1)
    dim = sum(x.shape[2] * delta.shape[2] for x, delta in factors.values())
    if dim != projection.dim:
        raise ValueError(f"the modules have {dim} weights in all, the projection expects {projection.dim}")
    out, offset = None, 0
    for grads in _scaled_grads(factors, scale):  # one module at a time: N×P never exists
        part = projection.project_slice(grads, offset)
        out, offset = (part if out is None else out + part), offset + grads.shape[1]
    return out
