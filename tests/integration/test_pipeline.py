"""End to end on real Prefect (server), MLflow (SQLite) and DVC (git repo) in a temp project."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import datasets
import mlflow
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from curate.artifacts import TIMINGS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BAD_LINES = [
    "{not json",
    json.dumps({"instruction": "", "output": "x"}),
    json.dumps({"instruction": "Say hi.", "output": 42}),
    json.dumps([1, 2, 3]),
    json.dumps({"instruction": "Say hi."}),
]


def _write_extra(project, n_lines: int = 50) -> None:
    """A second raw file of 50 lines, 5 of them bad (10%)."""
    lines = [json.dumps({"instruction": f"Repeat the token t{i}.", "input": "", "output": f"t{i}"}) for i in range(n_lines)]
    lines[::10] = BAD_LINES
    path = project.root / "data" / "raw" / "extra.jsonl"
    path.write_text("\n".join(lines) + "\n")


STAGES = ("ingest", "dedup", "embed", "semdedup", "holdout", "base_model", "score", "rescore", "select", "train", "evaluate", "record")
ALWAYS_RUN = ("version", "disk usage")  # bookkeeping tasks that run every time: DVC commit/push, the disk report
EXPORT_COLUMNS = {"row_id", "round", "rank", "reason", "system", "instruction", "input", "output", "messages"}


def _task_states(api_url: str, flow_run_id: str) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {f"{r.name}": r.state.name for r in runs}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dir_digest(path: Path) -> str:
    """A directory's digest recomputed from its files' bytes (the rule stated in curate/artifacts.py:
    every file but the timings)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name != TIMINGS):
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + _sha256(f).encode() + b"\n")
    return h.hexdigest()


def _assert_all_cached(states: dict[str, str]) -> None:
    """Every stage has task runs recorded, and every one of them (but the always-run bookkeeping tasks) was Cached."""
    by = _states_by_stage(states)
    assert len(states) >= len(STAGES) and set(STAGES) <= set(by), by
    executed = {name: s for name, s in by.items() if s != {"Cached"} and name not in ALWAYS_RUN}
    assert not executed, by


def _export(project, fmt: str) -> tuple[dict, Path]:
    out = project.root / f"exp-{fmt}"
    printed = json.loads(project.curate("export", "--format", fmt, "--out", str(out), "--json").stdout)
    manifest = json.loads((out / "manifest.json").read_text())
    assert printed == {**manifest, "kind": "export", "out": str(out)}
    return manifest, out / manifest["file"]


def _flow_run_id(project) -> str:
    client = MlflowClient(tracking_uri=project.tracking_uri)
    exp = client.get_experiment_by_name("curate")
    runs = client.search_runs([exp.experiment_id], "tags.`curate.kind` = 'parent'", order_by=["attributes.start_time DESC"])
    return runs[0].data.tags["prefect.flow_run_id"]


def _states_by_stage(states: dict[str, str]) -> dict[str, set[str]]:
    by: dict[str, set[str]] = {}
    for name, state in states.items():
        by.setdefault(name.rsplit("-", 1)[0], set()).add(state)
    return by


def test_demo_run_rerun_and_param_change(make_project, prefect_api, monkeypatch, tmp_path):
    project = make_project()
    out = project.curate("demo-data", "--size", "400").stdout
    assert "data.dvc" in out
    tracked = (project.root / "data.dvc").read_text()
    project.curate("demo-data", "--size", "400")  # same seed: same bytes, same DVC hash
    assert (project.root / "data.dvc").read_text() == tracked
    _write_extra(project)
    project.dvc("commit", "-f", "data.dvc")

    first = project.curate("run")
    summary = first.stdout
    assert "rows in            450" in summary, summary
    assert "quarantined        " in summary
    # the 5 bad lines of extra.jsonl are quarantined with a reason, and the run completed
    quarantine = pq.read_table(project.root / "data" / "ingest" / "quarantine.parquet").to_pylist()
    extra = [q for q in quarantine if q["source"] == "extra.jsonl"]
    assert len(extra) == 5 and all(q["reason"] for q in extra)

    # DVC: clean after the run, repro is a no-op, pushed to the local remote
    assert "up to date" in project.dvc("status").stdout
    repro = project.dvc("repro").stdout
    assert "didn't change" in repro or "up to date" in repro, repro
    assert "in sync" in project.dvc("status", "-c").stdout

    # MLflow: a parent run, one nested run per round with its subset dataset (our digest) and model
    monkeypatch.setenv("MLFLOW_TRACKING_URI", project.tracking_uri)
    mlflow.set_tracking_uri(project.tracking_uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name("curate")
    parents = client.search_runs([exp.experiment_id], "tags.`curate.kind` = 'parent'")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags["prefect.flow_run_id"] and parent.data.tags["git_commit"] != "unknown"
    rounds = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.`curate.kind` = 'round'")
    assert sorted(int(r.data.tags["curate.round"]) for r in rounds) == [0, 1]
    for r in rounds:
        inputs = r.inputs.dataset_inputs
        assert len(inputs) == 1
        # the recorded subset digest is the digest of the published selection's bytes, and the logged
        # subset artifact is that very file
        select_dir = project.root / "data" / "rounds" / f"round-{r.data.tags['curate.round']}" / "select"
        assert r.data.tags["curate.subset_digest"] == _dir_digest(select_dir)
        assert inputs[0].dataset.digest == _dir_digest(select_dir)[:36]
        logged = Path(client.download_artifacts(r.info.run_id, "subset/selection.parquet", str(tmp_path)))
        assert _sha256(logged) == _sha256(select_dir / "selection.parquet")
        assert r.data.tags["curate.model_uri"].startswith("models:/")
        assert client.get_metric_history(r.info.run_id, "train_loss")

    # audit: the last checkpoint's rows = the union of both rounds' subsets
    last = max(rounds, key=lambda r: int(r.data.tags["curate.round"]))
    audit = json.loads(project.curate("audit", "checkpoint", last.data.tags["curate.model_uri"], "--json").stdout)
    subsets = [pq.read_table(project.root / "data" / "rounds" / f"round-{i}" / "select" / "selection.parquet") for i in (0, 1)]
    assert audit["distinct_rows"] == len({x for t in subsets for x in t["row_id"].to_pylist()})
    removed = pq.read_table(project.root / "data" / "dedup" / "removed.parquet").to_pylist()
    assert removed, "the demo pool has duplicates"
    row_audit = json.loads(project.curate("audit", "row", removed[0]["row_id"], "--json").stdout)
    assert any(r["stage"] == "dedup" for r in row_audit["removed"])

    # export: the rows that trained the last checkpoint, in training order, with a manifest, in the
    # three formats; the same records in each
    manifest, target = _export(project, "jsonl")
    records = [json.loads(line) for line in target.read_text().splitlines()]
    expected_order = [(i, row_id) for i, t in enumerate(subsets)
                      for row_id, _ in sorted(zip(t["row_id"].to_pylist(), t["rank"].to_pylist()), key=lambda x: x[1])]
    assert [(x["round"], x["row_id"]) for x in records] == expected_order
    assert manifest["rows"] == len(records) == sum(t.num_rows for t in subsets)
    pool = {x["row_id"]: x for x in pq.read_table(project.root / "data" / "semdedup" / "rows.parquet").to_pylist()}
    for x in records:
        assert set(x) == EXPORT_COLUMNS
        assert x["output"] == pool[x["row_id"]]["response"] and x["instruction"] == pool[x["row_id"]]["instruction"]
        assert [m["role"] for m in x["messages"]][-2:] == ["user", "assistant"]
        assert x["messages"][-1]["content"] == x["output"] and x["instruction"] in x["messages"][-2]["content"]
    assert manifest["digest"] == _sha256(target)
    assert manifest["format"] == "jsonl" and manifest["file"] == "train.jsonl"
    assert manifest["parent_run_id"] == parent.info.run_id and manifest["round"] == 1
    assert manifest["model_uri"] == last.data.tags["curate.model_uri"]
    assert manifest["pool_digest"] == parent.data.tags["curate.digest.semdedup"] == _dir_digest(project.root / "data" / "semdedup")
    assert manifest["subset_digests"] == {f"round-{i}": _dir_digest(project.root / "data" / "rounds" / f"round-{i}" / "select")
                                          for i in (0, 1)}
    for fmt in ("parquet", "hf"):
        other, path = _export(project, fmt)
        assert {k: v for k, v in other.items() if k not in ("format", "file", "digest")} == \
            {k: v for k, v in manifest.items() if k not in ("format", "file", "digest")}
        from curate.artifacts import digest
        assert other["digest"] == (_sha256(path) if fmt == "parquet" else digest(path))
        table = pq.read_table(path) if fmt == "parquet" else datasets.load_from_disk(str(path))
        assert set(table.column_names) == EXPORT_COLUMNS, (fmt, table.column_names)
        assert (table.to_pylist() if fmt == "parquet" else table.to_list()) == records, fmt

    # Prefect: a re-run with nothing changed executes no stage
    first_states = _states_by_stage(_task_states(prefect_api, _flow_run_id(project)))
    assert first_states.get("train") == {"Completed"}, first_states
    second = json.loads(project.curate("run", "--json").stdout)
    assert second["dvc"]["clean"]
    _assert_all_cached(_task_states(prefect_api, second["prefect_flow_run_id"]))
    # ... and says so: every stage call of the run, each from the cache, with its output's digest
    stage_calls = second["stages"]
    assert {c["stage"] for c in stage_calls} == {"ingest", "dedup", "embed", "semdedup", "holdout", "base_model",
                                                 "score", "rescore", "select", "train", "evaluate", "record"}
    assert not [c for c in stage_calls if c["executed"]], stage_calls
    assert second["artifacts"]["semdedup"] == _dir_digest(project.root / "data" / "semdedup")
    assert [r["checkpoint_digest"] for r in second["rounds"]] == [c["digest"] for c in stage_calls if c["stage"] == "train"]

    # a tracking-only change (the MLflow experiment) executes no stage before record
    renamed = json.loads(project.curate("run", "--set", "project.experiment=other", "--json").stdout)
    assert [c["stage"] for c in renamed["stages"] if c["executed"]] == ["record"], renamed["stages"]
    assert renamed["mlflow_experiment"] == "other" and renamed["mlflow_parent_run_id"] != second["mlflow_parent_run_id"]

    # change one training parameter: upstream stages are cached, training and everything after re-runs
    project.set_params({"training": {"lr": 0.0005}})
    third = project.curate("run")
    flow_run = [line for line in third.stdout.splitlines() if "Prefect            flow run" in line][0].split()[-1]
    # the summary names what executed: nothing before round 0's train
    executed = next(line for line in third.stdout.splitlines() if line.strip().startswith("stages executed"))
    assert executed.split(None, 2)[2].startswith("train[0], "), executed
    cached = next(line for line in third.stdout.splitlines() if line.strip().startswith("from cache"))
    for name in ("ingest", "dedup", "embed", "semdedup", "holdout", "base_model", "score", "select[0]"):
        assert name in cached.split(None, 2)[2].split(", "), (name, cached)
    states = _states_by_stage(_task_states(prefect_api, flow_run))
    for cached in ("ingest", "dedup", "embed", "base_model", "score"):
        assert states[cached] == {"Cached"}, (cached, states)
    for rerun in ("train", "evaluate", "record"):
        assert "Completed" in states[rerun], (rerun, states)
    assert "up to date" in project.dvc("status").stdout

    # audit diff: the lr change altered rounds >= 1 only through the re-scoring checkpoint; whatever
    # changed is explained row by row
    parents = MlflowClient().search_runs([exp.experiment_id], "tags.`curate.kind` = 'parent'",
                                         order_by=["attributes.start_time ASC"])
    d = json.loads(project.curate("audit", "diff", parents[0].info.run_id, parents[-1].info.run_id, "--json").stdout)
    before = {x for t in subsets for x in t["row_id"].to_pylist()}
    after = {x for i in (0, 1) for x in pq.read_table(
        project.root / "data" / "rounds" / f"round-{i}" / "select" / "selection.parquet")["row_id"].to_pylist()}
    assert d["kept"] == len(before & after) > 0
    assert [x["row_id"] for x in d["entered"]] == sorted(after - before)
    assert [x["row_id"] for x in d["left"]] == sorted(before - after)
    assert all(x["reason"] for x in d["entered"])
    assert all(x["reason"] == "in the pool but not selected" and x["row_id"] in pool for x in d["left"])

    # audit verify: every artifact of the latest run re-hashes to its recorded digest; corrupt one and
    # exactly that one is reported
    clean = json.loads(project.curate("audit", "verify", "--json").stdout)
    assert clean["checked"] >= 10 and clean["problems"] == []
    score = next(c for c in clean["checks"] if c["artifact"] == "score")
    os.chmod(f"{score['path']}/stats.json", 0o644)  # a sealed store entry's files are read-only
    with open(f"{score['path']}/stats.json", "a") as f:
        f.write(" ")
    broken = project.curate("audit", "verify", "--json", check=False)
    assert broken.returncode == 1
    problems = json.loads(broken.stdout)["problems"]
    assert [p["artifact"] for p in problems if p["area"] == "run"] == ["score"]
    # the project's copies name the same file: the published data/score is a hard link of the store's
    assert {p["path"] for p in problems if p["area"] != "run"} == {f"{score['path']}/stats.json"}


def test_unsupported_format_fails_before_any_work(make_project):
    project = make_project()
    raw = project.root / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "pool.jsonl").write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    (raw / "table.csv").write_text("instruction,output\na,b\n")
    proc = project.curate("run", check=False)
    assert proc.returncode == 2
    assert "table.csv" in proc.stderr and "JSON Lines" in proc.stderr
    assert not (project.root / "data" / "ingest").exists()
    assert not (project.root / ".curate" / "store").exists()
