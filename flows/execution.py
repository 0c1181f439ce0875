"""Where a run computes (the `execution` parameters): in this process, or on Dask or Ray workers
(docs/execution.md); `Prefect`, the flow's executor (tasks/executor.py).

A worker runs its Prefect task against the flow's Prefect API: without a real server every worker
would start its own ephemeral one on the same SQLite file, so a non-local runner needs `curate server`
(or PREFECT_API_URL) and is refused without one. The Ray runner needs prefect-ray (requirements-ray.txt).
"""
from __future__ import annotations

import inspect
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path

from curate.seal import check_ref
from tasks.caching import REGISTRY, is_ref
from tasks.executor import calls

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


class Prefect:
    """The flow's executor: stages as Prefect tasks, noting per call whether it executed or came from the cache.

    A call executed when Prefect ran it and its content-store entry did not exist before (a Prefect
    cache miss whose entry exists computes nothing). If a cached result points at an artifact that no
    longer exists, the stage is recomputed; if its bytes differ from its store entry's seal, the run stops
    (CorruptArtifact) before anything reads them. `map` runs in this process (execution.runner local) or on
    the Dask or Ray task runner, opened once for the flow run (`opened`)."""

    def __init__(self, execution) -> None:
        self.execution = execution
        self.shards = execution.shards
        self.calls: list[dict] = []
        self._runner = None

    def opened(self) -> ExitStack:
        """A context in which a Dask or Ray task runner is open for every `map` (nothing for runner local)."""
        stack = ExitStack()
        if self.execution.runner != "local":
            self._runner = stack.enter_context(task_runner(self.execution))
            stack.callback(setattr, self, "_runner", None)
        return stack

    def call(self, task, note_round: int | None = None, **kwargs):
        """`task(**kwargs)`; `note_round`: the round to note for a task that takes no `round_index` (a shard)."""
        stage = REGISTRY.get(task.name)
        arguments = inspect.signature(task.fn).bind(**kwargs)
        arguments.apply_defaults()  # a task keys on locals(), defaults included
        stored = stage is not None and stage.is_stored(arguments.arguments)
        state = task(**kwargs, return_state=True)
        result = state.result()
        if isinstance(result, dict) and "path" in result and not Path(result["path"]).exists():
            state = task.with_options(refresh_cache=True)(**kwargs, return_state=True)
            result, stored = state.result(), False
        if state.name == "Cached" and is_ref(result):
            check_ref(result)  # a cached Ref's bytes are checked against its entry's seal before anything reads them
        self._note(task, kwargs, state.name != "Cached" and not stored, result, note_round)
        return result

    def _note(self, task, kwargs: dict, executed: bool, result, note_round: int | None = None) -> None:
        self.calls.append({"stage": task.name, "round": kwargs.get("round_index", note_round), "executed": executed,
                           "digest": result.get("digest") if isinstance(result, dict) else None})

    def map(self, task, mapped: dict[str, list], note_round: int | None = None, **constant) -> list:
        """`task` once per position of the `mapped` argument lists (the others `constant`)."""
        from prefect.utilities.annotations import unmapped

        each = calls(mapped, constant)
        if self._runner is None:
            return [self.call(task, note_round, **kw) for kw in each]
        stored = [REGISTRY[task.name].is_stored(kw) for kw in each]
        # Prefect's cache is bypassed: the store decides (a stored entry costs a key and a digest on the worker)
        futures = self._runner.map(task.with_options(refresh_cache=True),
                                   {**{k: unmapped(v) for k, v in constant.items()}, **mapped})
        results = [future.result() for future in futures]
        for kw, was_stored, result in zip(each, stored, results):
            self._note(task, kw, not was_stored, result, note_round)
        return results
