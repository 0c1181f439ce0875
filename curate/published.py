"""Which content-store entry each published workspace path (`data/...`) came from.

The workspace files are hard links to store files, but inodes cannot say which entry a path was
published from: with a hard-linked DVC cache, DVC links a new output whose bytes it already holds to
the existing cache file, i.e. to an older entry's inode. So every publish records its source entry
by name in `<state>/published.json`, and `curate gc` keeps the entries listed there.
"""
from __future__ import annotations

import json
from pathlib import Path

from curate.artifacts import write_json
from curate.env import STATE_DIR_NAME, state_dir

MANIFEST = "published.json"


def store_name(path: str | Path) -> str | None:
    """`<stage>/<key>` of a path inside a content store (`.../.curate/store/<stage>/<key>[/...]`), else None.
    By name, so that a moved project still matches its recorded paths."""
    parts = Path(path).parts
    for i in range(len(parts) - 3):
        if parts[i] == STATE_DIR_NAME and parts[i + 1] == "store":
            return f"{parts[i + 2]}/{parts[i + 3]}"
    return None


def _manifest(project: Path | str) -> Path:
    return state_dir(Path(project)) / MANIFEST


def read(project: Path | str) -> dict[str, str] | None:
    """Workspace path (relative to the project) -> store entry name; None before the first publish."""
    path = _manifest(project)
    return json.loads(path.read_text()) if path.exists() else None


def _under(path: str, rel: str) -> bool:
    return path == rel or path.startswith(rel.rstrip("/") + "/")


def record(project: Path | str, rel: str, source: str | Path) -> None:
    """`rel` now holds the store entry of `source` (nothing, if `source` is not in a store)."""
    current = {k: v for k, v in (read(project) or {}).items() if not _under(k, rel)}
    name = store_name(source)
    if name:
        current[rel] = name
    write_json(current, _manifest(project))


def forget(project: Path | str, rel: str) -> None:
    """`rel` (and everything under it) was removed from the workspace."""
    current = read(project)
    if current is not None:
        write_json({k: v for k, v in current.items() if not _under(k, rel)}, _manifest(project))


def entries(project: Path | str) -> set[str] | None:
    """The store entries the workspace was published from; None before the first publish."""
    current = read(project)
    return None if current is None else set(current.values())
