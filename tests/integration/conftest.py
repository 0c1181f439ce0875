"""Integration fixtures: a real Prefect server (one per session), real MLflow (SQLite) and real DVC,
in temporary project directories. No mocks of the three."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from curate.env import project_defaults

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COPY_IGNORE = shutil.ignore_patterns(".venv", ".curate", ".git", "__pycache__", ".pytest_cache", ".hypothesis",
                                     "*.egg-info", "data", "bench", "mlruns", "dvc.lock", "tmp", "cache")

# Small, fast settings for tests: the pipeline is the same, only sizes shrink.
TEST_PARAMS = {
    "base_model": {"vocab_size": 512, "hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128,
                   "max_positions": 128, "pretrain": {"steps": 40, "batch_size": 8, "seq_len": 64, "corpus_rows": 600}},
    "scoring": {"max_length": 128},
    # the 40-step test model is too weak for the mismatch gate to leave K rows (test_mismatch_gate.py runs the
    # default gate on a model pre-trained longer)
    "selection": {"rounds": 2, "ratio": 0.1, "mismatch_gate": "off"},
    "training": {"batch_size": 8, "max_length": 128},
    "evaluation": {"max_rows_per_skill": 10},
    "embed": {"max_length": 64},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base.get(k, {}), v) if isinstance(v, dict) else v
    return out


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory) -> str:
    """A real local Prefect server for the whole test session, bound to 127.0.0.1."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "WARNING", "DO_NOT_TRACK": "1"}
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        raise RuntimeError(f"Prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


class Project:
    """A temporary copy of the project (code, params, dvc.yaml) in its own git + DVC repo.

    With `prefect_api=None` the commands run as the README's default does: no PREFECT_API_URL, so
    `curate run` starts Prefect's ephemeral server on the project's own database (`.curate/prefect/`).
    """

    def __init__(self, root: Path, prefect_api: str | None):
        self.root = root
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        # whatever this test process configured for another project (curate.env.configure in a unit test)
        # must not leak into this one
        for k in (*project_defaults(Path(".")), "PREFECT_API_URL", "PREFECT_PROFILE"):
            self.env.pop(k, None)
        if prefect_api is not None:
            self.env["PREFECT_API_URL"] = prefect_api

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / '.curate' / 'mlflow.db'}"

    def curate(self, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(BIN / "curate"), *args], cwd=self.root, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"curate {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
        return proc

    def dvc(self, *args: str) -> subprocess.CompletedProcess:
        env = {**self.env, "DVC_NO_ANALYTICS": "1", "CI": "true"}
        return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=self.root, env=env, capture_output=True,
                              text=True, check=True)

    def set_params(self, overrides: dict) -> None:
        path = self.root / "params" / "default.yaml"
        path.write_text(yaml.safe_dump(_merge(yaml.safe_load(path.read_text()), overrides), sort_keys=False))


def new_project(root: Path, prefect_api: str | None) -> Project:
    shutil.copytree(REPO, root, ignore=COPY_IGNORE)
    (root / "data.dvc").unlink(missing_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], cwd=root, check=True)
    project = Project(root, prefect_api)
    project.set_params(TEST_PARAMS)
    return project


@pytest.fixture
def make_project(tmp_path, prefect_api):
    def make(name: str = "project") -> Project:
        return new_project(tmp_path / name, prefect_api)

    return make


@pytest.fixture
def make_ephemeral_project(tmp_path):
    """Projects whose commands use Prefect's ephemeral server (no PREFECT_API_URL), the README's default."""
    def make(name: str = "project") -> Project:
        return new_project(tmp_path / name, None)

    return make


@pytest.fixture(scope="module")
def module_ephemeral_project(tmp_path_factory) -> Project:
    """One ephemeral-server project for a whole test module, for files whose tests share the state a few
    expensive runs build."""
    return new_project(tmp_path_factory.mktemp("module") / "project", None)
