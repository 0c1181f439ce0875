"""Properties over generated inputs (Hypothesis): ingest never raises on a JSON value, row_id ignores
Unicode-form and whitespace variants, and incremental dedup over any split of a pool into nights keeps
every earlier keeper and points every duplicate at a kept row."""
from __future__ import annotations

import json
import tempfile
import unicodedata
from pathlib import Path

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_dedup import rows_table

from curate.dedup import Previous, dedup_rows
from curate.ingest import ingest_path
from curate.ingest.normalize import RECORD_KINDS, RecordError, record_to_row, row_id

FIELDS = ["instruction", "input", "output", "response", "system", "messages", "conversations", "role", "content",
          "from", "value", "skill", "truth", "text"]
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5),
    max_leaves=12,
)
# whitespace that NFKC and str.split() both treat as a separator
SPACES = [" ", "\t", "\n", "  ", "\u00a0", "\u3000", "\u2003", " \r\n "]


@settings(max_examples=150)
@given(value=json_values, kind=st.sampled_from(RECORD_KINDS))
def test_a_record_becomes_a_row_or_a_reason(value, kind):
    try:
        row = record_to_row(value, kind, max_bytes=4_000_000)
    except RecordError as e:
        assert str(e).split(":", 1)[0] == e.code and e.code
    else:
        assert row["instruction"].strip() and row["response"].strip() and len(row["row_id"]) == 32


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(json_values, min_size=1, max_size=8), bad_lines=st.lists(st.text(max_size=12), max_size=3))
def test_ingest_never_raises_on_json_values(values, bad_lines):
    first = {"instruction": "Say hi.", "input": "", "output": "Hi."}  # sets the file's record kind
    lines = [json.dumps(first)] + [json.dumps(v) for v in values] + [b.replace("\n", " ") for b in bad_lines]
    lines = [line for line in lines if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pool.jsonl"
        path.write_text("\n".join(lines) + "\n")
        result = ingest_path(path)
    stats = result.stats
    assert stats["rows_in"] == len(lines) == result.rows.num_rows + result.quarantine.num_rows
    assert stats["rows_ok"] == result.rows.num_rows >= 1
    assert all(reason for reason in result.quarantine["reason"].to_pylist())
    assert sorted(result.rows["position"].to_pylist() + result.quarantine["position"].to_pylist()) == \
        sorted(set(result.rows["position"].to_pylist() + result.quarantine["position"].to_pylist()))


def variant(text: str, data) -> str:
    """The same text up to Unicode normal form and whitespace: other separators, padding, another form."""
    words = " ".join(unicodedata.normalize("NFKC", text).split()).split(" ")
    seps = data.draw(st.lists(st.sampled_from(SPACES), min_size=len(words) + 1, max_size=len(words) + 1))
    spaced = seps[0] + "".join(w + s for w, s in zip(words, seps[1:]))
    return unicodedata.normalize(data.draw(st.sampled_from(["NFC", "NFD", "NFKC", "NFKD"])), spaced)


texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


@settings(max_examples=150)
@given(system=texts, instruction=texts, input_=texts, response=texts, turn=texts, data=st.data())
def test_row_id_ignores_unicode_form_and_whitespace(system, instruction, input_, response, turn, data):
    original = row_id(system, [{"role": "user", "content": turn}], instruction, input_, response)
    same = row_id(variant(system, data), [{"role": "user", "content": variant(turn, data)}], variant(instruction, data),
                  variant(input_, data), variant(response, data))
    assert same == original
    # and it is a digest of the content: another response is another row
    assert row_id(system, [{"role": "user", "content": turn}], instruction, input_, response + "x") != original


def pool_records(data) -> list[tuple[str, str, str]]:
    """Rows built to collide: base texts, their byte copies, case copies and near copies."""
    bases = data.draw(st.lists(st.lists(st.integers(0, 30), min_size=6, max_size=14), min_size=1, max_size=5))
    records = []
    for _ in range(data.draw(st.integers(2, 14))):
        words = [f"w{x}" for x in bases[data.draw(st.integers(0, len(bases) - 1))]]
        kind = data.draw(st.sampled_from(["copy", "upper", "near", "new"]))
        if kind == "upper":
            words = [w.upper() for w in words]
        elif kind == "near":
            words = words + ["tail"]
        elif kind == "new":
            words = [f"n{x}" for x in data.draw(st.lists(st.integers(0, 30), min_size=6, max_size=14))]
        records.append(("Describe it.", "", " ".join(words)))
    return records


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_incremental_dedup_over_any_split_into_nights(data):
    records = pool_records(data)
    nights = data.draw(st.lists(st.integers(0, 3), min_size=len(records), max_size=len(records)))
    n_nights = max(nights) + 1
    names = data.draw(st.permutations([f"night-{k}.jsonl" for k in range(n_nights)]))  # file order != night order
    keep = data.draw(st.sampled_from(["first", "longest"]))
    files = {k: rows_table([r for r, n in zip(records, nights) if n == k], names[k]) for k in range(n_nights)}
    previous, kept_before = None, set()
    for night in range(n_nights):
        # tonight's pool: every file so far (files are never removed), in file-name order
        arrived = sorted((files[k] for k in range(night + 1) if files[k].num_rows), key=lambda t: t["source"][0].as_py())
        if not arrived:
            continue
        pool = pa.concat_tables(arrived)
        result = dedup_rows(pool, keep=keep, previous=previous)
        kept = set(result.kept["row_id"].to_pylist())
        assert result.kept.num_rows + result.removed.num_rows == pool.num_rows
        assert kept_before <= kept, "a row kept on an earlier night was removed"
        assert set(result.removed["duplicate_of"].to_pylist()) <= kept, "a duplicate_of points at a removed row"
        assert all(result.removed["reason"].to_pylist())
        previous, kept_before = Previous(result.index, result.removed), kept
