"""Mistakes a user can fix: a bad argument, path or id. The command line prints the message as one line
(`error: ...`) and exits 2, without a traceback; the message names the problem and the fix."""
from __future__ import annotations

from pathlib import Path


class UsageError(Exception):
    pass


def require_directory(path: Path, flag: str) -> Path:
    """`path` when it is a directory or can become one; UsageError when it, or a directory above it, is a file."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        where = f"{flag} {path}" if existing == path else f"{flag} {path}: {existing}"
        raise UsageError(f"{where} is a file, not a directory: name a new or existing directory")
    return path
