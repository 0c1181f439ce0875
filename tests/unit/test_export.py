import json

import pyarrow.parquet as pq
import pytest

from curate.artifacts import digest
from curate.export import training_records, write_export

ROWS = {f"r{i}": {"row_id": f"r{i}", "system": "", "context": [], "instruction": f"q{i}", "input": "", "response": f"a{i}"}
        for i in range(3)}
SELECTIONS = [[{"row_id": "r1", "round": 0, "rank": 1, "reason": "b"}, {"row_id": "r0", "round": 0, "rank": 0, "reason": "a"}],
              [{"row_id": "r0", "round": 1, "rank": 0, "reason": "c"}]]


def test_records_follow_training_order_and_carry_messages():
    recs = training_records(SELECTIONS, ROWS, "sys")
    assert [(r["round"], r["row_id"]) for r in recs] == [(0, "r0"), (0, "r1"), (1, "r0")]
    assert recs[0]["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "q0"},
                                   {"role": "assistant", "content": "a0"}]
    assert recs[0]["output"] == "a0"


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_write_export_with_manifest(tmp_path, fmt):
    recs = training_records(SELECTIONS, ROWS, None)
    m = write_export(recs, tmp_path, fmt, {"round": 1})
    target = tmp_path / m["file"]
    assert m["rows"] == 3 and m["digest"] == digest(target)
    assert json.loads((tmp_path / "manifest.json").read_text())["digest"] == m["digest"]
    if fmt == "jsonl":
        assert len(target.read_text().splitlines()) == 3
    elif fmt == "parquet":
        assert pq.read_table(target).num_rows == 3
    else:
        import datasets
        assert datasets.load_from_disk(str(target)).num_rows == 3
    with pytest.raises(ValueError):
        write_export(recs, tmp_path, "csv", {})
