"""Faults against the lineage, on a real project (Prefect, MLflow, DVC): one flipped byte in a store entry
is caught before anything is versioned, and `curate repair` restores every copy (store, data/, DVC cache,
remote); `audit verify` covers the raw pool and says when a store entry is gone; a symlinked input is
refused and the file it points at is left exactly as it was."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from curate.seal import read_seal
from curate.versioning.objects import object_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def flip(path: Path) -> None:
    data = path.read_bytes()
    fd = os.open(path, os.O_WRONLY)  # in place: every hard link of the file sees the change
    os.pwrite(fd, bytes([data[len(data) // 2] ^ 0xFF]), len(data) // 2)
    os.close(fd)


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def parent_runs(project) -> int:
    client = MlflowClient(tracking_uri=project.tracking_uri)
    return len(client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.`curate.kind` = 'parent'"))


def test_a_flipped_byte_is_never_versioned_and_repair_restores_every_copy(make_project, tmp_path):
    project = make_project()
    root = project.root
    project.curate("demo-data", "--size", "200")
    project.curate("run")
    published = root / "data" / "rounds" / "round-1" / "select" / "selection.parquet"
    store_file = next(f for f in (root / ".curate" / "store" / "select").glob("*/selection.parquet")
                      if f.stat().st_ino == published.stat().st_ino)
    good = store_file.read_bytes()
    md5 = read_seal(store_file.parent)["selection.parquet"][2]
    cache_obj, remote_obj = object_path(root / ".dvc" / "cache", md5), object_path(root / ".curate" / "dvc-remote", md5)
    assert cache_obj.read_bytes() == remote_obj.read_bytes() == good
    assert cache_obj.stat().st_ino != store_file.stat().st_ino  # the DVC cache holds a copy of its own
    lock, remote_files, runs = (root / "dvc.lock").read_bytes(), tree(root / ".curate" / "dvc-remote"), parent_runs(project)

    flip(store_file)  # the published copy is the same inode: it changes too
    verify = project.curate("audit", "verify", check=False)
    assert verify.returncode == 1 and str(store_file) in verify.stdout
    run = project.curate("run", check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "selection.parquet changed" in run.stderr and "curate repair" in run.stderr
    # nothing was committed, pushed or recorded
    assert (root / "dvc.lock").read_bytes() == lock
    assert tree(root / ".curate" / "dvc-remote") == remote_files
    assert parent_runs(project) == runs

    flip(cache_obj)  # the cache's copy damaged as well: only the remote holds the good bytes now
    dry = project.curate("repair", "--dry-run", check=False)
    assert dry.returncode == 1 and store_file.read_bytes() != good
    project.curate("repair")
    assert [published.read_bytes(), store_file.read_bytes(), cache_obj.read_bytes(), remote_obj.read_bytes()] == [good] * 4
    assert "every store entry" in project.curate("repair").stdout  # nothing left to do

    project.curate("run")
    assert "up to date" in project.dvc("status").stdout
    assert project.curate("audit", "verify").returncode == 0


def test_audit_verify_covers_the_raw_pool_and_says_when_a_store_entry_is_gone(make_project):
    project = make_project()
    root = project.root
    project.curate("demo-data", "--size", "200")
    project.curate("run")
    raw = sorted((root / "data" / "raw").glob("*.jsonl"))[0]
    original = raw.read_bytes()
    flip(raw)
    verify = project.curate("audit", "verify", check=False)
    assert verify.returncode == 1
    assert f"MISMATCH  raw" in verify.stdout and str(raw) in verify.stdout
    raw.write_bytes(original)
    evaluate = root / "data" / "eval" / "round-0"
    entry = next(e for e in (root / ".curate" / "store" / "evaluate").iterdir()
                 if (e / "metrics.json").stat().st_ino == (evaluate / "metrics.json").stat().st_ino)
    shutil.rmtree(entry)
    verify = project.curate("audit", "verify")
    assert "1 store entries gone" in verify.stdout and "optimizer state" in verify.stdout


def test_a_symlinked_input_is_refused_and_the_outside_file_is_unchanged(make_project, tmp_path):
    project = make_project()
    project.curate("demo-data", "--size", "200")
    outside = tmp_path / "outside.jsonl"
    outside.write_text('{"instruction": "Say hi.", "output": "hi"}\n' * 20)
    os.chmod(outside, 0o664)
    before = outside.stat()
    (project.root / "data" / "raw" / "linked.jsonl").symlink_to(outside)
    run = project.curate("run", check=False)
    assert run.returncode == 2 and "symbolic link" in run.stderr
    after = outside.stat()
    assert (after.st_ino, after.st_mode, after.st_nlink, after.st_mtime_ns) == \
        (before.st_ino, before.st_mode, before.st_nlink, before.st_mtime_ns)
    assert outside.read_text() == '{"instruction": "Say hi.", "output": "hi"}\n' * 20
    assert (project.root / "data" / "raw" / "linked.jsonl").is_symlink()
