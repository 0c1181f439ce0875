"""`curate compare` end to end at toy size (2 strategies, 1 seed, 2 rounds of a few steps, a 300-row
noisy pool, the test model sizes), with real MLflow; and `curate report` on a real curation run."""
from __future__ import annotations

import json

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import TEST_PARAMS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STRATEGIES = {"random": {"selection": {"strategy": "random"}},
              # an online policy inside IterIT rounds; `+` is not allowed in MLflow keys (logged as `_`)
              "iterit-fresh+adapt": {"selection": {"strategy": "iterit", "mode": "clean", "revisit": "off"},
                                     "training": {"online": {"policy": "adapt"}}}}
PNGS = ("heldout_loss", "per_skill_loss", "per_skill_exact_match", "composition_noise", "composition_skill", "overlap")


def test_compare_writes_report_json_and_mlflow_run(make_project):
    project = make_project()
    spec = {"name": "toy", "params": {**TEST_PARAMS, "training": {**TEST_PARAMS["training"], "save_every": 0}},
            "pools": {"noisy": {"size": 300, "seed": 3, "eval_per_skill": 20, "description": "toy noisy pool",
                                "noise": {"shuffled": 0.1, "garbage": 0.05, "truncated": 0.05, "exact_dup": 0.03}}},
            "strategies": STRATEGIES, "baseline": "random", "seeds": [1], "rounds": 2, "budget": 0.1}
    (project.root / "params" / "compare-test.yaml").write_text(yaml.safe_dump(spec))
    proc = project.curate("compare", "--compare", "params/compare-test.yaml", "--out", "cmp")
    out = project.root / "cmp"
    assert f"report: {out / 'report.md'}" in proc.stdout

    results = json.loads((out / "results.json").read_text())
    runs = {(r["pool"], r["strategy"], r["seed"]) for r in results["runs"]}
    assert runs == {("noisy", s, 1) for s in STRATEGIES}
    steps = {r["strategy"]: r["steps"] for r in results["runs"]}
    assert len(set(steps.values())) == 1 and steps["random"] > 0  # same optimizer steps for every strategy
    for r in results["runs"]:
        assert [x["round"] for x in r["rounds"]] == [0, 1]
        assert all(x["selected"] == sum(x["truth"].values()) == sum(x["skill"].values()) for x in r["rounds"])
        assert r["rounds"][1]["overlap_prev"] is not None and r["final"]["mean_loss"] > 0
    iterit = next(r for r in results["runs"] if r["strategy"] == "iterit-fresh+adapt")
    assert iterit["rounds"][1]["rescore"]["rows"] > 0  # iterit re-scored a window in round 1
    assert iterit["rounds"][1]["overlap_prev"]["kept"] == 0  # revisit off: no row trains twice
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["noisy"]) == set(STRATEGIES)

    page = (out / "report.md").read_text()
    assert "## Conclusion" in page and "Best model-aware strategy **iterit-fresh+adapt**" in page
    for strategy in STRATEGIES:
        assert f"| {strategy} |" in page
    for png in PNGS + ("ifd_iterit-fresh+adapt",):
        assert (out / "noisy" / f"{png}.png").stat().st_size > 1000, png

    mlflow.set_tracking_uri(project.tracking_uri)
    exp = MlflowClient().get_experiment_by_name("curate-compare")
    (run,) = MlflowClient().search_runs([exp.experiment_id], "tags.`curate.kind` = 'comparison'")
    assert run.data.metrics["noisy.random.final_loss.mean"] == pytest.approx(summary["noisy"]["random"]["final_loss"]["mean"])
    assert "noisy.iterit-fresh_adapt.final_loss.mean" in run.data.metrics
    logged = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "report")}
    assert {"report/report.md", "report/results.json", "report/noisy"} <= logged


def test_report_for_a_curation_run(make_project):
    project = make_project()
    project.curate("demo-data", "--size", "300")
    project.curate("run")
    proc = project.curate("report", "--out", "rep")
    out = project.root / "rep"
    assert f"report: {out / 'report.md'}" in proc.stdout
    page = (out / "report.md").read_text()
    assert "| round 1 |" in page and "held-out loss went from" in page and "Noisy rows were" in page
    for png in ("heldout_loss", "per_skill_loss", "composition_skill", "composition_noise", "ifd", "overlap"):
        assert (out / f"{png}.png").stat().st_size > 1000, png


def test_lm_eval_on_a_local_task_offline(tmp_path, monkeypatch):
    """lm-eval evaluates a checkpoint on a local task YAML + local JSONL, with the hub switched off."""
    pytest.importorskip("lm_eval", reason="lm-eval is optional: pip install -c constraints.txt -r requirements-lmeval.txt")
    from curate.compare.lmeval import evaluate_checkpoints, local_task
    from curate.config import Params
    from curate.demo.pool import generate_eval_sets
    from tasks.pipeline import stage_params
    from curate.models.loading import model_path
    from tasks.base_model import base_model

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    p = Params.model_validate({"base_model": TEST_PARAMS["base_model"]})
    model = model_path(base_model.fn(project=str(tmp_path), params=stage_params(p, "base_model")))
    data = tmp_path / "arithmetic.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in generate_eval_sets(per_skill=6)["arithmetic"]))
    local_task("demo_arithmetic", data, tmp_path / "tasks")
    result = evaluate_checkpoints({"base": model}, ["demo_arithmetic"], tmp_path / "tasks", limit=4, batch_size=2)
    metrics = result["base"]["demo_arithmetic"]
    assert 0.0 <= metrics["exact_match"] <= 1.0 and metrics["sample_len"] == 4
