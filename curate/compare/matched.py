"""A compute-matched arm: the baseline (random) given extra training rows worth a strategy's selection
compute, so the comparison answers "is selecting worth it against spending the same compute on more
random rows?" (docs/comparison-statistics.md §3).

Selection compute C is the strategy's selection cost in forward tokens of the trained model
(`curate/compare/cost.py`, `compute`: scoring and re-scoring passes, the RDS embedding; a proxy scorer's
tokens scaled by its share of the parameters). A training token costs `factor` forward tokens (forward
+ backward ~ 3x forward: the backward pass computes gradients for activations and weights, each about
one forward), so C buys C / factor training tokens, i.e. C / (factor x t) rows, where t is the mean
training tokens per row the baseline trained in the same seed. The arm trains K' = K + ceil(extra /
rounds) rows per round (more rows: more optimizer steps at the same batch size, the LR schedule spanning
them), at most the pool's rows / rounds so that every round still takes rows not trained before.
"""
from __future__ import annotations

import math
from typing import Any

from curate.compare.spec import CompareSpec, merge, validated
from curate.config import Params
from curate.selection.iterit import selection_budget


def extra_rows(selection_compute: float, tokens_per_row: float, factor: float) -> int:
    """Training rows that cost `selection_compute` forward tokens (rounded down)."""
    if tokens_per_row <= 0:
        raise ValueError("tokens per training row must be > 0")
    return math.floor(selection_compute / (factor * tokens_per_row))


def matched_budget(k: int, rounds: int, extra: int, pool_rows: int) -> tuple[int, bool]:
    """(rows per round of the matched arm, whether the pool capped it)."""
    wanted = k + math.ceil(extra / rounds)
    cap = pool_rows // rounds
    return min(wanted, cap), wanted > cap


def tokens_per_row(run: dict) -> float:
    """Mean training tokens per trained row of a comparison run (its train logs' tokens over its rows)."""
    rows = sum(r["selected"] for r in run["rounds"])
    return sum(r["train"]["tokens"] for r in run["rounds"]) / rows if rows else 0.0


def matched_plan(strategy_run: dict, baseline_run: dict, k: int, rounds: int, pool_rows: int,
                 factor: float) -> dict[str, Any]:
    """How many rows per round the arm matched to `strategy_run` trains (same seed's baseline run for t)."""
    compute = strategy_run["selection_cost"]["compute"]
    per_row = tokens_per_row(baseline_run)
    extra = extra_rows(compute, per_row, factor)
    k_matched, capped = matched_budget(k, rounds, extra, pool_rows)
    return {"matched_to": strategy_run["strategy"], "selection_compute": compute, "train_forward_factor": factor,
            "tokens_per_row": per_row, "extra_rows": extra, "k": k, "k_matched": k_matched, "capped_by_pool": capped}


def matched_params(spec: CompareSpec, base: Params, arm: str, seed: int, runs: dict[str, dict], pool_rows: int,
                   scorable_rows: int) -> tuple[Params, dict[str, Any]]:
    """The parameters of compute-matched `arm` in `seed` (the baseline's, with K' rows per round) and its plan;
    `runs`: this seed's finished runs by arm (the matched strategy's and the baseline's)."""
    p = spec.run_params(base, spec.baseline, seed)
    k = selection_budget(pool_rows, p.selection.ratio)
    plan = matched_plan(runs[spec.compute_matched[arm]], runs[spec.baseline], k, p.selection.rounds, scorable_rows,
                        spec.train_forward_factor)
    data = merge(p.model_dump(mode="json"), {"selection": {"ratio": plan["k_matched"]}})
    return validated(data, f"compute-matched arm {arm!r}"), plan
