"""Ingest: every supported format, multi-turn normalisation, quarantine of bad records, unsupported
files, directory walking rules and row-id stability."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import curate.ingest as ingest_module
from curate.artifacts import write_parquet
from curate.ingest import UnsupportedFormatError, ingest_path, row_id
from curate.schema import QUARANTINE, ROWS


def _jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _rows(result) -> list[dict]:
    return result.rows.to_pylist()


def _alpaca(i: int) -> dict:
    return {"instruction": f"Question number {i}?", "input": "", "output": f"Answer number {i}."}


def test_alpaca_jsonl_json_list_and_response_alias(tmp_path):
    _jsonl(tmp_path / "a.jsonl", [{"instruction": "Add.", "input": "2 + 2", "output": "4", "skill": "math", "truth": "clean"},
                                  {"instruction": "Say hi.", "response": "Hi!"}])
    (tmp_path / "b.json").write_text(json.dumps([{"instruction": "Name a colour.", "output": "Blue."}]))
    result = ingest_path(tmp_path)
    rows = _rows(result)
    assert result.rows.schema == ROWS and result.quarantine.schema == QUARANTINE
    assert [(r["source"], r["position"]) for r in rows] == [("a.jsonl", 0), ("a.jsonl", 1), ("b.json", 0)]
    assert rows[0] | {"row_id": None} == {
        "row_id": None, "source": "a.jsonl", "position": 0, "system": "", "context": [], "instruction": "Add.",
        "input": "2 + 2", "response": "4", "skill": "math", "truth": "clean",
    }
    assert rows[1]["response"] == "Hi!" and rows[1]["input"] == "" and rows[1]["skill"] is None
    assert result.stats["formats"] == {"a.jsonl": "jsonl:alpaca", "b.json": "json:alpaca"}
    assert (result.stats["rows_in"], result.stats["rows_ok"], result.stats["quarantined"]) == (3, 3, 0)


def test_sharegpt_multi_turn_keeps_earlier_turns_as_context(tmp_path):
    conv = [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Hi."},
        {"from": "gpt", "value": "Hello."},
        {"from": "human", "value": "What is 2 + 2?"},
        {"from": "gpt", "value": "4."},
    ]
    _jsonl(tmp_path / "chat.jsonl", [{"conversations": conv}, {"conversations": conv[1:3]}])
    first, second = _rows(ingest_path(tmp_path))
    assert first["system"] == "Be brief."
    assert first["context"] == [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."}]
    assert (first["instruction"], first["input"], first["response"]) == ("What is 2 + 2?", "", "4.")
    assert (second["system"], second["context"], second["instruction"], second["response"]) == ("", [], "Hi.", "Hello.")


def test_openai_messages_with_content_parts(tmp_path):
    msgs = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Capital of "}, {"type": "text", "text": "France?"}]},
        {"role": "assistant", "content": "Paris."},
    ]
    (tmp_path / "oa.json").write_text(json.dumps([{"messages": msgs}]))
    (row,) = _rows(ingest_path(tmp_path))
    assert (row["system"], row["instruction"], row["response"], row["context"]) == (
        "You are terse.", "Capital of France?", "Paris.", [])


def test_parquet_with_alpaca_columns_and_with_messages(tmp_path):
    pq.write_table(pa.table({"instruction": ["Q1", "Q2"], "input": [None, "x"], "output": ["A1", "A2"]}), tmp_path / "a.parquet")
    messages = [[{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Yes."}]]
    pq.write_table(pa.table({"messages": messages, "skill": ["greet"]}), tmp_path / "m.parquet")
    result = ingest_path(tmp_path)
    rows = _rows(result)
    assert [(r["instruction"], r["input"], r["response"]) for r in rows] == [("Q1", "", "A1"), ("Q2", "x", "A2"), ("Hi?", "", "Yes.")]
    assert rows[2]["skill"] == "greet"
    assert result.stats["formats"] == {"a.parquet": "parquet:alpaca", "m.parquet": "parquet:openai"}


def test_hf_save_to_disk_dataset_and_dataset_dict(tmp_path):
    datasets = pytest.importorskip("datasets")
    raw = tmp_path / "raw"
    datasets.Dataset.from_list([_alpaca(0), _alpaca(1)]).save_to_disk(str(raw / "single"))
    conv = [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}]
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([{"conversations": conv}] * 2),
            "test": datasets.Dataset.from_list([{"conversations": conv[:1]}]),
        }
    ).save_to_disk(str(raw / "splits"))
    result = ingest_path(raw)
    assert result.stats["formats"] == {"single": "hf_dataset:alpaca", "splits": "hf_dataset:sharegpt"}
    assert [(r["source"], r["position"]) for r in _rows(result)] == [("single", 0), ("single", 1), ("splits", 0), ("splits", 1)]
    (bad,) = result.quarantine.to_pylist()
    assert (bad["source"], bad["position"], bad["reason"].split(":")[0]) == ("splits", 2, "bad_conversation")


def test_bad_records_are_quarantined_and_the_rest_ingested(tmp_path):
    good = [json.dumps(_alpaca(i)).encode() for i in range(60)]
    bad = {
        "invalid_json": b'{"instruction": "broken", ',
        "not_an_object": b'["a list", "not an object"]',
        "missing_field": json.dumps({"input": "x", "output": "no instruction"}).encode(),
        "empty_field": json.dumps({"instruction": "Say nothing.", "output": "   "}).encode(),
        "wrong_type": json.dumps({"instruction": "Count.", "output": 3}).encode(),
        "wrong_type_list": json.dumps({"instruction": "List.", "output": ["a", "b"]}).encode(),
        "invalid_utf8": b'{"instruction": "Caf\xe9?", "output": "Yes."}',
        "too_large": json.dumps({"instruction": "Long.", "output": "word " * 400}).encode(),
    }
    lines = good[:20] + list(bad.values()) + good[20:]
    (tmp_path / "pool.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    _jsonl(tmp_path / "sharegpt.jsonl", [
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hey"}]},
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hey"}, {"from": "human", "value": "?"}]},
        {"conversations": [{"from": "tool", "value": "x"}, {"from": "gpt", "value": "y"}]},
    ])
    result = ingest_path(tmp_path, max_bytes=1000)
    stats = result.stats
    assert stats["rows_in"] == 60 + len(bad) + 3
    assert stats["rows_ok"] == 61 and result.rows.num_rows == 61
    assert stats["quarantined"] == len(bad) + 2 == result.quarantine.num_rows
    assert stats["by_reason"] == {
        "invalid_json": 1, "not_an_object": 1, "missing_field": 1, "empty_field": 1, "wrong_type": 2,
        "invalid_utf8": 1, "too_large": 1, "bad_conversation": 2,
    }
    assert stats["by_source"]["pool.jsonl"] == {"rows_in": 68, "rows_ok": 60, "quarantined": 8}
    q = {(r["source"], r["position"]): r for r in result.quarantine.to_pylist()}
    assert [p for s, p in q if s == "pool.jsonl"] == list(range(20, 28))
    # the broken line is kept as read (its newline stripped, its trailing space kept), with the parser's detail:
    # after `{"instruction": "broken", ` (26 characters) a property name was due at character 26
    broken = q[("pool.jsonl", 20)]
    assert broken["raw"] == '{"instruction": "broken", ' and broken["row_id"] is None
    assert broken["reason"] == ("invalid_json: Expecting property name enclosed in double quotes: "
                                "line 1 column 27 (char 26)")
    assert q[("pool.jsonl", 26)]["reason"].startswith("invalid_utf8") and "Caf" in q[("pool.jsonl", 26)]["raw"]
    assert "'output' is int" in q[("pool.jsonl", 24)]["reason"] and "is list" in q[("pool.jsonl", 25)]["reason"]
    assert "instruction" in q[("pool.jsonl", 22)]["reason"]
    too_large = q[("pool.jsonl", 27)]
    assert too_large["row_id"] is not None and len(too_large["raw"]) == 500 and "ingest.max_bytes" in too_large["reason"]
    assert "assistant" in q[("sharegpt.jsonl", 1)]["reason"] and "'tool'" in q[("sharegpt.jsonl", 2)]["reason"]
    assert all(r["stage"] == "ingest" for r in q.values())
    positions = [r["position"] for r in _rows(result) if r["source"] == "pool.jsonl"]
    assert positions == list(range(20)) + list(range(28, 68))


def test_invalid_utf8_inside_a_json_list_only_costs_that_record(tmp_path):
    (tmp_path / "list.json").write_bytes(
        b'[{"instruction": "Caf\xe9?", "output": "Yes."}, {"instruction": "Lone", "output": "\\ud800"},'
        b' {"instruction": "Fine?", "output": "Fine."}]'
    )
    result = ingest_path(tmp_path)
    assert [r["instruction"] for r in _rows(result)] == ["Fine?"]
    assert result.stats["by_reason"] == {"invalid_utf8": 2}
    write_parquet(result.quarantine, tmp_path / "out" / "quarantine.parquet")  # the report stays writable
    assert pq.read_table(tmp_path / "out" / "quarantine.parquet").num_rows == 2


@pytest.mark.parametrize(
    "name, content",
    [
        ("notes.csv", b"instruction,output\nHi,Hello\n"),
        ("image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
        ("config.json", json.dumps({"learning_rate": 0.1}).encode()),
        ("texts.jsonl", b'{"text": "just text"}\n{"text": "more"}\n'),
        ("numbers.json", b"[1, 2, 3]"),
        ("broken.json", b'[{"instruction": "a", "output": '),
        ("table.parquet", None),
    ],
)
def test_unsupported_file_fails_before_reading_anything(tmp_path, monkeypatch, name, content):
    _jsonl(tmp_path / "a_good.jsonl", [_alpaca(0)])
    path = tmp_path / "sub" / name
    path.parent.mkdir()
    if content is None:
        pq.write_table(pa.table({"text": ["x"], "score": [1.0]}), path)
    else:
        path.write_bytes(content)

    def no_reading(*args, **kwargs):
        raise AssertionError("records were read before all formats were detected")

    monkeypatch.setattr(ingest_module, "read_records", no_reading)
    with pytest.raises(UnsupportedFormatError, match="Expected one of") as info:
        ingest_path(tmp_path)
    assert f"sub/{name}" in str(info.value) and "ShareGPT" in str(info.value)


def test_directory_walk_skips_hidden_eval_and_dvc_files(tmp_path):
    for rel in ["pool.jsonl", "nested/deeper/more.jsonl", "nested/eval/kept.jsonl", "eval/heldout.jsonl",
                ".hidden.jsonl", ".cache/x.jsonl"]:
        _jsonl(tmp_path / rel, [_alpaca(0)])
    (tmp_path / "pool.jsonl.dvc").write_text("outs: []\n")
    (tmp_path / ".gitignore").write_text("/pool.jsonl\n")
    result = ingest_path(tmp_path)
    assert list(result.stats["formats"]) == ["nested/deeper/more.jsonl", "nested/eval/kept.jsonl", "pool.jsonl"]
    single = ingest_path(tmp_path / "nested" / "deeper" / "more.jsonl")
    assert single.stats["formats"] == {"more.jsonl": "jsonl:alpaca"}


def test_json_lines_saved_as_json_and_empty_inputs(tmp_path):
    _jsonl(tmp_path / "lines.json", [_alpaca(0), _alpaca(1)])
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "empty_list.json").write_text("[]")
    result = ingest_path(tmp_path)
    assert result.rows.num_rows == 2 and result.stats["formats"]["lines.json"] == "jsonl:alpaca"
    empty = ingest_path(tmp_path / "empty.jsonl")
    assert empty.rows.num_rows == 0 and empty.rows.schema == ROWS and empty.quarantine.schema == QUARANTINE


def test_row_id_is_stable_under_whitespace_and_unicode_forms():
    base = row_id("", [], "What is 2 + 2?", "", "4")
    assert row_id("  ", [], " What  is\t2 + 2?\n", "", "4 ") == base
    assert row_id("", [], "What is ２ + ２?", "", "４") == base  # full-width digits, NFKC
    assert row_id("", [], "What is 2 + 2?", "", "5") != base
    assert row_id("", [], "what is 2 + 2?", "", "4") != base  # case is content
    assert row_id("", [], "What is 2", "+ 2?", "4") != base  # a field boundary is content
    assert row_id("Be brief.", [], "What is 2 + 2?", "", "4") != base
    ctx = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert row_id("", ctx, "What is 2 + 2?", "", "4") == row_id("", [("user", " Hi"), ("assistant", "Hello ")], "What is 2 + 2?", "", "4")
    assert row_id("", ctx, "What is 2 + 2?", "", "4") != base
    assert len(base) == 32 and int(base, 16) >= 0


def test_same_content_gets_the_same_id_across_formats_and_is_kept(tmp_path):
    _jsonl(tmp_path / "a.jsonl", [{"instruction": "Hi  there", "output": "Hello"}] * 2)
    conv = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello\n"}]
    _jsonl(tmp_path / "b.jsonl", [{"messages": conv}, {"messages": conv[:1] + [{"role": "assistant", "content": "Bye"}]}])
    ids = [r["row_id"] for r in _rows(ingest_path(tmp_path))]
    assert len(ids) == 4 and ids[0] == ids[1] == ids[2] != ids[3]
