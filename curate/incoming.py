"""New raw files for the next night: everything in the incoming directory joins the raw pool.

At the start of a run (under the project lock), every file in `raw.incoming` is checked with the
ingest's format detection first; if any is not a supported format, the run stops with a message
naming it and nothing is moved. Otherwise each file is renamed (atomic, same filesystem) into the
raw directory as `incoming/<UTC date>-<name>`, never over an existing file; the version step then
records the new raw pool in `data.dvc`. Files whose name starts with "." or ends in .tmp/.part are
left alone: write into incoming under such a name and rename when complete.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from curate.ingest.formats import discover

PARTIAL_SUFFIXES = (".tmp", ".part")


def _ready(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and not path.name.endswith(PARTIAL_SUFFIXES)


def take_incoming(incoming: Path, raw: Path, today: str | None = None) -> list[Path]:
    """Move the ready files of `incoming` into `raw/incoming/`; returns their new paths (empty if none)."""
    incoming, raw = Path(incoming), Path(raw)
    files = sorted(p for p in incoming.iterdir() if _ready(p)) if incoming.is_dir() else []
    if not files:
        return []
    for f in files:
        discover(f)  # raises UnsupportedFormatError naming the file: nothing is moved
    today = today or time.strftime("%Y-%m-%d", time.gmtime())
    target_dir = raw / "incoming"
    target_dir.mkdir(parents=True, exist_ok=True)
    moved = []
    for f in files:
        target = target_dir / f"{today}-{f.name}"
        n = 1
        while target.exists():
            n += 1
            target = target_dir / f"{today}-{n}-{f.name}"
        os.rename(f, target)
        moved.append(target)
    return moved
