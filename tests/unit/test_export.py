import hashlib
import json
from pathlib import Path

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


COLUMNS = {"row_id", "round", "rank", "reason", "system", "instruction", "input", "output", "messages"}


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sha256_dir(path: Path) -> str:
    """A directory's digest from its files' bytes, by the rule stated in curate/artifacts.py."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + sha256_file(f).encode() + b"\n")
    return h.hexdigest()


def read_back(target: Path, fmt: str) -> tuple[set[str], list[dict]]:
    if fmt == "jsonl":
        records = [json.loads(line) for line in target.read_text().splitlines()]
        return set().union(*(r.keys() for r in records)), records
    if fmt == "parquet":
        table = pq.read_table(target)
        return set(table.column_names), table.to_pylist()
    import datasets

    ds = datasets.load_from_disk(str(target))
    return set(ds.column_names), ds.to_list()


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_write_export_with_manifest(tmp_path, fmt):
    recs = training_records(SELECTIONS, ROWS, "sys")
    m = write_export(recs, tmp_path, fmt, {"round": 1, "parent_run_id": "p"})
    target = tmp_path / m["file"]
    assert m == {"round": 1, "parent_run_id": "p", "format": fmt, "rows": 3, "file": target.name,
                 "digest": sha256_dir(target) if fmt == "hf" else sha256_file(target)}
    assert m["digest"] == digest(target)
    assert json.loads((tmp_path / "manifest.json").read_text()) == m
    columns, back = read_back(target, fmt)
    assert columns == COLUMNS
    assert back == recs  # every field, messages included, in training order
    assert [r["row_id"] for r in back] == ["r0", "r1", "r0"]
    assert back[1]["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "q1"},
                                   {"role": "assistant", "content": "a1"}]
    with pytest.raises(ValueError):
        write_export(recs, tmp_path, "csv", {})
