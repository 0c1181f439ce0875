"""Incremental dedup across nights: the persistent index, broken-index detection, streaming, the stage."""
from __future__ import annotations

import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_dedup import rows_table, word_doc

from curate.artifacts import Ref, file_digest, write_parquet
from curate.dedup import DedupSettings, Previous, dedup_rows
from curate.dedup.incremental import INDEX_DIR, KEPT_FILE, REMOVED_FILE, previous_from_artifact
from curate.dedup.index import MANIFEST_FILE, SIGNATURES_FILE, DedupIndex, IndexProblem, ParamsChanged

NIGHT1_SOURCE, NIGHT2_SOURCE = "pool.jsonl", "a-night2.jsonl"  # night 2's file sorts first: the keep-first trap


def night1_records(n: int = 60) -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(11)
    records = [(f"Describe item {i}", "", " ".join(word_doc(rng, 40))) for i in range(n)]
    records.append(records[3])  # a byte-identical copy: removed on night 1
    records.append((records[5][0], "", records[5][2] + " indeed"))  # a near copy: removed on night 1
    return records


def night2_pool(night1: list[tuple[str, str, str]]) -> tuple[pa.Table, dict[str, int]]:
    """Night 2: new rows first (file order), then all of night 1 again. Returns the pool and, per kind
    of new row, its position in the night-2 file."""
    rng = np.random.default_rng(12)
    fresh = [(f"Explain topic {i}", "", " ".join(word_doc(rng, 40))) for i in range(10)]
    new = {
        "byte_copy": night1[7],  # same row_id as a night-1 kept row
        "case_copy": (night1[8][0].upper(), "", night1[8][2].upper()),  # exact after normalisation
        "near_copy": (night1[9][0], "", night1[9][2] + " and so on and so forth"),  # longer: would win keep=longest
        "fresh_a": fresh[0],
        "fresh_a_again": (fresh[0][0], "", fresh[0][2] + " ok"),  # near copy among the new rows
    }
    records = list(new.values()) + fresh[1:]
    return (pa.concat_tables([rows_table(records, NIGHT2_SOURCE), rows_table(night1, NIGHT1_SOURCE)]),
            {kind: i for i, kind in enumerate(new)})


@pytest.mark.parametrize("keep", ["first", "longest"])
def test_two_nights_only_new_rows_are_examined(signed, keep):
    night1 = night1_records()
    pool1 = rows_table(night1, NIGHT1_SOURCE)
    first = dedup_rows(pool1, keep=keep)
    assert first.stats["mode"] == "full" and first.removed.num_rows == 2
    kept1 = set(first.kept["row_id"].to_pylist())
    signed.clear()

    pool2, at = night2_pool(night1)
    second = dedup_rows(pool2, keep=keep, previous=Previous(first.index, first.removed))
    stats = second.stats
    assert stats["mode"] == "incremental" and stats["previous_kept"] == len(kept1) == 60
    # repeated row ids (tonight's byte copy, night 1's byte copy) are not examined; the near copy
    # removed on night 1 carries over; the other 13 night-2 rows are new
    assert stats["copies_of_kept"] == 2 and stats["carried_removed"] == 1 and stats["new_rows"] == 13
    # signed and queried: every new row except the case copy, which matches a night-1 digest
    assert sum(signed) == stats["rows_signed"] == stats["rows_queried"] == 12

    kept2 = second.kept.to_pylist()
    assert kept1 <= {r["row_id"] for r in kept2}  # nothing kept on night 1 is removed
    assert all(r["source"] == NIGHT1_SOURCE for r in kept2 if r["row_id"] in kept1)
    removed = {(r["source"], r["position"]): r for r in second.removed.to_pylist()}
    ids1 = pool1["row_id"].to_pylist()
    for kind, reason, original in (("byte_copy", "exact", 7), ("case_copy", "exact", 8), ("near_copy", "near", 9)):
        record = removed[(NIGHT2_SOURCE, at[kind])]
        assert (record["reason"], record["duplicate_of"]) == (reason, ids1[original]), kind
    assert removed[(NIGHT2_SOURCE, at["near_copy"])]["similarity"] >= 0.7
    # the near pair among the new rows: one of them stays, by the keep policy
    ids2 = pool2["row_id"].to_pylist()
    pair = ["fresh_a", "fresh_a_again"] if keep == "first" else ["fresh_a_again", "fresh_a"]  # kept, removed
    assert (NIGHT2_SOURCE, at[pair[0]]) not in removed
    assert removed[(NIGHT2_SOURCE, at[pair[1]])]["duplicate_of"] == ids2[at[pair[0]]]
    # night-1 removals carry over unchanged
    for record in first.removed.to_pylist():
        again = removed[(NIGHT1_SOURCE, record["position"])]
        assert {k: again[k] for k in ("row_id", "reason", "duplicate_of", "similarity")} == \
            {k: record[k] for k in ("row_id", "reason", "duplicate_of", "similarity")}
    assert len(removed) == 2 + 4 and second.kept.num_rows == pool2.num_rows - 6
    # the new index: night-1 keepers first, then tonight's, and no duplicates
    index_ids = second.index.row_ids.to_pylist()
    assert index_ids[:60] == first.index.row_ids.to_pylist() and len(index_ids) == len(set(index_ids)) == len(kept2)


def test_old_kept_row_that_moved_stays_kept_and_keeps_its_id():
    night1 = night1_records(20)
    first = dedup_rows(rows_table(night1, NIGHT1_SOURCE))
    moved = rows_table([("A new first row", "", "hello there")] + night1, NIGHT1_SOURCE)  # every position shifts
    second = dedup_rows(moved, previous=Previous(first.index, first.removed))
    assert second.stats["new_rows"] == 1 and second.removed.num_rows == first.removed.num_rows
    assert second.index.positions[:20].tolist() == (first.index.positions[:20] + 1).tolist()


def test_rows_whose_kept_row_left_the_pool():
    night1 = night1_records(20)  # row 20: byte copy of row 3; row 21: near copy of row 5
    first = dedup_rows(rows_table(night1, NIGHT1_SOURCE))
    without_5 = [r for i, r in enumerate(night1) if i != 5]
    second = dedup_rows(rows_table(without_5, NIGHT1_SOURCE), previous=Previous(first.index, first.removed))
    assert second.stats["new_rows"] == 1 and second.stats["carried_removed"] == 0  # the near copy is examined again
    assert second.stats["copies_of_kept"] == 1 and second.removed["position"].to_pylist() == [19]  # row 3's copy
    assert night1[21][2] in second.kept["response"].to_pylist()
    assert len(second.index) == 20 and night1[5][2] not in second.kept["response"].to_pylist()

    without_3 = [r for i, r in enumerate(night1) if i != 3]  # the same content stays in the pool as row 20
    third = dedup_rows(rows_table(without_3, NIGHT1_SOURCE), previous=Previous(first.index, first.removed))
    assert third.stats["new_rows"] == 0 and third.removed.num_rows == 1  # only row 5's near copy, carried
    assert third.index.positions[3] == 19  # the index entry moved to the remaining occurrence


def test_streaming_batches_give_identical_results():
    night1 = night1_records()
    pool1 = rows_table(night1, NIGHT1_SOURCE)
    pool2, _ = night2_pool(night1)
    for batch_rows in (1, 7):
        whole, batched = dedup_rows(pool1), dedup_rows(pool1, batch_rows=batch_rows)
        assert batched.removed.equals(whole.removed) and batched.kept.equals(whole.kept)
        assert batched.stats == whole.stats
        again = dedup_rows(pool2, previous=Previous(whole.index, whole.removed))
        again_batched = dedup_rows(pool2, previous=Previous(batched.index, batched.removed), batch_rows=batch_rows)
        assert again_batched.removed.equals(again.removed) and again_batched.kept.equals(again.kept)
        assert np.array_equal(again_batched.index.signatures, again.index.signatures)


# --- the persistent index --------------------------------------------------------------------


def saved_index(tmp_path):
    result = dedup_rows(rows_table(night1_records(30)))
    path = result.index.save(tmp_path / "index")
    return result.index, path


def test_index_round_trip(tmp_path):
    index, path = saved_index(tmp_path)
    loaded = DedupIndex.load(path, DedupSettings())
    assert len(loaded) == len(index) == 30
    assert loaded.row_ids.equals(index.row_ids) and loaded.digests.equals(index.digests)
    assert np.array_equal(loaded.signatures, index.signatures) and np.array_equal(loaded.band_keys, index.band_keys)
    assert np.array_equal(loaded.band_keys, DedupSettings().lsh().band_keys(loaded.signatures))
    exact_only = DedupSettings(near=False)
    plain = dedup_rows(rows_table(night1_records(30)), near=False).index
    assert plain.signatures.shape == (31, 0)  # the near copy stays
    assert len(DedupIndex.load(plain.save(tmp_path / "plain"), exact_only)) == 31


def _rewrite_manifest(path, **changes):
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    (path / MANIFEST_FILE).write_text(json.dumps({**manifest, **changes}))


@pytest.mark.parametrize("damage, message", [
    ("no_manifest", "manifest.json is missing"),
    ("bad_manifest", "manifest.json is unreadable"),
    ("no_parquet", "signatures.parquet is missing"),
    ("truncated", "checksum"),
    ("flipped_byte", "checksum"),
    ("garbage_with_checksum", "unreadable"),
    ("wrong_row_count", "wrong shape"),
    ("wrong_width", "wrong shape"),
])
def test_broken_index_is_detected(tmp_path, damage, message):
    _, path = saved_index(tmp_path)
    parquet = path / SIGNATURES_FILE
    if damage == "no_manifest":
        (path / MANIFEST_FILE).unlink()
    elif damage == "bad_manifest":
        (path / MANIFEST_FILE).write_text("{not json")
    elif damage == "no_parquet":
        parquet.unlink()
    elif damage == "truncated":
        parquet.write_bytes(parquet.read_bytes()[:-100])
    elif damage == "flipped_byte":
        data = bytearray(parquet.read_bytes())
        data[len(data) // 2] ^= 0xFF
        parquet.write_bytes(bytes(data))
    elif damage == "garbage_with_checksum":
        parquet.write_bytes(b"not a parquet file")
        _rewrite_manifest(path, sha256=file_digest(parquet))
    elif damage == "wrong_row_count":
        _rewrite_manifest(path, rows=31)
    elif damage == "wrong_width":
        table = pq.read_table(parquet)
        narrow = pa.FixedSizeListArray.from_arrays(table["signature"].combine_chunks().flatten()[: 30 * 64], 64)
        write_parquet(table.set_column(4, "signature", narrow), parquet)
        _rewrite_manifest(path, sha256=file_digest(parquet))
    with pytest.raises(IndexProblem, match=message):
        DedupIndex.load(path, DedupSettings())


def test_changed_parameters_are_named(tmp_path):
    _, path = saved_index(tmp_path)
    with pytest.raises(ParamsChanged, match=r"threshold: 0.7 -> 0.8"):
        DedupIndex.load(path, DedupSettings(threshold=0.8))
    with pytest.raises(ParamsChanged, match=r"keep: 'first' -> 'longest'"):
        DedupIndex.load(path, DedupSettings(keep="longest"))


# --- what an earlier artifact left --------------------------------------------------------------


def write_artifact(directory, result) -> None:
    write_parquet(result.kept, directory / KEPT_FILE)
    write_parquet(result.removed, directory / REMOVED_FILE)
    result.index.save(directory / INDEX_DIR)


def test_previous_artifact_intact_broken_stale_and_unusable(tmp_path, caplog):
    night1 = night1_records()
    first = dedup_rows(rows_table(night1, NIGHT1_SOURCE))
    write_artifact(tmp_path, first)
    pool2, _ = night2_pool(night1)
    settings = DedupSettings()

    previous, status = previous_from_artifact(tmp_path, settings)
    assert status["index"] == "loaded"
    reference = dedup_rows(pool2, previous=previous)

    parquet = tmp_path / INDEX_DIR / SIGNATURES_FILE
    parquet.write_bytes(parquet.read_bytes()[:-10])
    with caplog.at_level(logging.WARNING, logger="curate.dedup"):
        previous, status = previous_from_artifact(tmp_path, settings)
    assert status["index"] == "rebuilt" and "checksum" in status["reason"] and "60 rows kept before" in status["reason"]
    assert any("rebuilt" in r.getMessage() and "checksum" in r.getMessage() for r in caplog.records)
    rebuilt = dedup_rows(pool2, previous=previous)
    assert rebuilt.removed.equals(reference.removed) and rebuilt.kept.equals(reference.kept)

    write_artifact(tmp_path, first)
    previous, status = previous_from_artifact(tmp_path, DedupSettings(ngram=2))
    assert previous is None and status["index"] == "stale" and "ngram: 3 -> 2" in status["reason"]

    (tmp_path / INDEX_DIR / MANIFEST_FILE).unlink()
    (tmp_path / KEPT_FILE).write_bytes(b"broken")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="curate.dedup"):
        previous, status = previous_from_artifact(tmp_path, settings)
    assert previous is None and status["index"] == "unusable" and "full pass" in status["reason"]
    assert any("full pass" in r.getMessage() for r in caplog.records)


# --- the stage ------------------------------------------------------------------------------------


def test_stage_two_nights_and_cache_keys(tmp_path):
    from tasks.dedup import dedup, previous_dedup
    from tasks.publish import LAYOUT, publish

    project = tmp_path / "project"
    params = {"dedup": {"exact": {"enabled": True, "casefold": True, "keep": "first"},
                        "near": {"enabled": True, "num_perm": 128, "ngram": 3, "threshold": 0.7, "seed": 1,
                                 "verify": "exact"}}}
    night1 = night1_records()

    def ingest(table: pa.Table, name: str) -> dict:
        write_parquet(table, tmp_path / name / "rows.parquet")
        return Ref.of(tmp_path / name).to_dict()

    def night(rows: dict) -> tuple[dict, dict]:
        previous = previous_dedup(str(project), rows, params)
        ref = dedup.fn(project=str(project), rows=rows, params=params, previous=previous)
        publish(str(project), ref, LAYOUT["dedup"])
        return ref, previous

    rows1 = ingest(rows_table(night1, NIGHT1_SOURCE), "ingest1")
    ref1, previous1 = night(rows1)
    stats1 = json.loads((project / LAYOUT["dedup"] / "stats.json").read_text())
    assert previous1 is None and stats1["mode"] == "full" and stats1["index"] == "none"
    assert (project / LAYOUT["dedup"] / "cluster_sizes.png").read_bytes()[:4] == b"\x89PNG"
    # a re-run on the same rows passes the same `previous`: the same cache key
    assert previous_dedup(str(project), rows1, params) is None

    rows2 = ingest(night2_pool(night1)[0], "ingest2")
    ref2, previous2 = night(rows2)
    assert previous2["digest"] == ref1["digest"] and previous2["path"] == ref1["path"]  # the immutable store entry
    stats2 = json.loads((project / LAYOUT["dedup"] / "stats.json").read_text())
    assert stats2["mode"] == "incremental" and stats2["index"] == "loaded" and stats2["new_rows"] == 13
    assert previous_dedup(str(project), rows2, params) == previous2  # re-run: same inputs, same key
    kept = pq.read_table(project / LAYOUT["dedup"] / KEPT_FILE)
    assert set(pq.read_table(ref1["path"] + "/rows.parquet")["row_id"].to_pylist()) <= set(kept["row_id"].to_pylist())

    # the published index is broken: the stage rebuilds it from the kept rows and says so
    (project / LAYOUT["dedup"] / INDEX_DIR / MANIFEST_FILE).unlink()
    rows3 = ingest(rows_table(night1[:10], "tiny.jsonl"), "ingest3")
    previous3 = previous_dedup(str(project), rows3, params)
    assert previous3["path"] == str(project / LAYOUT["dedup"])
    ref3 = dedup.fn(project=str(project), rows=rows3, params=params, previous=previous3)
    stats3 = json.loads(open(ref3["path"] + "/stats.json").read())
    assert stats3["index"] == "rebuilt" and "manifest.json is missing" in stats3["reason"]
    # a previous artifact that changed since it was chosen is not trusted
    changed = {**previous2, "digest": "0" * 64}
    ref4 = dedup.fn(project=str(project), rows=rows2, params=params, previous=changed)
    stats4 = json.loads(open(ref4["path"] + "/stats.json").read())
    assert stats4["mode"] == "full" and stats4["index"] == "unusable"


def test_cluster_size_plot(tmp_path):
    from curate.dedup.report import plot_cluster_sizes

    for name, sizes in (("none", []), ("small", [2, 2, 3, 5]), ("large", [2] * 50 + list(range(3, 300)))):
        path = plot_cluster_sizes(np.array(sizes, dtype=np.int64), tmp_path / f"{name}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert not list(tmp_path.glob(".tmp-*"))


# --- semantic dedup across nights ----------------------------------------------------------------


def test_choose_kept_anchors_win_and_stay():
    from curate.dedup.exact import choose_kept

    groups = np.array([1, 1, 1, 2, 2])
    anchors = np.array([False, True, True, False, False])
    assert choose_kept(groups, anchors=anchors).tolist() == [1, 1, 2, 3, 3]
    lengths = np.array([9, 1, 1, 1, 5])
    assert choose_kept(groups, keep="longest", lengths=lengths, anchors=anchors).tolist() == [1, 1, 2, 4, 4]


def unit_vectors(rng, n: int, d: int = 32) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_semantic_rows_kept_before_stay_and_are_not_compared():
    from curate.dedup.semantic import semantic_duplicates

    rng = np.random.default_rng(5)
    x = unit_vectors(rng, 40)
    x[1] = x[0]  # two identical rows, both kept before: never compared, both stay
    x[2] = x[0]  # a new row identical to them: removed as a duplicate of the first
    x[20] = x[10]  # new row 20 duplicates new row 10: the keep policy decides
    old = np.zeros(40, dtype=bool)
    old[[0, 1, 5]] = True
    lengths = np.arange(40)  # keep="longest" would pick the later rows
    for keep in ("first", "longest"):
        result = semantic_duplicates(x, n_clusters=4, keep=keep, lengths=lengths, kept_before=old)
        removed = {i: int(result.kept_index[i]) for i in np.flatnonzero(result.kept_index != np.arange(40))}
        assert removed == ({2: 0, 20: 10} if keep == "first" else {2: 0, 10: 20}), keep
    plain = semantic_duplicates(x, n_clusters=4)
    none_before = semantic_duplicates(x, n_clusters=4, kept_before=np.zeros(40, dtype=bool))
    assert np.array_equal(plain.kept_index, none_before.kept_index)
    assert plain.kept_index[1] == 0  # without kept_before the identical pair collapses


def test_semdedup_stage_two_nights(tmp_path):
    from curate.schema import embedding_schema
    from tasks.publish import LAYOUT, publish
    from tasks.semdedup import previous_semdedup, semdedup

    project = str(tmp_path / "project")
    params = {"dedup": {"semantic": {"enabled": True, "epsilon": 0.05, "probes": 2, "keep": "first", "seed": 0}}}
    rng = np.random.default_rng(6)
    night1 = night1_records(30)[:30]
    vectors1 = unit_vectors(rng, 30)
    vectors1[7] = vectors1[3]  # a semantic duplicate on night 1

    def artifacts(records, vectors, source, name):
        table = rows_table(records, source)
        write_parquet(table, tmp_path / name / "rows" / "rows.parquet")
        (tmp_path / name / "rows" / "stats.json").write_text(json.dumps({"kept": table.num_rows}))
        emb = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), vectors.shape[1])
        write_parquet(pa.table({"row_id": table["row_id"], "embedding": emb}, schema=embedding_schema(vectors.shape[1])),
                      tmp_path / name / "emb" / "embeddings.parquet")
        return Ref.of(tmp_path / name / "rows").to_dict(), Ref.of(tmp_path / name / "emb").to_dict()

    used = []

    def night(rows, emb, run_params=params):
        previous = previous_semdedup(project, rows, emb, run_params)
        used.append(previous)
        ref = semdedup.fn(project=project, rows=rows, embeddings=emb, params=run_params, previous=previous)
        publish(project, ref, LAYOUT["semdedup"])
        return json.loads(open(ref["path"] + "/stats.json").read()), pq.read_table(ref["path"] + "/removed.parquet").to_pylist()

    rows1, emb1 = artifacts(night1, vectors1, NIGHT1_SOURCE, "n1")
    stats1, removed1 = night(rows1, emb1)
    assert stats1["mode"] == "full" and [r["position"] for r in removed1] == [7]
    assert previous_semdedup(project, rows1, emb1, params) is None  # a re-run: the same key

    # night 2: new rows first; one is a semantic copy of a night-1 kept row, one a copy of a new row
    fresh = [(f"Night two {i}", "", f"answer {i}") for i in range(6)]
    vectors_new = unit_vectors(rng, 6)
    vectors_new[1] = vectors1[12]
    vectors_new[4] = vectors_new[2]
    rows2, emb2 = artifacts(fresh + night1, np.concatenate([vectors_new, vectors1]), NIGHT2_SOURCE, "n2")
    stats2, removed2 = night(rows2, emb2)
    assert stats2["mode"] == "incremental" and stats2["kept_before"] == 29 and stats2["carried_removed"] == 1
    assert stats2["new_rows"] == 6
    ids1 = rows_table(night1)["row_id"].to_pylist()
    by_position = {(r["source"], r["position"]): r for r in removed2}
    assert by_position[(NIGHT2_SOURCE, 1)]["duplicate_of"] == ids1[12]  # the old kept row wins
    assert by_position[(NIGHT2_SOURCE, 4)]["duplicate_of"] == rows_table(fresh)["row_id"][2].as_py()
    assert by_position[(NIGHT2_SOURCE, 6 + 7)]["duplicate_of"] == ids1[3]  # night 1's removal carried over
    assert len(removed2) == 3
    assert used[-1] is not None and previous_semdedup(project, rows2, emb2, params) == used[-1]  # re-run: same key

    changed = {"dedup": {"semantic": {**params["dedup"]["semantic"], "epsilon": 0.06}}}
    stats3, _ = night(rows2, emb2, changed)
    assert stats3["mode"] == "full" and "parameters changed" in stats3["reason"]
