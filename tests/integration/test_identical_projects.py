"""Content digests are content: two fresh projects given the same data and parameters publish
byte-identical artifacts from ingest to the last round, except the files that record timings, which
are listed here and are left out of every digest (curate/artifacts.py `TIMINGS`). The two projects share
one Prefect result storage, as they would when a user sets PREFECT_RESULTS_LOCAL_STORAGE_PATH for the
machine: the second still computes every stage in its own store (Prefect's cache key holds the project)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from curate.artifacts import TIMINGS

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_projects_publish_identical_bytes(make_project, tmp_path):
    runs, published = [], []
    shared_results = tmp_path / "prefect-results"
    for name in ("a", "b"):
        project = make_project(name)
        project.env["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(shared_results)
        project.set_params({"selection": {"rounds": 2}})
        project.curate("demo-data", "--size", "200")
        runs.append(json.loads(project.curate("run", "--json").stdout))
        published.append(_files(project.root / "data"))

    a, b = published
    assert a.keys() == b.keys()
    timing = sorted(k for k in a if Path(k).name == TIMINGS)
    assert timing, "the stages record their timings in timings.json files"
    differ = sorted(k for k in a if a[k] != b[k] and Path(k).name != TIMINGS)
    assert differ == [], differ
    # every stage output (timings left out of the digests) and every checkpoint has the same digest
    digests = [{(c["stage"], c["round"]): c["digest"] for c in run["stages"] if c["stage"] != "record"} for run in runs]
    assert digests[0] == digests[1]
    assert runs[0]["artifacts"] == runs[1]["artifacts"]
    # b found none of a's cached results: every stage executed, in b's own store
    assert any(shared_results.iterdir())
    assert all(c["executed"] for c in runs[1]["stages"]), [c for c in runs[1]["stages"] if not c["executed"]]
    parent = MlflowClient(tracking_uri=project.tracking_uri).get_run(runs[1]["mlflow_parent_run_id"])
    assert parent.info.run_id != runs[0]["mlflow_parent_run_id"]  # recorded in b's own MLflow
