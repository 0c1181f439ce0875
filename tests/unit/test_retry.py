"""Which failures the service-facing stages retry."""
from __future__ import annotations

import errno
import sqlite3
import subprocess

import pytest

from tasks.retry import is_transient, retry_transient


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


@pytest.mark.parametrize("stage", ["record", "disk usage", "version"])
def test_the_service_stages_carry_the_retry_policy(stage):
    """The real tasks that talk to MLflow's store and the DVC remote: 3 retries after 2, 4 and 8 s, and only
    when their failure is transient (the condition sees the failed run's exception)."""
    from prefect.states import Failed

    from tasks.record import record, record_disk_usage
    from tasks.version import version

    task = {"record": record, "disk usage": record_disk_usage, "version": version}[stage]
    assert task.name == stage
    assert task.retries == 3 and task.retry_delay_seconds == [2, 4, 8]
    assert task.retry_condition_fn is retry_transient
    assert task.retry_condition_fn(task, None, Failed(data=ConnectionRefusedError(errno.ECONNREFUSED, "refused")))
    assert not task.retry_condition_fn(task, None, Failed(data=ValueError("bad parameter")))
