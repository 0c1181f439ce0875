"""Linearised Adam (docs/online-selection.md §6, (12)-(14)).

One Adam step on a gradient g with the second moment frozen is affine in g:

    Δθ ≈ −η/(1−β₁ᵗ) · [β₁ D m_{t−1} + (1−β₁) D g],   D = diag(1/(√v̂ + ε))

so the data-dependent part of the update is P_t(g) = D g (up to the scalar (1−β₁)/(1−β₁ᵗ)). Which
v̂ to freeze is unconfirmed; two variants, for the step t about to be taken (t−1 steps done):

- "A": v̂ = v_{t−1} / (1 − β₂^{t−1})  (the stored state, bias-corrected as it stands);
- "B": v̂ = β₂ v_{t−1} / (1 − β₂^t)   (the coming step's v without its (1−β₂)g² term; closer to
       the exact step early in training).
"""
from __future__ import annotations

from typing import Sequence

import torch

VARIANTS = ("A", "B")


def _frozen_v(v, step_done: int, beta2: float, variant: str):
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if variant == "A":
        return v / (1 - beta2**step_done)
    return beta2 * v / (1 - beta2 ** (step_done + 1))


def adam_preconditioner(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor], *, variant: str = "A",
                        eps: float | None = None) -> list[torch.Tensor]:
    """D = 1/(√v̂ + ε) per parameter, from a torch Adam/AdamW optimizer's state (`exp_avg_sq`, `step`,
    betas and eps of the parameter's group; `eps` overrides). Before the parameter's first step
    there is no second moment: D = 1 (the identity, i.e. plain gradients)."""
    groups = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    out = []
    for p in params:
        if id(p) not in groups:
            raise ValueError("a parameter is not managed by this optimizer")
        group, state = groups[id(p)], optimizer.state.get(p, {})
        step = int(state["step"]) if "step" in state else 0
        if step == 0 or "exp_avg_sq" not in state:
            out.append(torch.ones_like(p, dtype=torch.float32))
            continue
        v_hat = _frozen_v(state["exp_avg_sq"].float(), step, group["betas"][1], variant)
        out.append(1.0 / (v_hat.sqrt() + (group["eps"] if eps is None else eps)))
    return out


def exact_adam_step(m, v, g, *, lr: float, step: int, beta1: float, beta2: float, eps: float):
    """PyTorch Adam's update −lr·m̂/(√v̂ + ε) for step `step` (1-based) from m_{t−1}, v_{t−1} and g."""
    m_t = beta1 * m + (1 - beta1) * g
    v_t = beta2 * v + (1 - beta2) * g * g
    return -lr * (m_t / (1 - beta1**step)) / ((v_t / (1 - beta2**step)).sqrt() + eps)


def linearized_adam_step(m, v, g, *, lr: float, step: int, beta1: float, beta2: float, eps: float, variant: str = "A"):
    """The same update with v frozen per `variant` (affine in g)."""
    m_t = beta1 * m + (1 - beta1) * g
    return -lr * (m_t / (1 - beta1**step)) / (_frozen_v(v, step - 1, beta2, variant).sqrt() + eps)


def data_dependent_update(g, v, *, step: int, beta1: float, beta2: float, eps: float, variant: str = "A"):
    """P_t(g) scaled as in the step: (1−β₁)/(1−β₁ᵗ) · g/(√v̂ + ε)."""
    return (1 - beta1) / (1 - beta1**step) * g / (_frozen_v(v, step - 1, beta2, variant).sqrt() + eps)
