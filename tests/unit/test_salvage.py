"""Damaged JSON arrays: every complete record is read, the damaged rest is one quarantined record."""
import json

import pytest

from curate.ingest import ingest_path
from curate.ingest.salvage import array_elements, is_array

RECORDS = [{"instruction": f"say {i}", "output": f"{i} said, with \"quotes\" and ] brackets [ ,"} for i in range(5)]


def test_complete_array_reads_like_json_loads():
    text = json.dumps(RECORDS, indent=2)
    elements = list(array_elements(text))
    assert [e.value for e in elements] == json.loads(text)
    assert all(e.error is None for e in elements)
    assert list(array_elements("[ ]")) == []


@pytest.mark.parametrize("cut", [1, 17, 200, -40, -3, -1])
def test_truncated_array_keeps_every_complete_record(cut):
    text = json.dumps(RECORDS, indent=2)[:cut]
    elements = list(array_elements(text))
    good = [e.value for e in elements if e.error is None]
    # the complete records are exactly those whose closing brace survived the cut
    complete = [r for k, r in enumerate(RECORDS) if json.dumps(RECORDS[: k + 1], indent=2)[:-2] in text]
    assert good == complete
    assert [e.error is not None for e in elements].count(True) == 1
    assert elements[-1].error.startswith("invalid_json: damaged or truncated from character")


def test_garbage_between_records_stops_with_one_error():
    text = json.dumps(RECORDS[:2]) [:-1] + " oops " + json.dumps(RECORDS[2:])[1:]
    elements = list(array_elements(text))
    assert [e.value for e in elements[:2]] == RECORDS[:2]
    assert elements[2].error is not None and len(elements) == 3


def test_not_an_array():
    assert not is_array('{"a": 1}') and is_array("\ufeff  [1")
    with pytest.raises(ValueError, match="does not start with"):
        list(array_elements('{"a": 1}'))


def test_ingest_reads_a_truncated_json_file(tmp_path):
    text = json.dumps(RECORDS, indent=2)[:-60]  # cuts the last record after `"instruction": "say 4",`
    (tmp_path / "pool.json").write_text(text)
    result = ingest_path(tmp_path)
    assert result.rows.num_rows == 4
    assert result.stats["quarantined"] == 1
    [damaged] = result.quarantine.to_pylist()
    start = text.rindex("{")  # the last record's opening brace (no brace inside the records' strings)
    assert damaged["raw"] == text[start:] == '{\n    "instruction": "say 4",\n    '
    assert damaged["reason"] == (f"invalid_json: damaged or truncated from character {start} "
                                 "(Expecting property name enclosed in double quotes)")
    assert damaged["position"] == 4 and damaged["row_id"] is None
