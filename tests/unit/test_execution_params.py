"""`execution.runner` other than local needs a real Prefect API server (docs/execution.md): refused in one line."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

CHECK = "from flows.execution import require_api_server; require_api_server({!r})"


def _check(runner: str, api_url: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return subprocess.run([sys.executable, "-c", CHECK.format(runner)], env=env, capture_output=True, text=True, timeout=120)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is


@pytest.mark.parametrize("api_url, says", [(None, "run `curate server` and set PREFECT_API_URL"),
                                           ("http://127.0.0.1:{port}/api", "none answers at")])
def test_dask_runner_without_a_server_fails_in_one_line(api_url, says):
    proc = _check("dask", api_url and api_url.format(port=_closed_port()))
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("flows.execution.ExecutionError: execution.runner dask needs a Prefect API server") and says in last


def test_local_runner_needs_no_server():
    proc = _check("local", None)
    assert proc.returncode == 0, proc.stderr


def test_ray_runner_without_prefect_ray_says_what_to_install():
    # as on a machine without requirements-ray.txt: the import of prefect_ray fails
    code = "import sys; sys.modules['prefect_ray'] = None; " + CHECK.format("ray")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        "flows.execution.ExecutionError: execution.runner ray needs prefect-ray and ray: "
        "pip install -c constraints.txt -r requirements-ray.txt")
