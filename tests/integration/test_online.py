"""Every online policy trains the demo model end to end from params, with per-step lineage in Parquet,
MLflow and `curate audit checkpoint` (docs/online-selection.md §1)."""
from __future__ import annotations

import json

import mlflow
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLICIES = ["adapt", "filter-then-weight", "greats", "random-in-batch"]


def set_online(project, section: dict) -> None:
    """Replace `training.online` whole: it holds one policy's fields (a field of another policy is an error)."""
    path = project.root / "params" / "default.yaml"
    params = yaml.safe_load(path.read_text())
    params["training"]["online"] = section
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def test_each_online_policy_runs_from_params_with_lineage(make_project, monkeypatch):
    project = make_project()
    project.curate("demo-data", "--size", "300")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", project.tracking_uri)
    mlflow.set_tracking_uri(project.tracking_uri)
    for policy in POLICIES:
        set_online(project, {"policy": policy, **({"refresh_every": 2} if policy == "adapt" else {})})
        out = project.curate("run").stdout
        assert f"online policy      {policy}" in out, out
        trained: set[str] = set()
        for r in range(2):
            train = project.root / "data" / "rounds" / f"round-{r}" / "train"
            selected = {s["row_id"] for s in pq.read_table(train.parent / "select" / "selection.parquet").to_pylist()}
            lineage = pq.read_table(train / "online_weights.parquet").to_pylist()
            log = pq.read_table(train / "train_log.parquet").to_pylist()
            assert lineage and all(w["weight"] > 0 for w in lineage)
            assert {w["row_id"] for w in lineage} <= selected  # online policies only pick among the round's subset
            assert len(lineage) == sum(x["kept"] for x in log)
            if policy == "adapt":
                assert all(x["kept"] == x["candidates"] for x in log)  # reweights, never filters
            else:
                assert all(x["kept"] <= -(-x["candidates"] // 2) for x in log)  # keep_ratio 0.5
            trained |= {w["row_id"] for w in lineage}

        client = MlflowClient()
        exp = client.get_experiment_by_name("curate")
        parent = client.search_runs([exp.experiment_id], "tags.`curate.kind` = 'parent'", order_by=["start_time DESC"])[0]
        rounds = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.`curate.kind` = 'round'")
        last = max(rounds, key=lambda r: int(r.data.tags["curate.round"]))
        assert last.data.params["training.online.policy"] == policy
        assert client.get_metric_history(last.info.run_id, "online.kept")
        audit = json.loads(project.curate("audit", "checkpoint", last.data.tags["curate.model_uri"], "--json").stdout)
        assert audit["contributing_rows"] == len(trained)
        assert audit["total_weight"] == pytest.approx(
            sum(w["weight"] for r in range(2)
                for w in pq.read_table(project.root / "data" / "rounds" / f"round-{r}" / "train" / "online_weights.parquet").to_pylist()),
            rel=1e-6)
