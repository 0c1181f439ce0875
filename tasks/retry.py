"""Retries with exponential backoff for the stages that talk to services (MLflow's store, the DVC
remote), on transient failures only: a refused or reset connection, a timeout, a locked SQLite
database. Anything else (bad parameters, a missing file, a bug) fails at once, so the flow stops with
the real cause instead of retrying it three times.
"""
from __future__ import annotations

import errno
import sqlite3
import subprocess

from prefect.tasks import exponential_backoff

TRANSIENT_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTUNREACH,
                    errno.ENETUNREACH, errno.EPIPE}
TRANSIENT_TEXT = ("connection refused", "connection reset", "max retries exceeded", "timed out", "database is locked",
                  "temporarily unavailable", "service unavailable", "502", "503", "504")


def is_transient(error: BaseException | None) -> bool:
    """True when `error`, or an exception it was raised from, looks like a service briefly unreachable."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, (ConnectionError, TimeoutError)):
            return True
        if isinstance(error, OSError) and error.errno in TRANSIENT_ERRNOS:
            return True
        if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
            return True
        text = f"{error} {getattr(error, 'stderr', '') or ''}".lower()
        if isinstance(error, subprocess.CalledProcessError) or type(error).__name__ in (
                "MlflowException", "RestException", "HTTPError", "ConnectError"):
            if any(t in text for t in TRANSIENT_TEXT):
                return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def retry_transient(task, task_run, state) -> bool:
    """Prefect `retry_condition_fn`: retry only transient failures."""
    try:
        state.result()
    except BaseException as e:  # noqa: BLE001 - the failed run's exception, re-raised by Prefect
        return is_transient(e)
    return False


RETRY = dict(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_condition_fn=retry_transient)
