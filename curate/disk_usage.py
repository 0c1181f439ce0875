"""The bytes a run adds to disk: store, workspace (`data/`), DVC cache, DVC remote, MLflow artifacts.

A census lists every file of each area by inode (`stat` only, nothing is read), so a file that is
hard-linked (or the same inode reached twice) is counted once, in the first area that holds it.
A run's added bytes are the sizes of the inodes present after it and not before it.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from curate.env import state_dir
from curate.gc import human_bytes

AREAS = ("store", "workspace", "dvc_cache", "dvc_remote", "mlflow_artifacts")
LABELS = {"store": "store", "workspace": "data/", "dvc_cache": "DVC cache", "dvc_remote": "DVC remote", "mlflow_artifacts": "MLflow artifacts"}
Census = dict[str, dict[tuple[int, int], int]]  # area -> (device, inode) -> size in bytes


def area_paths(project: Path | str, dvc_remote: str) -> dict[str, Path]:
    """Where each area lives: the DVC cache as DVC reports it, the remote from `tracking.dvc_remote`."""
    from curate.versioning.dvc import cache_dir

    state = state_dir(Path(project))
    return {"store": state / "store", "workspace": Path(project) / "data", "dvc_cache": cache_dir(project),
            "dvc_remote": (Path(project) / dvc_remote).resolve(), "mlflow_artifacts": state / "mlruns"}


def file_stats(root: Path):
    """The stat of every regular file at or under `root` (symlinks not followed; unreadable parts skipped)."""
    if root.is_file():
        yield root.stat()
        return
    stack = [str(root)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    try:
                        yield e.stat(follow_symlinks=False)
                    except OSError:
                        continue


def census(paths: dict[str, Path]) -> Census:
    """Every file of every area by inode; an inode already listed in an earlier area is not listed again."""
    seen: set[tuple[int, int]] = set()
    out: Census = {}
    for area in AREAS:
        files = {}
        for st in file_stats(paths[area]):
            ident = (st.st_dev, st.st_ino)
            if ident not in seen:
                seen.add(ident)
                files[ident] = st.st_size
        out[area] = files
    return out


def added_bytes(before: Census, after: Census) -> dict[str, int]:
    """Bytes of the inodes each area holds after and no area held before."""
    old = set().union(*before.values()) if before else set()
    return {area: sum(size for ident, size in after[area].items() if ident not in old) for area in AREAS}


@dataclass
class RunUsage:
    """Usage: `u = RunUsage.start(project, remote)` before a run, `u.finish()` after it."""

    paths: dict[str, Path]
    before: Census
    started: float  # seconds since the epoch

    @classmethod
    def start(cls, project: Path | str, dvc_remote: str) -> "RunUsage":
        paths = area_paths(project, dvc_remote)
        return cls(paths, census(paths), time.time())

    def finish(self) -> dict[str, dict[str, int]]:
        """{"added": area -> bytes this run added, "total": area -> bytes the area holds now} (plus "all")."""
        after = census(self.paths)
        added = added_bytes(self.before, after)
        total = {area: sum(after[area].values()) for area in AREAS}
        return {"added": {**added, "all": sum(added.values())}, "total": {**total, "all": sum(total.values())}}


def describe(usage: dict[str, dict[str, int]]) -> str:
    """One line: the bytes added per area and in all, and what the areas hold now."""
    added, total = usage["added"], usage["total"]
    per_area = ", ".join(f"{LABELS[a]} {human_bytes(added[a])}" for a in AREAS)
    return f"{per_area}; {human_bytes(added['all'])} in all (these now hold {human_bytes(total['all'])})"
