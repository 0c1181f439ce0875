"""Learning-rate schedules with linear warmup (docs/iterit.md §9, (17)-(18)).

The reference uses cosine with warmup_ratio 0.03 (params/iterit-llama3-8b.yaml).

`lr_at` has the semantics of Hugging Face's LambdaLR schedules (`get_cosine_schedule_with_warmup`,
`get_linear_schedule_with_warmup`, `get_constant_schedule_with_warmup`): `step` is the number of
optimizer steps already taken, so the first step of a run with warmup uses lr 0. The schedule spans
the whole run (all rounds): IterIT keeps the schedule running across selection rounds, so callers
pass the global step and the planned total steps of the run. Past `total_steps` the lr stays at its
end value (0 for cosine and linear).
"""
from __future__ import annotations

import math

SCHEDULES = ("cosine", "linear", "constant")


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float, kind: str = "cosine") -> float:
    """Learning rate for the optimizer step that follows `step` completed steps."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; expected one of {SCHEDULES}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return base_lr * step / max(1, warmup_steps)
    if kind == "constant":
        return base_lr
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if kind == "linear":
        return base_lr * (1.0 - progress)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps_for(total_steps: int, warmup_ratio: float) -> int:
    """Warmup length from a ratio, rounded up as Hugging Face's TrainingArguments does."""
    return math.ceil(total_steps * warmup_ratio)


def steps_per_round(rows: int, batch_size: int, grad_accum: int, epochs: int = 1) -> int:
    """Optimizer steps of a round over `rows` rows: ceil(ceil(rows / batch_size) / grad_accum) per epoch
    (the last, smaller batch and accumulation group are steps too)."""
    return math.ceil(math.ceil(rows / batch_size) / grad_accum) * epochs


def planned_steps(pool_rows: int, budget_rows: int | None, rounds: int, batch_size: int, grad_accum: int,
                  epochs: int = 1) -> int:
    """Optimizer steps of the whole run, which the LR schedule spans: `rounds` rounds of `budget_rows` rows
    each (None: every row of the pool, the strategy `full`)."""
    per_round = steps_per_round(pool_rows if budget_rows is None else budget_rows, batch_size, grad_accum, epochs)
    return max(1, per_round * rounds)
