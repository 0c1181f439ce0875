"""Sealed store entries, the checks before versioning, and `curate repair`'s plan, on hand-built projects:
a store entry, its published copy in data/, a DVC cache and a local remote laid out as DVC 3 lays them
out (files/md5/<2>/<30>), so every copy's bytes can be damaged on purpose."""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest

from curate import integrity, published, repair
from curate.artifacts import SEAL, TIMINGS, Ref, digest, materialize
from curate.ingest.formats import SymlinkedInput, discover
from curate.seal import CorruptArtifact, check_ref, checked_ref, read_seal, sealed_entry
from curate.versioning.objects import object_path


def flip(path: Path, offset: int = 3) -> None:
    """Flip one byte in place (the same inode: every hard link sees it), as a bad write or a bad disk would."""
    data = path.read_bytes()
    fd = os.open(path, os.O_WRONLY)
    os.pwrite(fd, bytes([data[offset] ^ 0xFF]), offset)
    os.close(fd)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_entry(project: Path, stage: str = "select", key: str = "k1", files: dict | None = None) -> Path:
    out = project / ".curate" / "store" / stage / key
    with sealed_entry(out) as tmp:
        tmp.mkdir()
        for rel, text in (files or {"selection.parquet": "rows " * 50, "stats.json": "{}", TIMINGS: "1.5"}).items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)
    return out


def publish(project: Path, entry: Path, rel: str, exclude=()) -> Path:
    out = materialize(entry, project / rel, exclude)
    published.record(project, rel, entry)
    return out


def cache_copy(cache: Path, f: Path) -> Path:
    """What `dvc commit` (copy cache type) does with a workspace file: its own copy, named by its md5."""
    obj = object_path(cache, md5(f))
    obj.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(f, obj)
    return obj


def test_a_sealed_entry_records_every_file_and_is_read_only(tmp_path):
    entry = make_entry(tmp_path)
    seal = read_seal(entry)
    assert set(seal) == {"selection.parquet", "stats.json", TIMINGS}
    size, sha, m = seal["selection.parquet"]
    assert (size, sha, m) == (250, hashlib.sha256(("rows " * 50).encode()).hexdigest(), md5(entry / "selection.parquet"))
    assert not (entry / "stats.json").stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    # the seal is about the content, not part of it: the entry's digest is the digest of its files alone
    without = tmp_path / "copy"
    shutil.copytree(entry, without, ignore=shutil.ignore_patterns(SEAL))
    assert checked_ref(entry).digest == digest(entry) == digest(without)


def test_a_failed_write_leaves_no_entry(tmp_path):
    out = tmp_path / ".curate" / "store" / "select" / "k"
    with pytest.raises(RuntimeError):
        with sealed_entry(out) as tmp:
            tmp.mkdir()
            (tmp / "a").write_text("x")
            raise RuntimeError("killed")
    assert not out.exists() and not list(out.parent.iterdir())


@pytest.mark.parametrize("damage", ["flip", "delete", "add"])
def test_checked_ref_refuses_damaged_bytes(tmp_path, damage):
    entry = make_entry(tmp_path)
    target = entry / "selection.parquet"
    if damage == "flip":
        flip(target)
    elif damage == "delete":
        target.unlink()
    else:
        (entry / "extra.txt").write_text("x")
    with pytest.raises(CorruptArtifact, match="Run `curate repair`") as e:
        checked_ref(entry)
    assert ("extra.txt" if damage == "add" else "selection.parquet") in str(e.value)


def test_a_path_inside_an_entry_has_the_digest_of_its_files(tmp_path):
    entry = make_entry(tmp_path, "base_model", files={"model/w.bin": "w" * 99, "model/config.json": "{}", "stats.json": "{}"})
    assert checked_ref(entry / "model").digest == Ref.of(entry / "model").digest
    flip(entry / "stats.json", 0)  # outside `model/`: the model's Ref is still sound, the entry's is not
    assert checked_ref(entry / "model").digest == Ref.of(entry / "model").digest
    with pytest.raises(CorruptArtifact):
        checked_ref(entry)


def test_a_cached_ref_of_an_entry_from_before_seals_is_sealed_only_when_its_bytes_match(tmp_path):
    entry = tmp_path / ".curate" / "store" / "select" / "old"
    entry.mkdir(parents=True)
    (entry / "selection.parquet").write_text("rows")
    ref = Ref.of(entry).to_dict()
    flip(entry / "selection.parquet", 0)
    with pytest.raises(CorruptArtifact):
        check_ref(ref)
    assert read_seal(entry) is None  # damaged bytes are never sealed as the truth
    flip(entry / "selection.parquet", 0)
    check_ref(ref)
    assert read_seal(entry) is not None


def _project(tmp_path) -> tuple[Path, Path, Path, Path]:
    """A project with one sealed entry published to data/, its files in a DVC cache and a remote (copies)."""
    project, cache, remote = tmp_path / "p", tmp_path / "p" / ".dvc" / "cache", tmp_path / "remote"
    entry = make_entry(project)
    publish(project, entry, "data/rounds/round-0/select")
    for f in (project / "data" / "rounds" / "round-0" / "select").iterdir():
        cache_copy(cache, f)
        cache_copy(remote, f)
    (project / "data" / "raw").mkdir(parents=True)
    (project / "data" / "raw" / "pool.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    return project, entry, cache, remote


def test_before_versioning_passes_a_sound_project(tmp_path):
    project, _, cache, _ = _project(tmp_path)
    assert integrity.before_versioning(project, cache, "data/raw") == []


def test_before_versioning_catches_a_damaged_store_file_and_its_hard_linked_copy(tmp_path):
    project, entry, cache, _ = _project(tmp_path)
    flip(entry / "selection.parquet")  # data/ holds a hard link: the same bytes changed there
    problems = integrity.before_versioning(project, cache, "data/raw")
    assert [(c.area, Path(c.path).name, c.status) for c in problems] == [("store", "selection.parquet", "MISMATCH")]


def test_before_versioning_catches_a_replaced_published_file(tmp_path):
    project, _, cache, _ = _project(tmp_path)
    copy = project / "data" / "rounds" / "round-0" / "select" / "selection.parquet"
    copy.unlink()
    copy.write_text("rows " * 49 + "rowz ")
    problems = integrity.before_versioning(project, cache, "data/raw")
    assert [(c.area, c.path, c.status) for c in problems] == [("data", str(copy), "MISMATCH")]


def test_before_versioning_catches_a_cache_object_the_commit_would_reuse(tmp_path):
    project, entry, cache, _ = _project(tmp_path)
    obj = object_path(cache, md5(entry / "selection.parquet"))
    flip(obj)
    raw_obj = cache_copy(cache, project / "data" / "raw" / "pool.jsonl")
    flip(raw_obj)
    problems = integrity.before_versioning(project, cache, "data/raw")
    assert sorted((c.area, c.path) for c in problems) == sorted([("dvc-cache", str(obj)), ("dvc-cache", str(raw_obj))])


def test_timings_of_a_published_copy_may_differ(tmp_path):
    """Wall times are not content: a copy published from an entry with the same content keeps its timings."""
    project, _, cache, _ = _project(tmp_path)
    timings = project / "data" / "rounds" / "round-0" / "select" / TIMINGS
    timings.unlink()
    timings.write_text("2.5")
    assert integrity.before_versioning(project, cache, "data/raw") == []


def _bytes(*paths: Path) -> list[bytes]:
    return [p.read_bytes() for p in paths]


def test_repair_restores_the_store_and_cache_from_the_remote_and_republishes(tmp_path):
    project, entry, cache, remote = _project(tmp_path)
    store_file = entry / "selection.parquet"
    good = store_file.read_bytes()
    copy = project / "data" / "rounds" / "round-0" / "select" / "selection.parquet"
    obj, remote_obj = object_path(cache, md5(store_file)), object_path(remote, md5(store_file))
    flip(store_file)
    flip(obj)
    actions = repair.plan(project, cache, [remote])
    assert [(a.kind, a.path, a.source) for a in actions] == [
        (repair.RESTORE, str(store_file), str(remote_obj)), (repair.RESTORE, str(obj), str(remote_obj)),
        (repair.REPUBLISH, str(copy.parent), str(entry))]
    repair.apply(project, actions)
    assert _bytes(store_file, copy, obj, remote_obj) == [good] * 4
    assert not store_file.stat().st_mode & stat.S_IWUSR  # restored read-only, as sealed
    assert repair.plan(project, cache, [remote]) == []
    assert integrity.before_versioning(project, cache, "data/raw") == []


def test_repair_sets_an_entry_aside_when_no_good_copy_exists(tmp_path):
    project, entry, cache, remote = _project(tmp_path)
    flip(entry / "stats.json", 0)
    for root in (cache, remote):  # stats.json's only copies elsewhere are damaged too
        flip(object_path(root, read_seal(entry)["stats.json"][2]), 0)
    actions = repair.plan(project, cache, [remote])
    assert [a.kind for a in actions] == [repair.SET_ASIDE, repair.DELETE, repair.DELETE, repair.REMOVE]
    repair.apply(project, actions)
    assert not entry.exists()
    assert [p.name.split("-")[0] for p in (project / ".curate" / "corrupt" / "select").iterdir()] == ["k1"]
    assert not (project / "data" / "rounds" / "round-0" / "select").exists()
    assert "data/rounds/round-0/select" not in published.read(project)
    assert repair.plan(project, cache, [remote]) == []


def test_repair_mends_every_hard_link_of_a_damaged_file(tmp_path):
    """An MLflow model's files are hard links of the store's: they are damaged with it and restored with it."""
    project, entry, cache, remote = _project(tmp_path)
    logged = project / ".curate" / "mlruns" / "1" / "models" / "m-1" / "artifacts" / "selection.parquet"
    logged.parent.mkdir(parents=True)
    os.link(entry / "selection.parquet", logged)
    good = logged.read_bytes()
    flip(logged)
    actions = repair.plan(project, cache, [remote])
    assert (repair.RESTORE, str(logged)) in [(a.kind, a.path) for a in actions]
    repair.apply(project, actions)
    assert _bytes(entry / "selection.parquet", logged) == [good, good]


def test_repair_sets_aside_an_unsealed_entry_that_differs_from_its_recorded_digest(tmp_path):
    project = tmp_path / "p"
    entry = project / ".curate" / "store" / "select" / "old"
    entry.mkdir(parents=True)
    (entry / "selection.parquet").write_text("rows")
    recorded = {str(entry): digest(entry)}
    assert repair.plan(project, tmp_path / "cache", [], recorded=recorded) == []
    flip(entry / "selection.parquet", 0)
    assert [(a.kind, a.path) for a in repair.plan(project, tmp_path / "cache", [], recorded=recorded)] == \
        [(repair.SET_ASIDE, str(entry))]


@pytest.mark.parametrize("where", ["pool.jsonl", "sub", "eval/skill.jsonl", "raw"])
def test_a_symlinked_input_is_refused_and_its_target_untouched(tmp_path, where):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "pool.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    os.chmod(outside / "pool.jsonl", 0o640)
    before = (outside / "pool.jsonl").stat()
    raw = tmp_path / "project" / "data" / "raw"
    (raw / "eval").mkdir(parents=True)
    (raw / "own.jsonl").write_text('{"instruction": "c", "output": "d"}\n')
    if where == "raw":
        shutil.rmtree(raw)
        raw.symlink_to(outside)
        link = raw
    else:
        link = raw / where
        link.symlink_to(outside / "pool.jsonl" if where.endswith(".jsonl") else outside)
    with pytest.raises(SymlinkedInput, match="symbolic link") as e:
        discover(raw)
    assert e.value.path == str(link)
    after = (outside / "pool.jsonl").stat()
    assert (after.st_mode, after.st_nlink, after.st_ino) == (before.st_mode, before.st_nlink, before.st_ino)


def test_unshare_gives_every_hard_linked_cache_object_a_copy_of_its_own(tmp_path):
    """A project of an older curate: DVC's cache objects hard-linked with the store and the user's raw files."""
    from curate.versioning import dvc

    project = tmp_path / "p"
    project.mkdir()
    dvc.ensure_repo(project, ".curate/dvc-remote")
    user_file = project / "pool.jsonl"
    user_file.write_text('{"instruction": "a", "output": "b"}\n')
    obj = object_path(dvc.cache_dir(project), md5(user_file))
    obj.parent.mkdir(parents=True)
    os.link(user_file, obj)
    leftover = obj.with_name(f".tmp-unshare-{obj.name}")
    leftover.write_text("half a copy")  # what a killed unshare leaves
    assert dvc.unshare_cache(project) == 1
    assert obj.read_bytes() == user_file.read_bytes() and obj.stat().st_ino != user_file.stat().st_ino
    assert user_file.stat().st_nlink == 1 and not leftover.exists()
    assert dvc.unshare_cache(project) == 0


def test_a_restore_source_is_checked_when_it_is_used(tmp_path):
    """A copy that was sound when found but changed since (or was never what it was listed as) is no source."""
    good = tmp_path / "good"
    good.write_bytes(b"the recorded bytes")
    d = repair.Damage("store", tmp_path / "damaged", md5(good), hashlib.sha256(good.read_bytes()).hexdigest())
    assert repair._source(d, {d.md5: good}, {}) == good
    flip(good, 0)
    assert repair._source(d, {d.md5: good}, {}) is None
    assert repair._source(d, {}, {d.md5: good}) is None
