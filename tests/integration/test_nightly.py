"""Two nights: night 2's file (5% new rows plus a copy of a night-1 row) is dropped into the incoming
directory; the run moves it into the raw pool (a new data.dvc version) and round-0 scoring scores only
the new rows."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_second_night_scores_only_new_rows(make_project):
    project = make_project()
    project.curate("demo-data", "--size", "300")
    project.curate("run")
    night1 = json.loads((project.root / "data" / "score" / "stats.json").read_text())
    assert night1["rows_from_cache"] == 0 and night1["rows_scored"] > 250

    first = json.loads((project.root / "data" / "raw" / "pool.jsonl").read_text().splitlines()[0])
    new = [{"instruction": f"Spell the code word number {i} backwards.", "input": "", "output": f"{i} rebmun drow edoc"}
           for i in range(15)]
    tracked = (project.root / "data.dvc").read_text()
    incoming = project.root / "data" / "incoming"
    incoming.mkdir(parents=True)
    (incoming / "night2.jsonl").write_text("\n".join(json.dumps(r) for r in new + [first]) + "\n")
    out = project.curate("run").stdout
    assert list(incoming.iterdir()) == []
    (arrived,) = (project.root / "data" / "raw" / "incoming").iterdir()
    assert arrived.name.endswith("-night2.jsonl")
    assert (project.root / "data.dvc").read_text() != tracked  # a new version of the raw pool
    night2 = json.loads((project.root / "data" / "score" / "stats.json").read_text())
    assert night2["rows_scored"] == 15, night2
    assert night2["rows_from_cache"] == night1["rows_scored"]
    # the copy and its night-1 original collapse to one kept row: the night-1 row (dedup is incremental,
    # tests/integration/test_incremental_dedup.py checks the rest)
    kept = pq.read_table(project.root / "data" / "dedup" / "rows.parquet").to_pylist()
    removed = pq.read_table(project.root / "data" / "dedup" / "removed.parquet").to_pylist()
    copy_id = [r["row_id"] for r in kept + removed if r["source"] == f"incoming/{arrived.name}" and r["position"] == 15]
    assert len(copy_id) == 1
    assert sum(r["row_id"] == copy_id[0] for r in kept) == 1
    assert [r["reason"] for r in removed if r["row_id"] == copy_id[0]] == ["exact"]
    assert "status clean" in out  # data.dvc now tracks the new raw version
    assert "vs previous run" in out and "rows in +16" in out, out  # tonight compared with last night
