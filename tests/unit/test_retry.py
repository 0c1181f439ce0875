"""Which failures the service-facing stages retry."""
from __future__ import annotations

import errno
import sqlite3
import subprocess

from tasks.retry import is_transient


def test_transient_failures_are_retried():
    assert is_transient(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    assert is_transient(TimeoutError())
    assert is_transient(OSError(errno.ECONNRESET, "reset"))
    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert is_transient(subprocess.CalledProcessError(1, ["dvc", "push"], stderr="ERROR: Connection refused"))
    try:  # wrapped: the cause counts
        try:
            raise ConnectionError("down")
        except ConnectionError as inner:
            raise RuntimeError("logging failed") from inner
    except RuntimeError as outer:
        assert is_transient(outer)


def test_permanent_failures_are_not():
    assert not is_transient(ValueError("bad parameter"))
    assert not is_transient(FileNotFoundError(errno.ENOENT, "missing"))
    assert not is_transient(sqlite3.OperationalError("no such table: runs"))
    assert not is_transient(subprocess.CalledProcessError(1, ["dvc", "push"], stderr="ERROR: no remote specified"))
    assert not is_transient(None)
