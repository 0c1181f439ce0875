"""Which content-store artifact each published workspace path (`data/...`) came from.

The workspace files are hard links to store files, but inodes cannot say which entry a path was
published from: with a hard-linked DVC cache, DVC links a new output whose bytes it already holds to
the existing cache file, i.e. to an older entry's inode. So every publish records its source by
name in `<state>/published.json` (its path inside the store: `<stage>/<key>[/sub/path]`); `curate gc`
keeps the entries listed there and `curate stage` reads its inputs from them.
"""
from __future__ import annotations

import json
from pathlib import Path

from curate.artifacts import write_json
from curate.env import STATE_DIR_NAME, state_dir

MANIFEST = "published.json"


def _store_relative(path: str | Path) -> str | None:
    """`<stage>/<key>[/...]` of a path inside a content store, else None."""
    parts = Path(path).parts
    for i in range(len(parts) - 3):
        if parts[i] == STATE_DIR_NAME and parts[i + 1] == "store":
            return "/".join(parts[i + 2:])
    return None


def store_parts(path: str | Path) -> tuple[Path, str] | None:
    """(the store entry directory, the path inside it: "" for the entry itself) of a path inside a
    content store, else None."""
    inside = _store_relative(path)
    if inside is None:
        return None
    parts = inside.split("/")
    root = Path(path)
    for _ in parts[2:]:
        root = root.parent
    return root, "/".join(parts[2:])


def _entry(inside: str) -> str:
    """`<stage>/<key>` of a path inside the store given as `<stage>/<key>[/...]`."""
    return "/".join(inside.split("/")[:2])


def store_name(path: str | Path) -> str | None:
    """`<stage>/<key>` of a path inside a content store (`.../.curate/store/<stage>/<key>[/...]`), else None.
    By name, so that a moved project still matches its recorded paths."""
    inside = _store_relative(path)
    return _entry(inside) if inside else None


def _manifest(project: Path | str) -> Path:
    return state_dir(Path(project)) / MANIFEST


def read(project: Path | str) -> dict[str, str] | None:
    """Workspace path (relative to the project) -> its source inside the store; None before the first publish."""
    path = _manifest(project)
    return json.loads(path.read_text()) if path.exists() else None


def _under(path: str, rel: str) -> bool:
    return path == rel or path.startswith(rel.rstrip("/") + "/")


def record(project: Path | str, rel: str, source: str | Path) -> None:
    """`rel` now holds `source`, a store artifact (nothing is listed if `source` is not in a store)."""
    current = {k: v for k, v in (read(project) or {}).items() if not _under(k, rel)}
    inside = _store_relative(source)
    if inside:
        current[rel] = inside
    write_json(current, _manifest(project))


def forget(project: Path | str, rel: str) -> None:
    """`rel` (and everything under it) was removed from the workspace."""
    current = read(project)
    if current is not None:
        write_json({k: v for k, v in current.items() if not _under(k, rel)}, _manifest(project))


def source(project: Path | str, rel: str) -> Path | None:
    """The store artifact `rel` was published from, when the manifest names one that still exists."""
    inside = (read(project) or {}).get(rel)
    path = state_dir(Path(project)) / "store" / inside if inside else None
    return path if path is not None and path.exists() else None


def entries(project: Path | str) -> set[str] | None:
    """The store entries (`<stage>/<key>`) the workspace was published from; None before the first publish."""
    current = read(project)
    return None if current is None else {_entry(v) for v in current.values()}
