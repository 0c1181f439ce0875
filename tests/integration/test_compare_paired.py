"""`curate compare` with the paired statistics and a compute-matched arm, end to end at toy size (a 300-row
noisy demo pool, the test model sizes, 2 rounds, 2 seeds) with real MLflow."""
from __future__ import annotations

import json
import math

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import TEST_PARAMS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARMS = {"random": {"selection": {"strategy": "random"}},
        "iterit-fresh": {"selection": {"strategy": "iterit", "mode": "clean", "revisit": "off"}}}


def _set_losses(rows: dict) -> dict[str, float]:
    """Each held-out set's token-weighted loss, recomputed from a run's per-row losses."""
    out = {}
    for name in set(rows["set"]):
        pairs = [(l, n) for s, l, n in zip(rows["set"], rows["loss"], rows["tokens"]) if s == name and n > 0]
        out[name] = sum(l * n for l, n in pairs) / sum(n for _, n in pairs)
    return out


def test_paired_verdicts_and_a_compute_matched_arm(make_project):
    project = make_project()
    spec = {"name": "paired", "params": {**TEST_PARAMS, "training": {**TEST_PARAMS["training"], "save_every": 0}},
            "pools": {"noisy": {"size": 300, "seed": 3, "eval_per_skill": 20, "description": "toy noisy pool",
                                "noise": {"shuffled": 0.1, "garbage": 0.05, "truncated": 0.05}}},
            "strategies": ARMS, "compute_matched": {"random-matched": "iterit-fresh"}, "primary": "iterit-fresh",
            "baseline": "random", "seeds": [1, 2], "rounds": 2, "budget": 0.1, "bootstrap_samples": 2000,
            "evaluate_rounds": "final"}
    (project.root / "params" / "compare-paired.yaml").write_text(yaml.safe_dump(spec))
    project.curate("compare", "--compare", "params/compare-paired.yaml", "--out", "cmp")
    out = project.root / "cmp"
    results = json.loads((out / "results.json").read_text())
    summary = json.loads((out / "summary.json").read_text())["noisy"]
    runs = {(r["strategy"], r["seed"]): r for r in results["runs"]}
    assert set(runs) == {(a, s) for a in ("random", "iterit-fresh", "random-matched") for s in (1, 2)}

    # every run is evaluated on the same held-out rows; the per-row losses make up the final loss
    keys = {tuple(zip(r["final_rows"]["set"], r["final_rows"]["row_id"])) for r in runs.values()}
    assert len(keys) == 1 and len(next(iter(keys))) == 5 * 10  # 5 skills x evaluation.max_rows_per_skill
    for r in runs.values():
        sets = _set_losses(r["final_rows"])
        assert r["final"]["mean_loss"] == pytest.approx(np.mean(list(sets.values())), rel=1e-12, abs=0)
        assert r["rounds"][0]["eval"] is None and r["rounds"][1]["eval"] is not None  # evaluate_rounds: final

    # the compute-matched arm: random with the rows iterit-fresh's selection compute buys, in the same seed
    for seed in (1, 2):
        matched, iterit, rnd = runs[("random-matched", seed)], runs[("iterit-fresh", seed)], runs[("random", seed)]
        plan = matched["matched"]
        per_row = sum(x["train"]["tokens"] for x in rnd["rounds"]) / sum(x["selected"] for x in rnd["rounds"])
        assert plan["selection_compute"] == iterit["selection_cost"]["compute"] > 0
        assert plan["extra_rows"] == math.floor(plan["selection_compute"] / (3.0 * per_row))
        cap = results["pools"]["noisy"]["rows_scorable"] // 2  # every round must still find untrained rows
        assert plan["k_matched"] == min(plan["k"] + math.ceil(plan["extra_rows"] / 2), cap) > plan["k"]
        assert [x["selected"] for x in matched["rounds"]] == [plan["k_matched"]] * 2
        assert sum(x["train"]["tokens"] for x in matched["rounds"]) > sum(x["train"]["tokens"] for x in rnd["rounds"])
        assert matched["selection_cost"]["compute"] == 0 and matched["steps"] > rnd["steps"]

    # paired verdicts: the difference is the difference of mean final losses; Holm over the two arms
    base = summary["random"]["final_loss"]["mean"]
    verdicts = {a: summary[a]["verdict"] for a in ("iterit-fresh", "random-matched")}
    for arm, v in verdicts.items():
        assert v["difference"] == pytest.approx(summary[arm]["final_loss"]["mean"] - base, rel=1e-9, abs=1e-12)
        assert v["ci95"][0] <= v["difference"] <= v["ci95"][1] and 0 <= v["win_rate"] <= 1
        assert v["outcome"] in ("better", "worse", "equivalent", "inconclusive") and v["variants_tried"] == 2
    low, high = sorted(verdicts.values(), key=lambda v: v["p"])
    assert low["p_holm"] == pytest.approx(min(1.0, 2 * low["p"]))
    assert high["p_holm"] == pytest.approx(max(low["p_holm"], high["p"]))
    assert verdicts["iterit-fresh"]["primary"] and not verdicts["random-matched"]["primary"]
    assert summary["random"]["verdict"] is None

    page = (out / "report.md").read_text()
    assert "the question named before the run: **iterit-fresh**" in page
    assert "### Paired comparison with random" in page and "| iterit-fresh (primary) |" in page
    assert "- **random-matched**: random with " in page

    mlflow.set_tracking_uri(project.tracking_uri)
    exp = MlflowClient().get_experiment_by_name("curate-compare")
    (run,) = MlflowClient().search_runs([exp.experiment_id], "tags.`curate.kind` = 'comparison'")
    assert run.data.metrics["noisy.iterit-fresh.paired.difference"] == pytest.approx(verdicts["iterit-fresh"]["difference"])
    assert "noisy.random-matched.paired.p_holm" in run.data.metrics
