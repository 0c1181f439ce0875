"""Prefect inside the `curate` process: its ephemeral API server dies with the process, and a failed
run's traceback is kept once, in a file, instead of twice on the console (docs/architecture.md §8).

Without PREFECT_API_URL, Prefect runs a temporary API server (uvicorn, `SubprocessASGIServer`) as a
child process and stops it at exit. A SIGKILL skips that: the server stayed, reparented to pid 1, on
127.0.0.1 with the project's database open. `ephemeral_server()` starts it before the flow, from the
main thread, with Prefect's own command but the Linux parent-death signal set in the child
(PR_SET_PDEATHSIG: the kernel sends SIGTERM when the parent dies, however it dies); Prefect then finds
the server running and uses it. The signal follows the thread that started the child, so the main
thread, which lives as long as the process, must start it.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _parent_death_signal():
    """The function a child runs between fork and exec: SIGTERM when its parent dies. Resolved before the
    fork (the child only calls it)."""
    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()

    def set_in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return set_in_child


def ephemeral_server() -> None:
    """Start Prefect's ephemeral API server now, in a child the kernel stops when this process dies. A no-op
    when PREFECT_API_URL names a server, when the ephemeral server is turned off, and off Linux (there, a
    killed run leaves it: docs/known-limits.md)."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled or not sys.platform.startswith("linux"):
        return
    import prefect.server.api.server as server_module

    class DiesWithParent(server_module.SubprocessASGIServer):
        def _run_uvicorn_command(self):
            real = server_module.subprocess  # Prefect's exact command and environment, plus the signal
            server_module.subprocess = SimpleNamespace(
                Popen=functools.partial(real.Popen, preexec_fn=_parent_death_signal()))
            try:
                return super()._run_uvicorn_command()
            finally:
                server_module.subprocess = real

    DiesWithParent().start()  # registered as Prefect's ephemeral server: its clients reuse it


class _NoRunTraceback(logging.Filter):
    """Leaves the traceback out of Prefect's flow- and task-run records on the console (its API log handler,
    which runs first, still sends them to the server for the UI)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(("prefect.flow_runs", "prefect.task_runs")):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_run_tracebacks() -> None:
    """Prefect logs a failing task's traceback, then the flow's with it again; `curate run` keeps it once, in a
    file it names (`write_traceback`)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler):
            handler.addFilter(_NoRunTraceback())


def write_traceback(error: BaseException, state_dir: Path) -> Path:
    """The failure's traceback in `.curate/logs/failure-<time>-<pid>.txt`; returns the path."""
    import time

    path = state_dir / "logs" / f"failure-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(traceback.format_exception(error)))
    return path
