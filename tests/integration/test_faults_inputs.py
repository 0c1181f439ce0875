"""Ordinary mistakes and hostile inputs, end to end with the real CLI, Prefect, MLflow and DVC.

One run whose raw files have names MLflow refuses as keys (`train (1).jsonl`, a leading `-`, `#`, `&`,
`=`, unicode) and hold JSON nested far deeper than the parser's recursion limit, with held-out files
`q&a=1.jsonl` and one of the same name in a sub-directory: it finishes, quarantines the deep records
with their reason, and MLflow holds every number under a valid key with the original names kept. Then
the refusals that come before any compute (or, for a pool ingest empties, before the base model).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import mlflow
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEEP = "[" * 100_000 + "]" * 100_000  # valid JSON; Python's parser raised RecursionError on it
TRAIN, COPIES, LIST = "train (1).jsonl", "-données #2&b=c.jsonl", "x=y #3.json"


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _odd_named_raw(raw: Path) -> list[str]:
    """The demo pool as `train (1).jsonl` with a too deep line at position 50, a file holding copies of
    three of its rows (removed by dedup from `train (1).jsonl`), and a JSON list with a too deep element.
    Returns the copied lines."""
    pool = _lines(raw / "pool.jsonl")
    (raw / "pool.jsonl").unlink()
    (raw / TRAIN).write_text("\n".join(pool[:50] + [DEEP] + pool[50:]) + "\n")
    (raw / COPIES).write_text("\n".join(pool[10:13]) + "\n")
    (raw / LIST).write_text(f"[{pool[0]}, {DEEP}, {pool[1]}]")
    return pool[10:13]


def _odd_named_eval(eval_dir: Path) -> str:
    """`q&a=1.jsonl`, and a set of the same file name as a top-level one, in eval/sub/. Returns that name."""
    first, second = sorted(eval_dir.glob("*.jsonl"))[:2]
    (eval_dir / "q&a=1.jsonl").write_text("\n".join(_lines(first)[:15]) + "\n")
    (eval_dir / "sub").mkdir()
    (eval_dir / "sub" / first.name).write_text("\n".join(_lines(second)[:15]) + "\n")
    return first.stem


def test_odd_file_names_and_too_deep_records_finish_the_run(make_project):
    project = make_project()
    project.curate("demo-data", "--size", "200")
    raw = project.root / "data" / "raw"
    copied = _odd_named_raw(raw)
    skill = _odd_named_eval(raw / "eval")
    project.dvc("commit", "-f", "data.dvc")

    project.curate("run")  # used to fail at its last stage (record) with MlflowException

    quarantine = pq.read_table(project.root / "data" / "ingest" / "quarantine.parquet").to_pylist()
    deep = sorted((q["source"], q["position"]) for q in quarantine if q["reason"].startswith("too_deep: nested deeper"))
    assert deep == [(TRAIN, 50), (LIST, 1)]
    rows = pq.read_table(project.root / "data" / "ingest" / "rows.parquet", columns=["source"])["source"].to_pylist()
    assert {TRAIN, COPIES, LIST} <= set(rows)
    metrics = json.loads((project.root / "data" / "eval" / "base" / "metrics.json").read_text())
    assert {"q&a=1", skill, f"sub/{skill}"} <= set(metrics["sets"])  # the sub-directory's set is its own

    client = MlflowClient(tracking_uri=project.tracking_uri)
    exp = client.get_experiment_by_name("curate")
    [parent] = client.search_runs([exp.experiment_id], "tags.`curate.kind` = 'parent'")
    mlflow.set_tracking_uri(project.tracking_uri)
    renamed = mlflow.artifacts.load_dict(f"{parent.info.artifact_uri}/renamed_keys.json")
    key = {original: k for k, original in renamed.items() if k.startswith(("ingest.by_source.", "eval.base."))}
    assert {TRAIN, COPIES, LIST, "q&a=1", f"sub/{skill}"} <= set(key)
    quarantined = Counter(q["source"] for q in quarantine)  # the demo pool's own bad rows, and the deep ones
    assert parent.data.metrics[f"{key[TRAIN]}.quarantined"] == quarantined[TRAIN] >= 1
    assert parent.data.metrics[f"{key[LIST]}.quarantined"] == quarantined[LIST] == 1
    assert parent.data.metrics[f"{key[COPIES]}.rows_ok"] == 3
    assert f"{key['q&a=1']}.loss" in parent.data.metrics and f"eval.base.{skill}.loss" in parent.data.metrics

    duplicate = json.loads(copied[0])  # its copy in train (1).jsonl was removed by dedup: audit names that file
    row_id = next(r["row_id"] for r in pq.read_table(project.root / "data" / "ingest" / "rows.parquet").to_pylist()
                  if r["source"] == COPIES and r["instruction"] == duplicate["instruction"])
    assert f"{TRAIN}#" in project.curate("audit", "row", row_id).stdout
    assert "up to date" in project.dvc("status").stdout


def _refused(project, *args: str) -> str:
    proc = project.curate(*args, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr  # the error (+ the key line of a params error)
    return proc.stderr


def test_bad_pools_and_params_are_refused_before_the_base_model(make_project):
    project = make_project()
    raw = project.root / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / TRAIN).write_text("")
    assert f"{TRAIN} (0 records)" in _refused(project, "run")

    (raw / TRAIN).write_text("".join(json.dumps({"instruction": f"Say {i}.", "output": f"{i}"}) + "\n"
                                     for i in range(200)))
    assert "at least 0.005" in _refused(project, "run", "--set", "selection.ratio=0.0001")
    assert "selection.ratio: Input should be a finite number" in _refused(project, "run", "--set", "selection.ratio=.inf")
    (project.root / "params" / "empty.yaml").write_text("")
    assert "empty.yaml holds nothing" in _refused(project, "run", "--params", "params/empty.yaml")
    (raw / "deep.json").write_text(DEEP)
    stderr = _refused(project, "run")
    assert "deep.json" in stderr and "nested deeper" in stderr and "remove it" in stderr
    (raw / "deep.json").unlink()
    assert not (project.root / ".curate" / "store").exists()  # nothing above computed anything

    # records that all fail ingest: the flow stops right after ingest, before the base model is built
    (raw / TRAIN).write_text("".join(json.dumps({"instruction": f"Say {i}.", "output": ""}) + "\n" for i in range(20)))
    stderr = _refused(project, "run")
    assert "the pool is empty: no row is left after ingest" in stderr
    assert f"{TRAIN}: 0 rows of 20 records (20 quarantined)" in stderr and "20 empty_field" in stderr
    assert not (project.root / ".curate" / "store" / "base_model").exists()
