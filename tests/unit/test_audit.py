"""`curate audit` (curate/audit.py) on hand-built lineage: two runs written by the recorder itself
(curate/tracking/mlflow_tracking.py `record`) into a real MLflow on SQLite, with a few rows whose
fate is known by construction; `verify` on a run whose store entries are sealed, damaged or gone."""
from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate import audit
from curate.errors import UsageError
from curate.schema import QUARANTINE, REMOVED, SELECTION
from curate.tracking import mlflow_tracking as mt
from curate.training.trainer import LINEAGE_SCHEMA

# Run A trains r1, r2 (round 0) then r3, r6, r7, r8 (round 1). Run B trains r1, r4 (round 0) then r5
# (round 1); in B, dedup removed r2 (a copy of r1), scoring quarantined r7, semantic dedup removed r8,
# r3 stayed in the pool unselected and r6 is gone from the pool. B's round 0 trained with online weights.
RUN_A = {"pool": ["r1", "r2", "r3", "r6", "r7", "r8"], "rounds": [["r1", "r2"], ["r3", "r6", "r7", "r8"]]}
RUN_B = {"pool": ["r1", "r3", "r4", "r5"], "rounds": [["r1", "r4"], ["r5"]],
         "dedup": [("r2", "exact", "r1")], "semdedup": [("r8", "semantic", "r5")],
         "score": [("r7", "nan_score: the response is empty within scoring.max_length")],
         "ingest": [(None, "invalid_json: line 3")],
         "weights": [("r1", 1, 0.5), ("r1", 2, 0.25), ("r4", 1, 0.0)]}


def _selection(path: Path, round_index: int, rows: list[str]) -> Path:
    pq.write_table(pa.Table.from_pylist(
        [{"row_id": r, "round": round_index, "rank": k, "ifd": 0.5 + k / 10, "diversity": None, "score": 0.5 + k / 10,
          "strategy": "iterit", "reason": f"rank {k} by ifd {0.5 + k / 10:.4f}"} for k, r in enumerate(rows)],
        schema=SELECTION), path)
    return path


def _removed(path: Path, records: list[tuple[str, str, str]]) -> Path:
    pq.write_table(pa.Table.from_pylist(
        [{"row_id": r, "source": "pool.jsonl", "position": i, "reason": why, "duplicate_of": of, "similarity": 1.0}
         for i, (r, why, of) in enumerate(records)], schema=REMOVED), path)
    return path


def _quarantine(path: Path, stage: str, records: list[tuple[str | None, str]]) -> Path:
    pq.write_table(pa.Table.from_pylist(
        [{"source": "pool.jsonl", "position": i, "stage": stage, "reason": why, "row_id": r, "raw": "{}"}
         for i, (r, why) in enumerate(records)], schema=QUARANTINE), path)
    return path


def _record(root: Path, name: str, spec: dict) -> dict:
    """One curate run's lineage, written by the recorder (no checkpoints logged: `log_models` off)."""
    d = root / name
    (d / "semdedup").mkdir(parents=True)
    pq.write_table(pa.table({"row_id": spec["pool"]}), d / "semdedup" / "rows.parquet")
    for part in ("ingest", "score", "dedup"):
        (d / part).mkdir()
    artifacts = {
        "quarantine": _quarantine(d / "ingest" / "quarantine.parquet", "ingest", spec.get("ingest", [])),
        "quarantine-score": _quarantine(d / "score" / "quarantine.parquet", "score", spec.get("score", [])),
        "dedup": _removed(d / "dedup" / "removed.parquet", spec.get("dedup", [])),
        "semdedup": _removed(d / "semdedup" / "removed.parquet", spec.get("semdedup", [])),
    }
    rounds = []
    for i, rows in enumerate(spec["rounds"]):
        (d / f"round{i}").mkdir()
        lineage = None
        if i == 0 and spec.get("weights"):
            lineage = d / "round0" / "online_weights.parquet"
            pq.write_table(pa.Table.from_pylist([{"row_id": r, "step": s, "weight": w, "score": 0.0}
                                                 for r, s, w in spec["weights"]], schema=LINEAGE_SCHEMA), lineage)
        rounds.append(mt.RoundRecord(index=i, params={"round": i}, checkpoint_dir=d / f"round{i}",
                                     selection_path=_selection(d / f"round{i}" / "selection.parquet", i, rows),
                                     selection_digest=f"{name}-subset-{i}", checkpoint_digest=f"{name}-model-{i}",
                                     train_log_path=None, lineage_path=lineage))
    return mt.record(experiment="curate", artifact_root=(root / "mlruns").as_uri(), run_name=name,
                     tags={"curate.path.semdedup": str(d / "semdedup")}, params={"selection": {"strategy": "iterit"}},
                     metrics={}, artifacts=artifacts, stages={}, rounds=rounds, base_eval={}, log_models=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(lineage of run A, lineage of run B, their directory) in a fresh SQLite MLflow."""
    root = tmp_path_factory.mktemp("audit")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mlflow.set_tracking_uri(uri)
        try:
            yield _record(root, "a", RUN_A), _record(root, "b", RUN_B), root
        finally:
            mlflow.set_tracking_uri(None)


def test_diff_names_the_rows_that_entered_and_left_and_why(runs):
    a, b, _ = runs
    d = audit.diff(a["parent_run_id"], b["parent_run_id"])
    assert d["kept"] == 1  # r1 trained in both
    assert d["entered"] == [{"row_id": "r4", "round": 0, "reason": "rank 1 by ifd 0.6000"},
                            {"row_id": "r5", "round": 1, "reason": "rank 0 by ifd 0.5000"}]
    assert d["left"] == [
        {"row_id": "r2", "reason": "removed at dedup: exact"},
        {"row_id": "r3", "reason": "in the pool but not selected"},
        {"row_id": "r6", "reason": "not in the pool"},
        {"row_id": "r7", "reason": "removed at score: nan_score: the response is empty within scoring.max_length"},
        {"row_id": "r8", "reason": "removed at semantic dedup: semantic"},
    ]
    back = audit.diff(b["parent_run_id"], a["parent_run_id"])  # the other way round: the roles swap
    assert [e["row_id"] for e in back["entered"]] == ["r2", "r3", "r6", "r7", "r8"]
    assert back["left"] == [{"row_id": "r4", "reason": "not in the pool"}, {"row_id": "r5", "reason": "not in the pool"}]
    assert audit.diff(a["parent_run_id"], a["parent_run_id"]) | {"run_b": None} == {
        "kind": "diff", "run_a": a["parent_run_id"], "run_b": None, "kept": 6, "entered": [], "left": []}


def test_diff_says_when_run_bs_pool_is_gone(runs, tmp_path):
    a, b, root = runs
    pool = root / "b" / "semdedup" / "rows.parquet"
    pool.rename(tmp_path / "rows.parquet")
    try:
        left = {x["row_id"]: x["reason"] for x in audit.diff(a["parent_run_id"], b["parent_run_id"])["left"]}
    finally:
        (tmp_path / "rows.parquet").rename(pool)
    assert left["r2"] == "removed at dedup: exact"  # the removal records are MLflow's own artifacts
    assert left["r3"] == left["r6"] == ("not selected (run B's pool artifact is gone: cannot tell whether it was in "
                                        "the pool)")


def test_checkpoint_lists_the_rows_of_its_round_and_the_earlier_ones(runs):
    a, _, _ = runs
    round0, round1 = (r["run_id"] for r in a["rounds"])
    first = audit.checkpoint(round0)
    assert (first["round"], first["run_id"], first["parent_run_id"]) == (0, round0, a["parent_run_id"])
    assert [(r["round"], r["rank"], r["row_id"]) for r in first["rows"]] == [(0, 0, "r1"), (0, 1, "r2")]
    assert first["distinct_rows"] == 2 and "contributing_rows" not in first
    last = audit.checkpoint(round1)
    assert last["round"] == 1 and last["run_id"] == round1
    assert [r["row_id"] for r in last["rows"]] == ["r1", "r2", "r3", "r6", "r7", "r8"]
    assert [r["reason"] for r in last["rows"][2:]] == [f"rank {k} by ifd {0.5 + k / 10:.4f}" for k in range(4)]
    whole = audit.checkpoint(a["parent_run_id"])  # a parent run: its last checkpoint
    assert (whole["round"], whole["run_id"], whole["rows"]) == (1, round1, last["rows"])


def test_checkpoint_counts_what_the_online_weights_say(runs):
    _, b, _ = runs
    c = audit.checkpoint(b["rounds"][0]["run_id"])
    by_row = {r["row_id"]: (r["steps"], r["total_weight"]) for r in c["rows"]}
    assert by_row == {"r1": (2, 0.75), "r4": (1, 0.0)}
    assert c["contributing_rows"] == 1 and c["total_weight"] == 0.75


def test_checkpoint_refuses_a_run_that_is_not_curates(runs):
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("curate").experiment_id) as other:
        pass
    with pytest.raises(UsageError, match="is not a checkpoint of `curate run`"):
        audit.checkpoint(other.info.run_id)


def test_row_lists_every_checkpoint_it_trained_and_every_removal(runs):
    a, b, _ = runs
    r1 = audit.row("r1")
    assert sorted((t["parent_run_id"], t["round"], t["rank"]) for t in r1["trained"]) == sorted(
        [(a["parent_run_id"], 0, 0), (b["parent_run_id"], 0, 0)])
    assert {t["round_run_id"] for t in r1["trained"]} == {a["rounds"][0]["run_id"], b["rounds"][0]["run_id"]}
    assert r1["removed"] == []
    r2 = audit.row("r2")
    assert [(t["parent_run_id"], t["round"]) for t in r2["trained"]] == [(a["parent_run_id"], 0)]
    assert r2["removed"] == [{"parent_run_id": b["parent_run_id"], "stage": "dedup", "reason": "exact",
                              "duplicate_of": "r1", "source": "pool.jsonl", "position": 0}]
    r7 = audit.row("r7")
    assert [(x["stage"], x["reason"]) for x in r7["removed"]] == [
        ("score", "nan_score: the response is empty within scoring.max_length")]
    assert [(x["stage"], x["duplicate_of"]) for x in audit.row("r8")["removed"]] == [("semantic dedup", "r5")]
    assert audit.row("r4")["trained"][0]["parent_run_id"] == b["parent_run_id"]
    with pytest.raises(UsageError, match="row nowhere is in no recorded run"):
        audit.row("nowhere")


def test_render_says_what_the_results_hold(runs):
    a, b, _ = runs
    text = audit.render(audit.diff(a["parent_run_id"], b["parent_run_id"]))
    assert "1 rows trained both, 2 entered, 5 left" in text and "  - r2: removed at dedup: exact" in text
    text = audit.render(audit.row("r2"))
    assert "trained 1 checkpoint round(s)" in text and "removed at dedup" in text and "duplicate of r1" in text
    text = audit.render(audit.checkpoint(b["rounds"][0]["run_id"]))
    assert "1 of them contributed to a step (online policy), total loss weight 0.75" in text


def test_verify_names_a_damaged_entry_and_says_when_one_is_gone(runs):
    """verify on a run whose tags name three store entries (sealed as the stages write them): one sound, one
    with a flipped byte, one removed by gc whose published copy is checked instead; the project is a real DVC
    repo with its raw pool in data.dvc."""
    import os

    from curate.artifacts import digest, materialize
    from curate.seal import sealed_entry
    from curate.versioning import dvc

    _, _, root = runs
    project = root / "verified"
    (project / "data" / "raw").mkdir(parents=True)
    (project / "data" / "raw" / "pool.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    dvc.ensure_repo(project, ".curate/dvc-remote")
    dvc.add_raw(project)
    entries = {}
    for name in ("sound", "damaged", "gone"):
        entries[name] = project / ".curate" / "store" / name / "key"
        with sealed_entry(entries[name]) as tmp:
            tmp.mkdir()
            (tmp / "rows.parquet").write_bytes(name.encode() * 40)
    materialize(entries["gone"], project / "data" / "gone")
    tags = {"curate.project": str(project), "curate.workspace.gone": "data/gone",
            "curate.workspace_digest.gone": digest(project / "data" / "gone")}
    for name, entry in entries.items():
        tags.update({f"curate.digest.{name}": digest(entry), f"curate.path.{name}": str(entry)})
    shutil.rmtree(entries["gone"])
    f = entries["damaged"] / "rows.parquet"
    os.chmod(f, 0o644)
    f.write_bytes(b"x" + f.read_bytes()[1:])
    run = mt.record(experiment="verified", artifact_root=(root / "mlruns").as_uri(), run_name="v", tags=tags,
                    params={"selection": {"strategy": "iterit"}}, metrics={}, artifacts={}, stages={}, rounds=[],
                    base_eval={}, log_models=False)
    result = audit.verify(run["parent_run_id"])
    by = {c["artifact"]: c for c in result["checks"] if c["area"] == "run"}
    assert {k: c["status"] for k, c in by.items()} == {"sound": "ok", "damaged": "MISMATCH", "gone": "ok"}
    assert str(f) in by["damaged"]["note"] and "optimizer state" in by["gone"]["note"]
    assert result["store_entries_gone"] == 1
    assert [(c["area"], c["artifact"]) for c in result["problems"]] == [("run", "damaged")]
    assert "1 problem(s); 1 store entries gone" in audit.render(result)
