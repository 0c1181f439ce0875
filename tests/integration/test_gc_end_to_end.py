"""`curate gc` on a real project (Prefect, MLflow, DVC): two runs with a parameter changed in between;
keeping one run frees the first run's own artifacts and nothing the kept run's audit, export or
resume needs. Also the bytes a run adds, in the summary and on its MLflow run."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from curate.published import store_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _files(root: Path) -> set[str]:
    """Every file gc may touch: store, DVC cache and remote, MLflow artifacts."""
    areas = [root / ".curate" / "store", root / ".dvc" / "cache" / "files", root / ".curate" / "dvc-remote",
             root / ".curate" / "mlruns"]
    return {str(f) for area in areas for f in area.rglob("*") if f.is_file()}


def _store_entries(root: Path) -> set[str]:
    return {f"{e.parent.name}/{e.name}" for e in (root / ".curate" / "store").glob("*/*")}


def _recorded(run) -> set[str]:
    return {name for k, v in run.data.tags.items() if k.startswith("curate.path.") and (name := store_name(v))}


def test_gc_keeps_everything_a_kept_run_needs(make_project):
    project = make_project()
    project.curate("demo-data", "--size", "200")
    first_summary = project.curate("run").stdout
    project.set_params({"training": {"lr": 0.003}})  # run 2 trains other checkpoints: run 1's rounds are its own
    project.curate("run")
    # what a run killed mid-round after run 2 leaves: its in-round checkpoint, which a resume continues from
    partial = project.root / ".curate" / "store" / "train" / ".inprogress-killed.model"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"w" * 1000)

    client = MlflowClient(tracking_uri=project.tracking_uri)
    exp = client.get_experiment_by_name("curate").experiment_id
    new, old = client.search_runs([exp], "tags.`curate.kind` = 'parent'", order_by=["attributes.start_time DESC"])
    rounds = {p.info.run_id: client.search_runs([exp], f"tags.mlflow.parentRunId = '{p.info.run_id}' and "
                                                       "tags.`curate.kind` = 'round'") for p in (new, old)}
    old_models = {r.data.tags["curate.model_uri"].removeprefix("models:/") for r in rounds[old.info.run_id]}
    only_old = _recorded(old) - _recorded(new)
    assert any(name.startswith("train/") for name in only_old)

    # the bytes each run added: in its summary and on its MLflow run, one figure per area adding up
    line = next(x for x in first_summary.splitlines() if x.strip().startswith("disk added"))
    size = r"[\d.]+ k?M?B"
    assert re.search(rf"store {size}, data/ {size}, DVC cache {size}, DVC remote {size}, MLflow artifacts {size}", line)
    for run in (old, new):
        m = run.data.metrics
        areas = ("store", "workspace", "dvc_cache", "dvc_remote", "mlflow_artifacts")
        assert m["disk.added.all"] == sum(m[f"disk.added.{a}"] for a in areas)
        assert m["disk.added.store"] > 0 and m["disk.added.dvc_remote"] > 0
        # data/ hard-links the store's files: it adds only its own small files; the DVC cache holds a copy
        # of its own of what is published (never the optimizer state), so at most the store's bytes
        assert m["disk.added.workspace"] < 0.05 * m["disk.added.store"]
        assert 0 < m["disk.added.dvc_cache"] <= m["disk.added.store"]
    assert new.data.metrics["disk.total.all"] > old.data.metrics["disk.total.all"]

    # keeping both runs removes nothing
    before = _files(project.root)
    kept_both = json.loads(project.curate("gc", "--keep-runs", "2", "--json").stdout)
    assert kept_both["remove"] == [] and kept_both["freed"] == 0 and _files(project.root) == before

    # a dry run lists run 1's own entries, models and DVC objects, with sizes, and removes nothing
    dry = json.loads(project.curate("gc", "--keep-runs", "1", "--dry-run", "--json").stdout)
    assert _files(project.root) == before
    by_area = {}
    for item in dry["remove"]:
        by_area.setdefault(item["area"], set()).add(item["name"])
    assert by_area["store"] == only_old
    assert by_area["mlflow-model"] == old_models
    assert by_area["dvc-cache"] and by_area["dvc-cache"] == by_area["dvc-remote"]
    assert dry["bytes"] == sum(item["size"] for item in dry["remove"]) > 0
    text = project.curate("gc", "--keep-runs", "1", "--dry-run").stdout
    assert "would remove" in text and "nothing was removed" in text and "score cache" in text

    # the real run frees them
    removed = project.curate("gc", "--keep-runs", "1").stdout
    assert re.search(r"removed \d+ item\(s\) .*: [\d.]+ [kM]B freed", removed)
    after = _files(project.root)
    assert len(after) < len(before)
    entries = _store_entries(project.root)
    assert not entries & only_old and _recorded(new) <= entries
    assert partial.is_dir() and "train/.inprogress-killed.model" not in {i["name"] for i in dry["remove"]}

    # the kept run: verify, checkpoint, export, DVC in sync, and a resume that recomputes nothing
    verify = json.loads(project.curate("audit", "verify", "--json").stdout)
    assert verify["run_id"] == new.info.run_id and not verify["problems"]
    last_round = max(rounds[new.info.run_id], key=lambda r: int(r.data.tags["curate.round"]))
    audit = json.loads(project.curate("audit", "checkpoint", last_round.data.tags["curate.model_uri"], "--json").stdout)
    assert audit["parent_run_id"] == new.info.run_id and audit["rows"]
    exported = json.loads(project.curate("export", "--out", "exp", "--json").stdout)
    assert exported["parent_run_id"] == new.info.run_id and exported["rows"] > 0
    assert "in sync" in project.dvc("status", "-c").stdout
    # the run that is not kept keeps its MLflow record: its checkpoint's rows are still answered
    old_round = next(iter(rounds[old.info.run_id]))
    assert json.loads(project.curate("audit", "checkpoint", old_round.info.run_id, "--json").stdout)["rows"]
    assert client.get_run(old_round.info.run_id).data.tags.get("curate.gc.model_removed")

    resumed = project.curate("resume").stdout
    assert "status clean" in resumed
    assert _store_entries(project.root) == entries, "the resume recomputed a stage gc should have kept"
    assert "disk added         store 0 B" in resumed
