"""Audit keeps working after the workspace's artifacts are deleted: from MLflow + DVC alone, and
`dvc pull` restores the workspace so that `curate audit verify` passes again (docs/architecture.md §5, §7)."""
from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_audit_after_the_workspace_is_deleted(make_project):
    project = make_project()
    project.curate("demo-data", "--size", "200")
    project.set_params({"selection": {"rounds": 1}})
    project.curate("run")
    subset = pq.read_table(project.root / "data" / "rounds" / "round-0" / "select" / "selection.parquet").to_pylist()
    removed = pq.read_table(project.root / "data" / "dedup" / "removed.parquet").to_pylist()
    before = json.loads(project.curate("audit", "verify", "--json").stdout)
    assert not before["problems"]

    for name in ("ingest", "dedup", "embed", "semdedup", "score", "rounds", "eval", "models"):
        shutil.rmtree(project.root / "data" / name)
    shutil.rmtree(project.root / ".curate" / "store")

    # MLflow alone answers which checkpoints a row trained, which rows trained a checkpoint, why a row was removed
    trained = json.loads(project.curate("audit", "row", subset[0]["row_id"], "--json").stdout)["trained"]
    assert [t["round"] for t in trained] == [0] and trained[0]["model_uri"].startswith("models:/")
    audit = json.loads(project.curate("audit", "checkpoint", trained[0]["model_uri"], "--json").stdout)
    assert {r["row_id"] for r in audit["rows"]} == {s["row_id"] for s in subset}
    row = json.loads(project.curate("audit", "row", removed[0]["row_id"], "--json").stdout)
    assert any(r["stage"] == "dedup" and r["duplicate_of"] == removed[0]["duplicate_of"] for r in row["removed"])

    # the artifacts are gone: verify says so; `dvc pull` from the remote restores them, verify passes again
    missing = project.curate("audit", "verify", "--json", check=False)
    assert missing.returncode == 1 and json.loads(missing.stdout)["problems"]
    project.dvc("pull")
    restored = json.loads(project.curate("audit", "verify", "--json").stdout)
    assert not restored["problems"]

    def recorded(result):  # the artifacts the run recorded (the other checks are the project's copies)
        return [c for c in result["checks"] if c["area"] == "run"]

    assert [c["artifact"] for c in recorded(restored)] == [c["artifact"] for c in recorded(before)]
    assert all(".curate/store" not in c["path"] for c in recorded(restored))  # read from the restored workspace
    assert {c["status"] for c in restored["checks"] if c["area"] == "store"} == {"gone"}  # and said so
    exported = json.loads(project.curate("export", "--format", "jsonl", "--out", "exp", "--json").stdout)
    assert exported["rows"] == len(subset)
