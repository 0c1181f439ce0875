"""The nightly curation flow: the declared stages (tasks/pipeline.py) walked in order through Prefect
(flows/walk.py): raw -> ingest -> dedup -> embed -> semantic dedup -> holdout (-> pool check: an empty pool or a
budget of no row stops here) -> base model -> score (-> scorer-fit check) -> rounds of {re-score window ->
select -> train} -> evaluate; then publish to data/, version (DVC), record (MLflow).

Orchestration only. Every stage is a task cached on content (tasks/caching.py): a re-run with
nothing changed executes no stage, and a changed parameter re-runs its stage and those after it.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from curate.artifacts import Ref, remove_stale_temps
from curate.config import load_params
from curate.disk_usage import RunUsage
from curate.env import state_dir
from curate.incoming import take_incoming
from curate.lock import project_lock
from flows.execution import Prefect, require_api_server
from flows.walk import Inputs, walk
from tasks.pipeline import STAGES
from tasks.publish import publish_result
from tasks.record import lineage_inputs, record_disk_usage
from tasks.score import drop_stale_plans
from tasks.version import version


@flow(name="curate-run", persist_result=False)
def curate_run(project: str, params_file: str = "params/default.yaml", overrides: list[str] | None = None) -> dict:
    """The whole run, under the project lock (one writer, also for runs started by `curate serve`).
    `overrides`: `KEY=VALUE` strings (`curate run --set`) applied over the params file; a flow parameter,
    so `curate resume FLOW_RUN_ID` applies them again."""
    overrides = list(overrides or [])
    p = load_params(Path(project) / params_file, overrides)
    require_api_server(p.execution.runner)
    with project_lock(state_dir(Path(project))):
        # leftovers of a killed writer (never read: every artifact is renamed into place whole)
        for root in (state_dir(Path(project)) / "store", Path(project) / "data"):
            if root.exists():
                remove_stale_temps(root)
        drop_stale_plans(project)
        usage = RunUsage.start(project, p.tracking.dvc_remote)  # to report the bytes this run adds
        arrived = take_incoming(Path(project) / p.raw.incoming, Path(project) / p.raw.dir)
        if arrived:
            get_run_logger().warning(f"incoming: {len(arrived)} new raw file(s) joined the pool: "
                                     + ", ".join(a.name for a in arrived))
        run = Prefect(p.execution)
        with run.opened():  # a Dask or Ray task runner, once for the whole run
            result = _run(run, project, params_file, p, overrides)
        disk = record_disk_usage(lineage=result["lineage"], usage=usage.finish(), started=usage.started)
        return {**result, "disk": disk, "incoming": [str(a) for a in arrived]}


def _run(run: Prefect, project: str, params_file: str, p, overrides: list[str]) -> dict:
    lock = Path(project) / "dvc.lock"
    identity = {"flow_run_id": str(flow_run.id), "params_file": params_file, "overrides": overrides}
    inputs = Inputs(project, p, raw=Path(project) / p.raw.dir, raw_eval=Path(project) / p.raw.eval_dir,
                    run=lambda: {**identity, "dvc_lock": Ref.of(lock).to_dict() if lock.exists() else None})
    walked = walk(STAGES, run, inputs, until="evaluate", warn=get_run_logger().warning)
    for step, result in walked.results.items():
        publish_result(project, step, result)
    versioned = version(project=project, remote=p.tracking.dvc_remote, push=p.tracking.push, raw_dir=p.raw.dir)
    lineage = walk(STAGES, run, inputs, only=["record"], done=walked.results).results["record"]
    refs, rounds = lineage_inputs(walked.results)
    return {"refs": refs, "rounds": rounds, "version": versioned, "lineage": lineage, "flow_run_id": str(flow_run.id),
            "warnings": walked.warnings, "stages": run.calls}
