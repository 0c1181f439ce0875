import os

import pyarrow as pa
import pytest

from curate.artifacts import TIMINGS, Ref, atomic_path, digest, materialize, remove_stale_temps, text_digest, write_json, write_parquet


def test_digest_is_content_not_path_or_mtime(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "sub" / "b.json"
    write_json({"x": 1}, a)
    write_json({"x": 1}, b)
    os.utime(b, (0, 0))
    assert digest(a) == digest(b)
    write_json({"x": 2}, b)
    assert digest(a) != digest(b)


def test_directory_digest_covers_names_and_bytes(tmp_path):
    for d in ("d1", "d2"):
        write_json({"k": 1}, tmp_path / d / "f.json")
    assert digest(tmp_path / "d1") == digest(tmp_path / "d2")
    (tmp_path / "d2" / "f.json").rename(tmp_path / "d2" / "g.json")
    assert digest(tmp_path / "d1") != digest(tmp_path / "d2")


def test_timings_and_excluded_entries_are_not_content(tmp_path):
    for d, seconds in (("d1", 1.0), ("d2", 2.5)):
        write_json({"k": 1}, tmp_path / d / "f.json")
        write_json({"seconds": seconds}, tmp_path / d / "sub" / TIMINGS)  # wall times differ run to run
    assert digest(tmp_path / "d1") == digest(tmp_path / "d2")
    write_json({"moments": 1}, tmp_path / "d2" / "model" / "trainer_state" / "s.json")
    assert digest(tmp_path / "d1") != digest(tmp_path / "d2")
    assert digest(tmp_path / "d1") == digest(tmp_path / "d2", exclude=("trainer_state",))


def test_failed_write_leaves_old_artifact_and_no_temp(tmp_path):
    target = tmp_path / "t.parquet"
    write_parquet(pa.table({"a": [1]}), target)
    before = digest(target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a file")
            raise RuntimeError("killed")
    assert digest(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_directory_replace_is_whole(tmp_path):
    target = tmp_path / "out"
    with atomic_path(target) as tmp:
        write_json({"v": 1}, tmp / "a.json")
        write_json({"v": 1}, tmp / "b.json")
    with atomic_path(target) as tmp:
        write_json({"v": 2}, tmp / "a.json")
    assert sorted(p.name for p in target.iterdir()) == ["a.json"]


def test_materialize_and_stale_temp_cleanup(tmp_path):
    src = tmp_path / "store" / "x"
    write_json({"v": 1}, src / "f.json")
    dst = materialize(src, tmp_path / "data" / "x")
    assert digest(dst) == digest(src)
    (tmp_path / "data" / ".tmp-x-123-abc").mkdir()
    assert remove_stale_temps(tmp_path / "data") == 1


def test_ref_and_text_digest(tmp_path):
    write_json([1], tmp_path / "f.json")
    ref = Ref.of(tmp_path / "f.json")
    assert ref.exists() and len(ref.digest) == 64
    assert text_digest({"a": 1, "b": 2}) == text_digest({"b": 2, "a": 1})
    assert text_digest({"a": 1}) != text_digest({"a": 2})
