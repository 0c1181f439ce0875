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


def test_a_pool_row_copied_from_a_held_out_set_is_removed_and_audited(make_project):
    """Decontamination end to end: a held-out row pasted into the raw pool (with a word added) leaves the pool
    at the holdout stage, and `curate audit row` names the stage and the reason heldout_overlap."""
    project = make_project()
    project.curate("demo-data", "--size", "300")
    eval_file = sorted((project.root / "data" / "raw" / "eval").glob("*.jsonl"))[0]
    held = json.loads(eval_file.read_text().splitlines()[0])
    copied = {**held, "output": held["output"] + " Indeed."}
    with open(project.root / "data" / "raw" / "pool.jsonl", "a") as f:
        f.write(json.dumps(copied) + "\n")
    summary = project.curate("run").stdout
    assert "1 pool rows overlapping a held-out row removed" in summary, summary
    removed = pq.read_table(project.root / "data" / "holdout" / "removed.parquet").to_pylist()
    assert len(removed) == 1 and removed[0]["reason"] == "heldout_overlap" and removed[0]["similarity"] >= 0.6
    pool = pq.read_table(project.root / "data" / "holdout" / "pool" / "rows.parquet")["row_id"].to_pylist()
    assert removed[0]["row_id"] not in pool
    audit = json.loads(project.curate("audit", "row", removed[0]["row_id"], "--json").stdout)
    assert [(r["stage"], r["reason"]) for r in audit["removed"]] == [
        ("holdout (decontamination: overlaps a held-out row)", "heldout_overlap")]
    assert audit["removed"][0]["duplicate_of"] == removed[0]["duplicate_of"] and not audit["trained"]
