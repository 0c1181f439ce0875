"""An empty pool, or a selection budget of no row, is refused before the base model is built: from the
raw files in `curate run`'s pre-check, and from the exact row counts after ingest and the holdout."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.ingest import ingest_path
from curate.ingest.formats import count_records, discover
from curate.pool_checks import EmptyPool, check_pool, check_raw
from curate.selection.iterit import BudgetTooSmall


def _records(n: int) -> str:
    return "".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(n))


def test_raw_files_that_are_all_empty_are_refused_naming_each(tmp_path):
    (tmp_path / "train (1).jsonl").write_text("")
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    (tmp_path / "list.json").write_text("[]")
    pq.write_table(pa.table({"instruction": pa.array([], pa.string()), "output": pa.array([], pa.string())}),
                   tmp_path / "none.parquet")
    with pytest.raises(EmptyPool) as error:
        check_raw("data/raw", discover(tmp_path), 0.1)
    message = str(error.value)
    for name in ("train (1).jsonl", "blank.jsonl", "list.json", "none.parquet"):
        assert f"{name} (0 records)" in message
    assert "put instruction records there" in message and "\n" not in message


def test_no_raw_file_at_all_is_refused(tmp_path):
    with pytest.raises(EmptyPool, match="data/raw is empty: put instruction records there"):
        check_raw("data/raw", [], 0.1)


def test_a_ratio_that_gives_no_row_even_from_every_raw_record_is_refused(tmp_path):
    (tmp_path / "a.jsonl").write_text(_records(150))
    (tmp_path / "b.json").write_text(json.dumps([{"instruction": "q", "output": "a"}] * 50))
    with pytest.raises(BudgetTooSmall, match=r"floor\(0.0001 x 200\) = 0 .* at least 0.005"):
        check_raw("data/raw", discover(tmp_path), 0.0001)
    check_raw("data/raw", discover(tmp_path), 0.005)  # K = 1 at most: passes (the flow checks the exact pool)
    check_raw("data/raw", discover(tmp_path), None)  # strategy full: no budget
    check_raw("data/raw", discover(tmp_path), 3)  # a count of rows per round


def test_records_are_counted_only_as_far_as_the_check_needs(tmp_path):
    (tmp_path / "a.jsonl").write_text(_records(1000))
    [source] = discover(tmp_path)
    assert count_records(source, 10) == 10 and count_records(source, 5000) == 1000


def test_a_pool_emptied_by_the_quarantine_names_each_file_its_counts_and_the_reasons(tmp_path):
    (tmp_path / "train (1).jsonl").write_text(json.dumps({"instruction": "q", "output": ""}) + "\n" + "{oops\n")
    (tmp_path / "b.jsonl").write_text("")
    stats = ingest_path(tmp_path).stats
    with pytest.raises(EmptyPool) as error:
        check_pool("data/raw", stats, {"ingest": 0}, "store/ingest/quarantine.parquet", None)
    message = str(error.value)
    assert message.startswith("the pool is empty: no row is left after ingest")
    assert "train (1).jsonl: 0 rows of 2 records (2 quarantined)" in message and "b.jsonl: 0 rows of 0 records" in message
    assert "1 empty_field, 1 invalid_json" in message and "store/ingest/quarantine.parquet" in message
    assert "\n" not in message


def test_a_pool_emptied_by_the_holdout_says_how_to_keep_rows():
    stats = {"by_source": {"a.jsonl": {"rows_in": 1, "rows_ok": 1, "quarantined": 0}}, "by_reason": {}}
    with pytest.raises(EmptyPool, match=r"after holdout \(rows left: ingest 1, dedup 1, holdout 0\).*evaluation.holdout"):
        check_pool("data/raw", stats, {"ingest": 1, "dedup": 1, "holdout": 0}, "q.parquet", 0.5)


def test_the_budget_is_checked_on_the_pool_the_rounds_select_from():
    stats = {"by_source": {}, "by_reason": {}}
    with pytest.raises(BudgetTooSmall, match=r"floor\(0.01 x 40\) = 0 .* the pool of 40 rows .* at least 0.025"):
        check_pool("data/raw", stats, {"ingest": 200, "dedup": 40, "holdout": 40}, "q.parquet", 0.01)
    check_pool("data/raw", stats, {"ingest": 200, "dedup": 40, "holdout": 40}, "q.parquet", 0.025)
