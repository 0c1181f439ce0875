"""Ingest under hostile input: whatever one line or record holds (nesting too deep for the parser,
NaN/Infinity literals, lone surrogates, undecodable file names), it is quarantined with a reason or
read; it never aborts the run. A file with no readable record is refused with one line naming it."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import curate.ingest as ingest_module
from curate.ingest import UnsupportedFormatError, ingest_path
from curate.ingest.formats import RawRecord, Source, discover
from curate.ingest.salvage import array_elements

DEEP = "[" * 100_000 + "]" * 100_000  # valid JSON, far deeper than Python's recursion limit


def _good(i: int) -> str:
    return json.dumps({"instruction": f"Question {i}?", "output": f"Answer {i}."})


def _reasons(result) -> list[tuple[int, str]]:
    return [(q["position"], q["reason"].split(":", 1)[0]) for q in result.quarantine.to_pylist()]


def test_a_too_deep_jsonl_line_is_quarantined_and_the_other_lines_are_read(tmp_path):
    (tmp_path / "pool.jsonl").write_text("\n".join([_good(0), DEEP, _good(2), '{"instruction": ' + DEEP + "}"]) + "\n")
    result = ingest_path(tmp_path)
    assert [r["position"] for r in result.rows.to_pylist()] == [0, 2]
    assert _reasons(result) == [(1, "too_deep"), (3, "too_deep")]
    assert result.stats["by_source"]["pool.jsonl"] == {"rows_in": 4, "rows_ok": 2, "quarantined": 2}


def test_a_too_deep_line_before_any_good_one_does_not_stop_format_detection(tmp_path):
    (tmp_path / "pool.jsonl").write_text("\n".join([DEEP, _good(1)]) + "\n")
    [source] = discover(tmp_path)
    assert source.format == "jsonl:alpaca"


def test_a_too_deep_element_of_a_json_list_costs_only_that_element(tmp_path):
    (tmp_path / "pool.json").write_text(f"[{_good(0)}, {DEEP},\n {{\"instruction\": {DEEP}}}, {_good(3)}]")
    result = ingest_path(tmp_path)
    assert [r["instruction"] for r in result.rows.to_pylist()] == ["Question 0?", "Question 3?"]
    assert _reasons(result) == [(1, "too_deep"), (2, "too_deep")]


def test_a_too_deep_element_that_the_file_cuts_off_ends_the_array_with_one_error():
    elements = list(array_elements(f"[{_good(0)}, " + "[" * 100_000))
    assert elements[0].value == json.loads(_good(0))
    assert len(elements) == 2 and elements[1].error.startswith("too_deep") and "ends inside it" in elements[1].error


def test_brackets_inside_strings_do_not_move_the_end_of_a_too_deep_element():
    deep = "[" * 50_000 + '"]]] \\" [[ {"' + "]" * 50_000
    elements = list(array_elements(f"[{deep}, {_good(1)}]"))
    assert elements[0].error.startswith("too_deep") and elements[1].value == json.loads(_good(1))


@pytest.mark.parametrize("text", [DEEP, '{"instruction": ' + DEEP + "}"])
def test_a_json_file_too_deep_as_a_whole_is_refused_with_one_line_naming_it(tmp_path, text):
    (tmp_path / "pool.json").write_text(text)
    with pytest.raises(UnsupportedFormatError) as error:
        discover(tmp_path)
    message = str(error.value)
    assert "pool.json" in message and "nested deeper" in message and "remove it" in message
    assert "\n" not in message


def test_a_record_too_deep_to_describe_in_a_reason_is_quarantined():
    role: list = []
    for _ in range(100_000):  # built in Python: no parser involved, only the reason's repr recurses
        role = [role]
    record = {"messages": [{"role": role, "content": "q"}, {"role": "assistant", "content": "a"}]}
    source = Source(Path("pool.jsonl"), "pool.jsonl", "jsonl", "openai")
    outcome = ingest_module._normalise(source, RawRecord(7, record, "(raw)"), max_bytes=1000)
    assert outcome["reason"].startswith("too_deep:") and outcome["position"] == 7


def test_nan_infinity_and_lone_surrogates_quarantine_their_record_only(tmp_path):
    lines = [
        '{"instruction": "q", "output": NaN}',
        '{"instruction": Infinity, "output": "a"}',
        '{"instruction": "q\\ud800", "output": "a"}',
        '{"instruction": "q", "output": "a", "skill": "\\udfff"}',
        '{"instruction": "q", "output": "a", "truth": "\\ud800x"}',
        '{"instruction": "kept", "output": "a", "score": -Infinity}',  # a non-record field: the row is kept
    ]
    (tmp_path / "pool.jsonl").write_text("\n".join(lines) + "\n")
    result = ingest_path(tmp_path)
    assert _reasons(result) == [(0, "wrong_type"), (1, "wrong_type"), (2, "invalid_utf8"), (3, "invalid_utf8"),
                                (4, "invalid_utf8")]
    assert [r["instruction"] for r in result.rows.to_pylist()] == ["kept"]


def test_a_file_name_that_is_not_utf8_is_read_under_an_escaped_name(tmp_path):
    name = os.fsencode(tmp_path) + b"/pool \xff\xfe.jsonl"
    with open(name, "w") as f:
        f.write(_good(0) + "\n")
    result = ingest_path(tmp_path)
    [row] = result.rows.to_pylist()
    assert row["source"] == "pool \\xff\\xfe.jsonl"
    assert list(result.stats["by_source"]) == ["pool \\xff\\xfe.jsonl"]
