import fcntl
import json
import os
import subprocess
import sys

import pytest

from curate.lock import ProjectLocked, project_lock

HOLD = """
import sys, time
from pathlib import Path
from curate.lock import project_lock
with project_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_second_writer_refused_and_killed_holder_releases(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(ProjectLocked, match="another run holds"):
            with project_lock(tmp_path):
                pass
    finally:
        proc.kill()  # SIGKILL: no cleanup code runs
        proc.wait()
    with project_lock(tmp_path):  # the OS released the dead holder's lock
        pass


def os_lock_is_free(path) -> bool:
    """Can a new open file description take the flock, as another process would?"""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # releases the probe's own lock
    return True


def test_lock_is_reentrant_across_sequential_runs(tmp_path):
    """Each run takes the OS lock and names itself in the lock file; the flow re-entering it inside the run is a
    no-op that neither rewrites nor releases it; leaving the run releases it for the next one."""
    lock = tmp_path / "run.lock"
    for command in ("first run", "second run"):
        with project_lock(tmp_path, command):
            assert not os_lock_is_free(lock)
            assert json.loads(lock.read_text()) | {"since": None} == {"pid": os.getpid(), "command": command, "since": None}
            with project_lock(tmp_path, "the flow inside"):
                assert json.loads(lock.read_text())["command"] == command
            assert not os_lock_is_free(lock)
        assert os_lock_is_free(lock)
