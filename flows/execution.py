"""Where a run computes (the `execution` parameters): in this process, or on Dask workers (README: Execution).

A Dask worker runs its Prefect task against the flow's Prefect API: without a real server every worker
would start its own ephemeral one on the same SQLite file, so a non-local runner needs `curate server`
(or PREFECT_API_URL) and is refused without one.
"""
from __future__ import annotations


class ExecutionError(RuntimeError):
    pass


def require_api_server(runner: str) -> None:
    """Raise ExecutionError (one line) when `runner` is not local and no Prefect API server answers."""
    if runner == "local":
        return
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


def dask_runner(execution):
    """A DaskTaskRunner on `execution.address`, or on a LocalCluster of `execution.workers` processes."""
    from prefect_dask import DaskTaskRunner

    if execution.address:
        return DaskTaskRunner(address=execution.address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": execution.workers, "threads_per_worker": execution.threads_per_worker,
                                          "processes": True, "dashboard_address": None})
