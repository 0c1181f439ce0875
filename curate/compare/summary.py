"""Aggregate a comparison's runs over seeds: per pool and strategy, mean ± std of the held-out
metrics per round and per skill, the average subset composition, round-to-round overlap, the cost
of selecting and of training, and the verdict against the baseline."""
from __future__ import annotations

from typing import Any

import numpy as np

from curate.compare.cost import gain_per_selection_hour
from curate.compare.metrics import mean_std, shares
from curate.compare.verdict import verdicts


def _avg_shares(counts: list[dict[str, int]]) -> dict[str, float]:
    labels = sorted({k for c in counts for k in c})
    per = [shares(c) for c in counts]
    return {k: float(np.mean([s.get(k, 0.0) for s in per])) for k in labels}


def summarise_strategy(runs: list[dict], base_eval: dict) -> dict[str, Any]:
    n_rounds = min(len(r["rounds"]) for r in runs)
    rounds = [[r["rounds"][i] for r in runs] for i in range(n_rounds)]
    skills = sorted(base_eval["sets"])

    def metric(entries, key):  # a round not evaluated (evaluate_rounds: final) has no eval
        return mean_std([e["eval"][key] for e in entries if e["eval"]])

    return {
        "seeds": [r["seed"] for r in runs],
        "final_loss": mean_std([r["final"]["mean_loss"] for r in runs]),
        "final_exact_match": mean_std([r["final"]["mean_exact_match"] for r in runs]),
        "loss_by_round": [metric(e, "mean_loss") for e in rounds],
        "exact_match_by_round": [metric(e, "mean_exact_match") for e in rounds],
        "skills": {s: {"loss": mean_std([r["final"]["sets"][s]["loss"] for r in runs]),
                       "exact_match": mean_std([r["final"]["sets"][s]["exact_match"] for r in runs])} for s in skills},
        "truth_by_round": [_avg_shares([x["truth"] for x in e]) for e in rounds],
        "skill_by_round": [_avg_shares([x["skill"] for x in e]) for e in rounds],
        "truth_all": _avg_shares([{k: sum(x["truth"].get(k, 0) for x in r["rounds"]) for k in
                                   {k for x in r["rounds"] for k in x["truth"]}} for r in runs]),
        "skill_all": _avg_shares([{k: sum(x["skill"].get(k, 0) for x in r["rounds"]) for k in
                                   {k for x in r["rounds"] for k in x["skill"]}} for r in runs]),
        "overlap_by_round": [mean_std([x["overlap_prev"]["kept"] for x in e]) if e[0]["overlap_prev"] else None for e in rounds],
        "steps": sorted({r["steps"] for r in runs}),
        "selected_per_round": sorted({x["selected"] for r in runs for x in r["rounds"]}),
        "train_tokens": mean_std([sum(x["train"]["tokens"] for x in r["rounds"]) for r in runs]),
        "train_seconds": mean_std([sum(x["train"]["seconds"] for x in r["rounds"]) for r in runs]),
        "rescore_response_tokens": mean_std([sum((x["rescore"] or {}).get("response_tokens", 0) for x in r["rounds"]) for r in runs]),
        "rescore_seconds": mean_std([sum((x["rescore"] or {}).get("wall_seconds", 0.0) for x in r["rounds"]) for r in runs]),
        "wall_seconds": mean_std([r["wall_seconds"] for r in runs]),
        "selection_tokens": mean_std([r["selection_cost"]["tokens"] for r in runs]),
        "selection_seconds": mean_std([r["selection_cost"]["seconds"] for r in runs]),
        "selection_parts": {part: mean_std([r["selection_cost"]["parts"][part]["seconds"] for r in runs])
                            for part in runs[0]["selection_cost"]["parts"]},
        "selection_compute": mean_std([r["selection_cost"].get("compute", r["selection_cost"]["tokens"]) for r in runs]),
        "matched": [r["matched"] for r in runs if r.get("matched")] or None,
    }


def summarise(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{pool: {arm: summary}} in spec order (the strategies, then the compute-matched arms); against the baseline,
    each arm's paired verdict (curate/compare/verdict.py) and held-out loss gained per hour spent selecting."""
    spec = results["spec"]
    baseline = spec["baseline"]
    out: dict[str, dict[str, Any]] = {}
    for pool, facts in results["pools"].items():
        out[pool] = {}
        by_arm = {arm: [r for r in results["runs"] if r["pool"] == pool and r["strategy"] == arm]
                  for arm in list(spec["strategies"]) + list(spec.get("compute_matched") or {})}
        for arm, runs in by_arm.items():
            if runs:
                out[pool][arm] = summarise_strategy(runs, facts["base_eval"])
        if baseline not in out[pool]:
            continue
        judged = verdicts(by_arm, baseline, spec)
        base_loss = out[pool][baseline]["final_loss"]["mean"]
        for strategy, x in out[pool].items():
            x["verdict"] = judged.get(strategy)
            x["gain_per_selection_hour"] = gain_per_selection_hour(base_loss, x["final_loss"]["mean"],
                                                                   x["selection_seconds"]["mean"] or 0.0)
    return out
