"""`curate serve` on a real Prefect server: two overlapping runs of the nightly deployment, only one
executes (docs/architecture.md §8); a transient failure in a service-facing stage is retried, a
permanent one is not."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterFlowRunId
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from tasks.retry import RETRY

BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TERMINAL = {"COMPLETED", "CANCELLED", "FAILED", "CRASHED"}


async def _wait_for_deployment(name: str, project: str, deadline: float):
    """Until the deployment exists and serves `project` (the server is shared by the whole session)."""
    async with get_client() as client:
        while time.time() < deadline:
            try:
                deployment = await client.read_deployment_by_name(name)
                if deployment.parameters.get("project") == project:
                    return deployment
            except Exception:  # noqa: BLE001 - not registered yet
                pass
            await asyncio.sleep(1)
    raise AssertionError(f"deployment {name} never appeared for {project}")


async def _runs(ids) -> list:
    async with get_client() as client:
        return await client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids))))


async def _task_runs(flow_run_id) -> list:
    async with get_client() as client:
        return await client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id])))


@pytest.mark.parametrize("overlap", ["cancel", "enqueue"])
def test_two_overlapping_nightly_runs_only_one_executes(make_project, prefect_api, overlap):
    project = make_project()
    project.curate("demo-data", "--size", "200")
    name = f"curate-run/nightly-{overlap}"
    project.set_params({"selection": {"rounds": 1},
                        "schedule": {"cron": "0 3 1 1 *", "overlap": overlap, "deployment": f"nightly-{overlap}"}})
    serve_log = open(project.root / "serve.log", "w")
    server = subprocess.Popen([str(BIN / "curate"), "serve"], cwd=project.root, env=project.env,
                              stdout=serve_log, stderr=subprocess.STDOUT)
    try:
        with temporary_settings({PREFECT_API_URL: prefect_api}):
            asyncio.run(_wait_for_deployment(name, str(project.root), time.time() + 120))
            first = run_deployment(name, timeout=0)
            second = run_deployment(name, timeout=0)
            deadline = time.time() + 900
            while time.time() < deadline:
                runs = asyncio.run(_runs([first.id, second.id]))
                if len(runs) == 2 and all(r.state_type.value in TERMINAL for r in runs):
                    break
                time.sleep(3)
            states = {r.id: r.state_type.value for r in runs}
            log = (project.root / "serve.log").read_text()[-3000:]
            completed = [r for r in runs if r.state_type.value == "COMPLETED"]
            if overlap == "cancel":
                assert sorted(states.values()) == ["CANCELLED", "COMPLETED"], (states, log)
                cancelled = next(r for r in runs if r.state_type.value == "CANCELLED")
                assert asyncio.run(_task_runs(cancelled.id)) == []  # never started a stage
            else:  # queued behind the first: both complete, one after the other
                assert sorted(states.values()) == ["COMPLETED", "COMPLETED"], (states, log)
                a, b = sorted(completed, key=lambda r: r.start_time)
                assert a.end_time <= b.start_time, (a.start_time, a.end_time, b.start_time, b.end_time)
            assert len(asyncio.run(_task_runs(completed[0].id))) >= 8
            assert completed[0].parameters == {"project": str(project.root), "params_file": "params/default.yaml"}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        serve_log.close()
    assert (project.root / "data" / "rounds" / "round-0" / "train").is_dir()


CALLS: dict[str, int] = {}


@task(**{**RETRY, "retry_delay_seconds": 0})
def flaky(kind: str) -> str:
    CALLS[kind] = CALLS.get(kind, 0) + 1
    if CALLS[kind] == 1:
        raise ConnectionRefusedError(111, "MLflow briefly unreachable") if kind == "transient" else ValueError("bad params")
    return "ok"


@flow
def retry_flow(kind: str) -> str:
    return flaky(kind)


def test_transient_failures_are_retried_permanent_ones_are_not(prefect_api):
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        assert retry_flow("transient") == "ok"
        assert CALLS["transient"] == 2
        with pytest.raises(ValueError, match="bad params"):
            retry_flow("permanent")
        assert CALLS["permanent"] == 1
