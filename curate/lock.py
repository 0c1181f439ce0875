"""One writer per project: `curate run` holds an exclusive lock on `.curate/run.lock`.

The lock is an OS file lock (flock), so a killed process releases it at once: it can never go stale.
A second run on the same project refuses with a message naming the holder. The flow takes the lock
itself (so a run started by a served deployment is covered too); inside `curate run`, which already
holds it, that is a no-op.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class ProjectLocked(RuntimeError):
    pass


_HELD: set[str] = set()  # locks this process holds: taking one again (the flow inside `curate run`) is a no-op


@contextmanager
def project_lock(state_dir: Path, command: str = "curate run") -> Iterator[None]:
    path = Path(state_dir) / "run.lock"
    if str(path.resolve()) in _HELD:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "{}"
            raise ProjectLocked(
                f"another run holds {path}: {holder}. Wait for it to finish (the lock is released when its "
                f"process exits, even if killed), then run again."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command, "since": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode(), 0)
        _HELD.add(str(path.resolve()))
        try:
            yield
        finally:
            _HELD.discard(str(path.resolve()))
    finally:
        os.close(fd)  # closing the descriptor releases the lock
