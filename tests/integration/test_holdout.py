"""A pool without held-out files: a share of it is held out, evaluated, recorded, and never selected."""
from __future__ import annotations

import json
import shutil

import mlflow
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_held_out_rows_are_evaluated_and_never_selected(make_project):
    project = make_project()
    project.curate("demo-data", "--size", "300")
    shutil.rmtree(project.root / "data" / "raw" / "eval")  # the user brought no held-out sets
    project.set_params({"evaluation": {"holdout": 0.2, "anchor_rows": 2}})
    summary = project.curate("run").stdout

    held = pq.read_table(project.root / "data" / "holdout" / "heldout" / "rows.parquet")["row_id"].to_pylist()
    pool = pq.read_table(project.root / "data" / "holdout" / "pool" / "rows.parquet")["row_id"].to_pylist()
    assert held and not set(held) & set(pool)
    assert f"held out           {len(held)} rows" in summary, summary
    rounds = sorted((project.root / "data" / "rounds").glob("round-*"))
    assert rounds
    for r in rounds:
        selected = pq.read_table(r / "select" / "selection.parquet")["row_id"].to_pylist()
        ranked = pq.read_table(r / "select" / "state.parquet")["row_id"].to_pylist()
        assert selected and not set(held) & set(selected) and not set(held) & set(ranked)

    metrics = json.loads((project.root / "data" / "eval" / "base" / "metrics.json").read_text())
    assert list(metrics["sets"]) == ["holdout"] and metrics["sets"]["holdout"]["n"] == min(len(held) - 2, 10)

    mlflow.set_tracking_uri(project.tracking_uri)
    client = MlflowClient(tracking_uri=project.tracking_uri)
    exp = client.get_experiment_by_name("curate")
    parent = client.search_runs([exp.experiment_id], "tags.`curate.kind` = 'parent'")[0]
    held_stats = json.loads((project.root / "data" / "holdout" / "heldout" / "stats.json").read_text())
    assert parent.data.tags["curate.holdout.rows"] == str(len(held))
    assert parent.data.tags["curate.holdout.digest"] == held_stats["digest"]
    assert parent.data.params["evaluation.holdout"] == "0.2"
    assert "up to date" in project.dvc("status").stdout
