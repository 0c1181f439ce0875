"""Sharded MinHash signing (docs/execution.md): `minhash_shard` over 1-3 shards signs the rows dedup will examine,
each shard a contiguous group of them in a store entry of its own; `dedup` looks the signatures up instead of
computing them and stores the bytes of one pass, on a full pass and on an incremental night."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_dedup import rows_table
from test_dedup_incremental import NIGHT1_SOURCE, night1_records, night2_pool

from curate.artifacts import Ref, iter_row_range
from curate.config import Params
from curate.dedup import ID_COLUMNS, TEXT_COLUMNS, DedupSettings, Previous, dedup_batches, dedup_rows
from curate.dedup.incremental import INDEX_DIR, split_pool
from curate.dedup.index import DedupIndex
from curate.dedup.presign import SIGNATURES_FILE, Presigned, shard_rows, sign_rows
from tasks.dedup import dedup, minhash_shard, previous_dedup
from tasks.pipeline import stage_params
from tasks.publish import LAYOUT, publish

RESULT_FILES = ("rows.parquet", "removed.parquet", "stats.json", f"{INDEX_DIR}/signatures.parquet",
                f"{INDEX_DIR}/manifest.json")


@pytest.fixture
def normalised(monkeypatch) -> list[int]:
    """Rows dedup normalises (`dedup_texts`, as curate.dedup calls it), per call (a spy on our own function)."""
    import curate.dedup

    counts: list[int] = []
    original = curate.dedup.dedup_texts

    def spy(batch, **kwargs):
        counts.append(batch.num_rows)
        return original(batch, **kwargs)

    monkeypatch.setattr(curate.dedup, "dedup_texts", spy)
    return counts


def _rows(tmp_path: Path, table: pa.Table, name: str) -> dict:
    """A pool file of several row groups (7 rows each), so shards read parts of it."""
    path = tmp_path / name / "rows.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(table, path, row_group_size=7)
    return Ref.of(path.parent).to_dict()


def _night(project: Path, rows: dict, shards: int, signed: list[int], normalised: list[int]) -> tuple[dict, list[dict], int, int]:
    """dedup of `rows` in `project` (against its published dedup), with `shards` MinHash shards (0: none);
    returns dedup's Ref, the shards' Refs, and the texts dedup signed and the rows it normalised itself."""
    p = Params()
    params = stage_params(p, "dedup")
    previous = previous_dedup(str(project), rows, params)
    parts = [minhash_shard.fn(project=str(project), rows=rows, params=stage_params(p, "minhash_shard"),
                              previous=previous, shard=i, shards=shards) for i in range(shards)]
    signed.clear()
    normalised.clear()
    ref = dedup.fn(project=str(project), rows=rows, params=params, previous=previous, shards=parts or None)
    publish(str(project), ref, LAYOUT["dedup"])
    return ref, parts, sum(signed), sum(normalised)


def _same_result(a: dict, b: dict) -> None:
    for name in RESULT_FILES:
        assert (Path(a["path"]) / name).read_bytes() == (Path(b["path"]) / name).read_bytes(), name


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_sharded_signatures_give_the_bytes_of_one_pass_on_two_nights(tmp_path, signed, normalised, shards):
    night1 = night1_records()
    pool1 = rows_table(night1, NIGHT1_SOURCE)
    pool2 = night2_pool(night1)[0]
    one, sharded = tmp_path / "one", tmp_path / "sharded"
    for night, pool in enumerate((pool1, pool2), 1):
        rows = _rows(tmp_path, pool, f"ingest{night}")
        reference, _, signed_alone, normalised_alone = _night(one, rows, 0, signed, normalised)
        ref, parts, signed_after_shards, normalised_after_shards = _night(sharded, rows, shards, signed, normalised)
        _same_result(reference, ref)  # (the lineage differs on night 2: it names each project's previous artifact)
        assert len({part["path"] for part in parts}) == shards  # a store entry each
        stats = json.loads((Path(ref["path"]) / "stats.json").read_text())
        assert stats["mode"] == ("full" if night == 1 else "incremental")
        # the shards covered the rows dedup examined and signed their distinct texts; dedup signed nothing itself
        # and normalised only the candidate pairs' rows (for their exact Jaccard), not the examined rows
        shard_stats = [json.loads((Path(part["path"]) / "stats.json").read_text()) for part in parts]
        assert sum(s["rows"] for s in shard_stats) == stats["new_rows"]
        assert sum(s["texts_signed"] for s in shard_stats) >= stats["rows_signed"] == signed_alone > 0
        assert signed_after_shards == 0
        assert normalised_alone - normalised_after_shards == stats["new_rows"] > 0


def test_missing_signatures_are_computed_by_dedup(tmp_path, signed, normalised):
    """With only some shards' signatures, dedup signs the rest itself: the same result."""
    rows = _rows(tmp_path, rows_table(night1_records(), NIGHT1_SOURCE), "ingest")
    reference, _, signed_alone, _ = _night(tmp_path / "one", rows, 0, signed, normalised)
    p = Params()
    first = minhash_shard.fn(project=str(tmp_path / "part"), rows=rows, params=stage_params(p, "minhash_shard"),
                             previous=None, shard=0, shards=2)
    given = pq.read_table(Path(first["path"]) / SIGNATURES_FILE).num_rows
    signed.clear()
    ref = dedup.fn(project=str(tmp_path / "part"), rows=rows, params=stage_params(p, "dedup"), previous=None, shards=[first])
    _same_result(reference, ref)
    assert 0 < given < signed_alone and sum(signed) == signed_alone - given


def test_shards_split_the_examined_rows_into_contiguous_equal_groups():
    new = np.zeros(20, dtype=bool)
    new[[1, 2, 5, 8, 9, 10, 15, 19]] = True
    groups = [shard_rows(new, s, 3) for s in range(3)]
    assert [g.tolist() for g in groups] == [[1, 2, 5], [8, 9, 10], [15, 19]]
    assert shard_rows(new, 3, 4).tolist() == [15, 19] and shard_rows(np.zeros(3, bool), 0, 2).size == 0


def test_sign_rows_reads_only_its_rows_and_signs_each_text_once(tmp_path):
    records = night1_records(20)  # rows 20 and 21 repeat / nearly repeat rows 3 and 5
    path = Path(_rows(tmp_path, rows_table(records, NIGHT1_SOURCE), "pool")["path"]) / "rows.parquet"
    settings = DedupSettings()
    rows = np.array([3, 9, 10, 16, 20])  # row 20 is a byte copy of row 3
    got = sign_rows(path, rows, settings, batch_rows=4)
    reference = dedup_rows(rows_table([records[i] for i in rows[:4]], NIGHT1_SOURCE)).index
    assert len(got) == 4 and got.digests.equals(reference.digests)
    assert np.array_equal(got.signatures, reference.signatures)
    assert np.array_equal(got.rows, rows) and got.row_digests.to_pylist() == reference.digests.to_pylist() + [reference.digests[0].as_py()]


def test_iter_row_range_yields_the_rows_between_with_their_offsets(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": list(range(30))}), path, row_group_size=7)
    for start, stop, batch in [(0, 30, 4), (5, 6, 100), (6, 22, 3), (29, 30, 2), (10, 10, 5)]:
        got = [(first, b.column("x").to_pylist()) for first, b in iter_row_range(path, start, stop, ["x"], batch)]
        assert [x for _, xs in got for x in xs] == list(range(start, stop))
        assert all(xs[0] == first for first, xs in got)


def test_ids_only_index_finds_the_same_new_rows(tmp_path):
    night1 = night1_records()
    first = dedup_rows(rows_table(night1, NIGHT1_SOURCE))
    first.index.save(tmp_path / INDEX_DIR)
    settings = DedupSettings()
    full, ids = (DedupIndex.load(tmp_path / INDEX_DIR, settings, ids_only=flag) for flag in (False, True))
    assert ids.row_ids.equals(full.row_ids) and np.array_equal(ids.positions, full.positions)
    assert ids.signatures.shape == (len(full), 0)
    pool2 = night2_pool(night1)[0]
    splits = [split_pool(pool2["row_id"], pool2["source"], pool2["position"].to_numpy(), Previous(index, first.removed))
              for index in (full, ids)]
    assert np.array_equal(splits[0].new, splits[1].new) and splits[0].new.sum() == 13


def test_presigned_round_trip_and_width_check(tmp_path):
    records = night1_records(5)
    path = Path(_rows(tmp_path, rows_table(records, NIGHT1_SOURCE), "pool")["path"]) / "rows.parquet"
    got = sign_rows(path, np.arange(5), DedupSettings())
    got.write(tmp_path)
    back = Presigned.read(tmp_path, 128)
    assert back.digests.equals(got.digests) and np.array_equal(back.signatures, got.signatures)
    assert np.array_equal(back.rows, np.arange(5)) and back.row_digests.equals(got.row_digests)
    assert back.lookup([got.digests[2].as_py(), b"x" * 16]).tolist() == [2, -1]
    assert back.row_digests_of(np.array([1, 3])) == [got.row_digests[1].as_py(), got.row_digests[3].as_py()]
    assert back.row_digests_of(np.array([3, 5])) is None  # row 5 is no shard's
    with pytest.raises(ValueError, match="signatures of 128 values, the dedup settings make 64"):
        Presigned.read(tmp_path, 64)


def test_digests_without_signatures_sign_only_the_first_rows_of_the_groups(tmp_path, signed, normalised):
    """Every row's digest given but no signature: dedup normalises and signs one row per new exact group."""
    records = night1_records()
    path = Path(_rows(tmp_path, rows_table(records, NIGHT1_SOURCE), "pool")["path"]) / "rows.parquet"
    settings = DedupSettings(verify="signature")  # no second pass: every normalisation is the first pass's
    table = pq.read_table(path)
    reference = dedup_rows(table, verify="signature")
    full = sign_rows(path, np.arange(table.num_rows), settings)
    digests_only = Presigned(full.rows, full.row_digests, full.digests.slice(0, 0), full.signatures[:0])
    signed.clear()
    normalised.clear()
    got = dedup_batches(table.select(ID_COLUMNS), table.select(TEXT_COLUMNS).to_batches(), settings,
                        presigned=digests_only)
    groups = len(set(full.row_digests.to_pylist()))  # night 1 holds one byte copy: 61 groups of 62 rows
    assert got.removed.equals(reference.removed) and np.array_equal(got.keep, reference.keep)
    assert sum(signed) == sum(normalised) == groups == table.num_rows - 1
