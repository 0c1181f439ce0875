"""Where a run computes (the `execution` parameters): in this process, or on Dask or Ray workers (README:
Execution).

A worker runs its Prefect task against the flow's Prefect API: without a real server every worker
would start its own ephemeral one on the same SQLite file, so a non-local runner needs `curate server`
(or PREFECT_API_URL) and is refused without one. The Ray runner needs prefect-ray (requirements-ray.txt).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Ray puts Unix sockets at <temp dir>/session_<date>_<time>_<pid>/sockets/plasma_store (about 65 more
# characters), and a socket path stops at 107 bytes
RAY_TEMP_MAX = 107 - 65


class ExecutionError(RuntimeError):
    pass


def require_api_server(runner: str) -> None:
    """Raise ExecutionError (one line) when `runner` is not local and no Prefect API server answers."""
    if runner == "local":
        return
    if runner == "ray":
        try:
            import prefect_ray  # noqa: F401
        except ImportError:
            raise ExecutionError("execution.runner ray needs prefect-ray and ray: "
                                 "pip install -c constraints.txt -r requirements-ray.txt") from None
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise ExecutionError(f"execution.runner {runner} needs a Prefect API server: run `curate server` and set "
                             "PREFECT_API_URL=http://127.0.0.1:4200/api (or point it at your server)")
    with get_client(sync_client=True) as client:
        error = client.api_healthcheck()  # the error, or None when the server answers
    if error is not None:
        raise ExecutionError(f"execution.runner {runner} needs a Prefect API server, and none answers at {url} "
                             f"({type(error).__name__}): run `curate server`, or fix PREFECT_API_URL")


def task_runner(execution):
    """The Prefect task runner of `execution.runner` (dask or ray): on `execution.address`, or on a local cluster
    started for the call (Dask: `workers` processes of `threads_per_worker` threads; Ray: `workers` CPUs, one per task)."""
    if execution.runner == "ray":
        from prefect_ray import RayTaskRunner

        if execution.address:
            return RayTaskRunner(address=execution.address)
        return RayTaskRunner(init_kwargs={"num_cpus": execution.workers, "include_dashboard": False,
                                          "_temp_dir": ray_temp_dir()})
    from prefect_dask import DaskTaskRunner

    if execution.address:
        return DaskTaskRunner(address=execution.address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": execution.workers, "threads_per_worker": execution.threads_per_worker,
                                          "processes": True, "dashboard_address": None})


def ray_temp_dir() -> str:
    """Where a local Ray instance keeps its session files: under the run's temp directory (the project's
    `.curate/tmp`) when the path leaves room for Ray's socket names, else /tmp/ray-<uid>."""
    inside = Path(tempfile.gettempdir()) / "ray"
    return str(inside) if len(str(inside)) <= RAY_TEMP_MAX else f"/tmp/ray-{os.getuid()}"
