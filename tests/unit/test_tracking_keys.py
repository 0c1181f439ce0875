"""MLflow keys made from file and set names: any name a filesystem allows is logged under a valid,
unique key, and the original names are kept on the parent run (renamed_keys.json)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlflow.utils.validation import _validate_metric_name

from curate.tracking.keys import MAX_PART, key_parts, safe_key

HOSTILE = ["train (1).jsonl", "q&a=1", "sub/x.jsonl", "sub.x.jsonl", "-lead #1.jsonl", "données ü.jsonl",
           "a:b.jsonl", "tab\there", "x" * 300 + ".jsonl", "x" * 300 + ".json", "..", "a/../b", "train _1_.jsonl"]


def test_every_part_is_a_valid_unique_mlflow_key_part():
    parts = key_parts(HOSTILE)
    assert set(parts) == set(HOSTILE)
    assert len(set(parts.values())) == len(HOSTILE)
    for name, part in parts.items():
        assert len(part) <= MAX_PART
        _validate_metric_name(f"ingest.by_source.{part}.quarantined")


def test_a_valid_name_keeps_its_part_and_a_colliding_renamed_one_is_numbered():
    parts = key_parts(["train (1).jsonl", "train _1_.jsonl", "train _1_ .jsonl"])
    assert parts["train _1_.jsonl"] == "train _1_.jsonl"  # already valid: never renamed for another's sake
    assert parts["train (1).jsonl"] == "train _1_.jsonl-2"
    assert safe_key("sub/x.jsonl") == "sub.x.jsonl"


@given(st.lists(st.text(min_size=1, max_size=260), min_size=1, max_size=8, unique=True))
def test_any_names_give_valid_unique_parts(names):
    parts = key_parts(names)
    assert len(set(parts.values())) == len(names)
    for part in parts.values():
        _validate_metric_name(f"eval.base.{part}.exact_match")


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow
    mlflow.set_tracking_uri(None)


def test_record_logs_file_and_set_names_mlflow_refuses_and_keeps_the_originals(tracking, tmp_path):
    from curate.tracking import mlflow_tracking as mt

    names = ["train (1).jsonl", "q&a=1.jsonl", "-lead #1.jsonl"]
    ingest = {"rows_in": 6, "by_source": {n: {"rows_in": 2, "rows_ok": 1, "quarantined": 1} for n in names}}
    evaluation = {"mean_loss": 1.5, "round": 0, "sets": {"q&a=1": {"loss": 1.25, "n": 3, "exact_match": None},
                                                          "plain": {"loss": 1.75, "n": 3, "exact_match": 0.5}}}
    selection = tmp_path / "selection.parquet"
    pq.write_table(pa.table({"row_id": ["r1"], "source": ["train (1).jsonl"]}), selection)
    round_record = mt.RoundRecord(index=0, params={"round": 0}, selection_path=selection, selection_digest="d" * 40,
                                  checkpoint_dir=tmp_path / "none", checkpoint_digest="c", train_log_path=None,
                                  eval_metrics=evaluation)
    out = mt.record(experiment="keys", artifact_root=(tmp_path / "artifacts").as_uri(), run_name="t", tags={},
                    params={"raw": {"dir": "data/raw (1)"}}, metrics={"ingest": ingest}, artifacts={},
                    stages={"ingest": ingest}, rounds=[round_record], base_eval=evaluation, log_models=False)

    client = tracking.tracking.MlflowClient()
    parent = client.get_run(out["parent_run_id"])
    renamed = tracking.artifacts.load_dict(f"{parent.info.artifact_uri}/{mt.RENAMED_ARTIFACT}")
    assert mt.TAG_RENAMED in parent.data.tags
    for name in names:  # every file's numbers are in MLflow, under a key that names it back
        key = next(k for k, original in renamed.items() if original == name and k.startswith("ingest.by_source."))
        assert parent.data.metrics[f"{key}.quarantined"] == 1
    set_key = next(k for k, original in renamed.items() if original == "q&a=1" and k.startswith("eval.base."))
    assert parent.data.metrics[f"{set_key}.loss"] == 1.25 and parent.data.metrics["eval.base.plain.loss"] == 1.75
    assert parent.data.metrics["eval.base.mean_loss"] == 1.5 and "eval.base.round" not in parent.data.metrics
    round_run = client.get_run(out["rounds"][0]["run_id"])
    round_key = next(k for k, original in renamed.items() if original == "q&a=1" and k.startswith("eval.")
                     and not k.startswith("eval.base."))
    assert round_run.data.metrics[f"{round_key}.loss"] == 1.25
