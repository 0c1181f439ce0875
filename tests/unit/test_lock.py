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


def test_lock_is_reentrant_across_sequential_runs(tmp_path):
    for _ in range(2):
        with project_lock(tmp_path):
            pass
