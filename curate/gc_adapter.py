"""The project side of `curate gc`: what is on disk, what the kept runs reference, and the deletion.

Candidates: content-store entries and killed rounds' unfinished checkpoints (`.curate/store`), DVC
objects in the cache and in a local remote, and the artifacts of MLflow logged models. References of
a kept run: its MLflow tags `curate.path.*` (the store entries that `curate audit verify`, `export`,
`report` and a resume read), the `dvc.lock` it logged (with the `.dir` listings it names), and the
models its rounds logged. The workspace (`data/`, `dvc.lock`, `*.dvc`, and those files at git HEAD)
is always kept. The decision itself is curate/gc.py.

Left alone: MLflow runs, their metrics and small artifacts (selections, removals, dvc.lock: `curate
audit row` reads them for every run), the row score cache, the dedup pointers, Prefect's results and
DVC's run cache (a run-cache entry whose objects are gone is a cache miss, not an error).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from curate import gc, published
from curate.artifacts import local_path
from curate.disk_usage import file_stats
from curate.env import state_dir
from curate.published import store_name
from curate.versioning.objects import HASH, listing, named_hashes

INPROGRESS_PREFIX = ".inprogress-"  # curate/training/trainer.py: a killed round's in-round checkpoint
PARTIAL_SUFFIX = ".model"  # tasks/train.py: a finished round's weights before they move into the entry


def _tree(path: Path) -> list[os.stat_result]:
    return list(file_stats(path))


def freeable_bytes(path: Path) -> int:
    """Bytes that deleting `path` frees: each inode once, and only when no link to it lives elsewhere."""
    links: dict[tuple[int, int], list[os.stat_result]] = {}
    for st in _tree(path):
        links.setdefault((st.st_dev, st.st_ino), []).append(st)
    return sum(sts[0].st_size for sts in links.values() if len(sts) >= sts[0].st_nlink)


def _inodes(root: Path) -> set[tuple[int, int]]:
    return {(st.st_dev, st.st_ino) for st in _tree(root)} if root.exists() else set()


def _last_written(path: Path) -> float:
    """When an entry was placed or last changed: the newest mtime/ctime of it and what it holds."""
    stats = [path.stat()] + _tree(path)
    return max(max(st.st_mtime, st.st_ctime) for st in stats)


def store_candidates(project: Path) -> list[gc.Candidate]:
    root = state_dir(project) / "store"
    listed = published.entries(project)
    workspace = _inodes(project / "data") if listed is None else set()  # a project from before the manifest
    out = []
    for stage in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for entry in sorted(p for p in stage.iterdir() if p.is_dir()):
            if entry.name.startswith(".tmp-"):
                continue  # a killed writer's leftover: the next run removes it
            partial = entry.name.startswith(INPROGRESS_PREFIX) or entry.name.endswith(PARTIAL_SUFFIX)
            out.append(gc.Candidate(
                area=gc.PARTIAL if partial else gc.STORE, name=f"{stage.name}/{entry.name}", path=str(entry),
                size=freeable_bytes(entry), written=_last_written(entry),
                in_workspace=not partial and (f"{stage.name}/{entry.name}" in listed if listed is not None
                                              else bool(_inodes(entry) & workspace))))
    return out


def dvc_objects(root: Path, area: str) -> list[gc.Candidate]:
    """The objects of a DVC 3 cache or local remote (`files/md5/ab/cdef...`)."""
    base = root / "files" / "md5"
    out = []
    for prefix in sorted(base.iterdir()) if base.is_dir() else []:
        if not (prefix.is_dir() and len(prefix.name) == 2):
            continue
        for f in sorted(prefix.iterdir()):
            name = prefix.name + f.name
            if f.is_file() and HASH.match(name):
                out.append(gc.Candidate(area=area, name=name, path=str(f), size=freeable_bytes(f)))
    return out


def model_candidates() -> list[gc.Candidate]:
    from curate.tracking import mlflow_tracking as mt

    out = []
    for m in mt.logged_models():
        path = local_path(m["artifact_location"])
        if path is None or not path.exists():
            continue  # a remote artifact store, or already removed
        directory = path.parent if path.name == "artifacts" else path
        out.append(gc.Candidate(area=gc.MLFLOW_MODEL, name=m["model_id"], path=str(directory),
                                size=freeable_bytes(directory), run_id=m["parent_run_id"]))
    return out


def _workspace_texts(project: Path) -> list[str]:
    files = [project / "dvc.lock", *project.glob("*.dvc"), *(project / "data").rglob("*.dvc")]
    texts = [f.read_text() for f in files if f.is_file()]
    for rel in ("dvc.lock", "data.dvc"):
        proc = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=project, capture_output=True, text=True)
        if proc.returncode == 0:
            texts.append(proc.stdout)
    return texts


def dvc_references(project: Path, kept: list[gc.ParentRun], roots: list[Path]) -> tuple[set[str] | None, str]:
    """Every DVC object the kept runs' dvc.lock files and the workspace name (None when one cannot be
    read, or an out's `.dir` listing is in neither cache nor remote), and why when None."""
    from curate.tracking import mlflow_tracking as mt

    texts = _workspace_texts(project)
    with tempfile.TemporaryDirectory() as tmp:
        for run in kept:
            lock = mt.download(run.run_id, "dvc/dvc.lock", Path(tmp) / run.run_id)
            if lock is None:
                return None, f"run {run.run_id} logged no dvc.lock"
            texts.append(lock.read_text())
    refs: set[str] = set()
    for text in texts:
        outs, deps = named_hashes(yaml.safe_load(text) or {})
        refs |= outs | deps
        for name in outs | deps:
            if name.endswith(".dir"):
                listed = listing(name, roots)
                if listed is None and name in outs:
                    return None, f"the listing {name} of a kept output is in neither the DVC cache nor the remote"
                refs.update(entry["md5"] for entry in listed or [])  # a dep's listing never cached: code, not data
    return refs, ""


def gather(project: Path, keep: int) -> tuple[gc.Plan, list[gc.ParentRun], list[str]]:
    """The plan for keeping `keep` finished runs per experiment (curate/gc.py `kept_runs`), the kept runs, and
    notes for the user."""
    from curate.tracking import mlflow_tracking as mt
    from curate.versioning.dvc import cache_dir, is_repo, local_remotes

    recorded = mt.parent_runs()
    runs = [gc.ParentRun(r["run_id"], r["experiment_id"], r["start_time"] / 1000, r["status"]) for r in recorded]
    kept = gc.kept_runs(runs, keep)
    kept_ids = {r.run_id for r in kept}
    tags = {r["run_id"]: r["tags"] for r in recorded if r["run_id"] in kept_ids}
    store = {name for t in tags.values() for k, v in t.items() if k.startswith("curate.path.") and (name := store_name(v))}
    notes = []
    candidates = store_candidates(project) + model_candidates()
    dvc_refs: set[str] | None = None
    if not runs:
        notes.append("no run is recorded in MLflow: nothing is provably unreferenced, nothing is removed")
    elif is_repo(project):
        cache, remotes = cache_dir(project), local_remotes(project)
        dvc_refs, why = dvc_references(project, kept, [cache, *remotes])
        if dvc_refs is None:
            notes.append(f"DVC objects are all kept: {why}")
        candidates += dvc_objects(cache, gc.DVC_CACHE) + [c for r in remotes for c in dvc_objects(r, gc.DVC_REMOTE)]
    refs = gc.References(kept_runs=frozenset(kept_ids), store=frozenset(store),
                         dvc=frozenset(dvc_refs) if dvc_refs is not None else None,
                         newest_run_start=max((r.start_time for r in runs), default=None))
    score_cache = state_dir(project) / "score-cache"
    cached = sum(st.st_size for st in _tree(score_cache)) if score_cache.exists() else 0
    notes.append(f"left alone: the row score cache ({gc.human_bytes(cached)} in {score_cache}); the dedup index "
                 f"is part of the latest run's dedup entry, which is kept")
    return gc.plan(candidates, refs), kept, notes


def apply(p: gc.Plan) -> int:
    """Delete what the plan removes; returns the bytes freed. A store entry or model directory is first
    renamed to a `.tmp-` name, so an interrupted gc never leaves a half-deleted entry under its key."""
    from curate.tracking import mlflow_tracking as mt

    when = time.strftime("%Y-%m-%dT%H:%M:%S")
    freed = 0
    for d in p.removals:
        c, path = d.candidate, Path(d.candidate.path)
        if not path.exists():
            continue
        if c.area in (gc.DVC_CACHE, gc.DVC_REMOTE):
            path.unlink()
        else:
            doomed = path.with_name(f".tmp-gc-{path.name}-{os.getpid()}")
            os.rename(path, doomed)
            shutil.rmtree(doomed)
            if c.area == gc.MLFLOW_MODEL:
                mt.mark_model_removed(c.name, when)
        freed += c.size
    return freed
