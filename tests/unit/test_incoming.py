"""Incoming raw files: validated first, moved whole, never over an existing file."""
from __future__ import annotations

import json

import pytest

from curate.incoming import take_incoming
from curate.ingest import UnsupportedFormatError


def write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


ROW = {"instruction": "Say hi.", "input": "", "output": "hi"}


def test_ready_files_move_into_the_raw_pool(tmp_path):
    incoming, raw = tmp_path / "incoming", tmp_path / "raw"
    write(incoming / "a.jsonl", [ROW])
    write(incoming / "b.json", [ROW])
    write(incoming / ".hidden.jsonl", [ROW])
    write(incoming / "c.jsonl.part", [ROW])  # still being written
    moved = take_incoming(incoming, raw, today="2026-11-23")
    assert [m.name for m in moved] == ["2026-11-23-a.jsonl", "2026-11-23-b.json"]
    assert all(m.parent == raw / "incoming" and m.exists() for m in moved)
    assert sorted(p.name for p in incoming.iterdir()) == [".hidden.jsonl", "c.jsonl.part"]
    # a second file of the same name the same day never overwrites the first
    write(incoming / "a.jsonl", [ROW, ROW])
    (again,) = take_incoming(incoming, raw, today="2026-11-23")
    assert again.name == "2026-11-23-2-a.jsonl" and len(moved[0].read_text().splitlines()) == 1
    assert take_incoming(incoming, raw) == [] and take_incoming(tmp_path / "missing", raw) == []


def test_a_bad_file_stops_before_anything_moves(tmp_path):
    incoming, raw = tmp_path / "incoming", tmp_path / "raw"
    write(incoming / "a.jsonl", [ROW])
    (incoming / "b.csv").write_text("instruction,output\nx,y\n")
    with pytest.raises(UnsupportedFormatError, match="b.csv"):
        take_incoming(incoming, raw)
    assert sorted(p.name for p in incoming.iterdir()) == ["a.jsonl", "b.csv"]
    assert not raw.exists()
