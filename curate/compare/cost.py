"""The cost of selecting beside the cost of training, per run (docs/selection-baselines.md §3).

Selection cost = what the strategy's choice of rows needs, read from the stages' own records
(`stats.json` tokens, `timings.json` seconds), so a stage that came from the content cache still
reports what it cost when it ran:
- scoring the pool with the base model (strategies that rank by IFD), re-scoring windows (iterit,
  ifd-only): the conditional and prior passes, plus the contrast passes only when the mismatch gate
  is on (without the gate their result is unused). A stage's seconds are split between its passes
  in proportion to their tokens;
- the ranking stage (`longest`: tokenising responses; `rds`: embedding pool and targets);
- every select stage (the greedy selection itself, or a random draw).
`compute` counts the same tokens in forward tokens of the trained model: a proxy scorer's (scoring.model)
tokens times its parameters over the trained model's, the trained model's own passes as they are.
Training cost = the train stages' tokens and seconds (an online policy's own work happens inside
training steps and is counted there). Random and full spend no scoring.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from curate.artifacts import TIMINGS, read_json
from curate.compare import MODEL_AWARE_SELECTION
from curate.config import Params


def _seconds(ref: dict | None) -> float:
    path = Path(ref["path"]) / TIMINGS if ref else None
    return float(read_json(path).get("seconds", 0.0)) if path and path.is_file() else 0.0


def scoring_cost(ref: dict, contrast_needed: bool) -> dict[str, float]:
    """Tokens and seconds of the passes a strategy needs, of one score/re-score stage output; `compute`: the
    tokens in forward tokens of the trained model (a proxy scorer's tokens times its share of the parameters)."""
    stats = read_json(Path(ref["path"]) / "stats.json")
    tokens = stats.get("forward_tokens", {})
    total = sum(tokens.values())
    needed = sum(v for k, v in tokens.items() if k != "contrast" or contrast_needed)
    proxy = stats.get("proxy") or {}
    size = proxy["scorer_parameters"] / proxy["trained_parameters"] if proxy else 1.0
    return {"tokens": float(needed), "seconds": _seconds(ref) * (needed / total if total else 0.0),
            "compute": float(needed) * size}


def selection_cost(p: Params, pool_scores: dict, rounds: list[dict]) -> dict[str, Any]:
    """Tokens and seconds spent selecting over a run's rounds, with their parts."""
    s = p.selection
    gate = s.gate_on
    parts = {part: {"tokens": 0.0, "seconds": 0.0, "compute": 0.0} for part in ("score", "rescore", "ranking", "select")}
    if s.strategy in MODEL_AWARE_SELECTION:  # they rank by the base model's IFD
        parts["score"] = scoring_cost(pool_scores, gate)
    for rd in rounds:
        if rd.get("rescore"):
            c = scoring_cost(rd["rescore"], gate)
            parts["rescore"] = {k: parts["rescore"][k] + c[k] for k in c}
        if rd.get("ranking"):
            stats = read_json(Path(rd["ranking"]["path"]) / "stats.json")
            tokens = float(stats.get("forward_tokens", 0))
            parts["ranking"] = {"tokens": tokens, "seconds": _seconds(rd["ranking"]), "compute": tokens}
        parts["select"]["seconds"] += _seconds(rd["select"])
    return {**{k: sum(x[k] for x in parts.values()) for k in ("tokens", "seconds", "compute")}, "parts": parts}


def gain_per_selection_hour(baseline_loss: float | None, loss: float | None, selection_seconds: float) -> float | None:
    """Held-out loss gained against the baseline (nats) per hour spent selecting; None when it spent
    no measurable time (under a second) or a loss is missing."""
    if baseline_loss is None or loss is None or selection_seconds < 1.0:
        return None
    return (baseline_loss - loss) / (selection_seconds / 3600.0)
