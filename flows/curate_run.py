"""The nightly curation flow: raw -> ingest -> dedup -> embed -> semantic dedup -> holdout (-> pool check: an empty
pool or a budget of no row stops here) -> base model -> score
(-> scorer-fit check) -> rounds of {re-score window -> select -> train} -> evaluate -> version (DVC) -> record (MLflow).

Orchestration only. Every stage is a task cached on content (tasks/caching.py): a re-run with
nothing changed executes no stage, and a changed parameter re-runs its stage and those after it.
"""
from __future__ import annotations

import inspect
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from curate.artifacts import Ref, remove_stale_temps
from curate.config import load_params
from curate.disk_usage import RunUsage
from curate.env import state_dir
from curate.incoming import take_incoming
from curate.lock import project_lock
from curate.seal import check_ref
from flows.execution import require_api_server, task_runner
from flows.steps import (check_pool_rows, check_scorer_fit, holdout_arguments, merge_shards, pool_and_heldout,
                         pool_warnings, publish_evaluations, publish_rounds, run_dedup, run_embed, run_evaluations,
                         run_rounds)
from tasks.base_model import base_model, scoring_models
from tasks.caching import REGISTRY, is_ref
from tasks.holdout import holdout
from tasks.ingest import ingest
from tasks.pipeline import stage_params
from tasks.publish import LAYOUT, publish, publish_base_model
from tasks.record import record, record_disk_usage
from tasks.score import drop_stale_plans, plan_pool, score_pool
from tasks.semdedup import previous_semdedup, semdedup
from tasks.version import version


class Runner:
    """Calls stages as Prefect tasks and notes, per call, whether it executed or came from the cache.

    A call executed when Prefect ran it and its content-store entry did not exist before (a Prefect
    cache miss whose entry exists computes nothing). If a cached result points at an artifact that no
    longer exists, the stage is recomputed; if its bytes differ from its store entry's seal, the run stops
    (CorruptArtifact) before anything reads them."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, task, note_round: int | None = None, **kwargs) -> dict:
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
        executed = state.name != "Cached" and not stored
        self._note(task, kwargs, executed, result, note_round)
        return result

    def _note(self, task, kwargs: dict, executed: bool, result, note_round: int | None = None) -> None:
        self.calls.append({"stage": task.name, "round": kwargs.get("round_index", note_round), "executed": executed,
                           "digest": result.get("digest") if isinstance(result, dict) else None})

    def map(self, task, execution, mapped: dict[str, list], note_round: int | None = None, **constant) -> list[dict]:
        """`task` once per position of the `mapped` argument lists (the others `constant`): one call after the
        other in this process (execution.runner local), or `.map`ped on Dask or Ray workers. `note_round`: as
        for a single call."""
        from prefect.utilities.annotations import unmapped

        calls = [{**constant, **dict(zip(mapped, values))} for values in zip(*mapped.values())]
        if execution.runner == "local":
            return [self(task, note_round, **kw) for kw in calls]
        stored = [REGISTRY[task.name].is_stored(kw) for kw in calls]
        # Prefect's cache is bypassed: the store decides (a stored entry costs a key and a digest on the worker)
        with task_runner(execution) as runner:
            futures = runner.map(task.with_options(refresh_cache=True),
                                 {**{k: unmapped(v) for k, v in constant.items()}, **mapped})
            results = [future.result() for future in futures]
        for kw, was_stored, result in zip(calls, stored, results):
            self._note(task, kw, not was_stored, result, note_round)
        return results


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
        run = Runner()
        result = _run(run, project, params_file, p, overrides)
        disk = record_disk_usage(lineage=result["lineage"], usage=usage.finish(), started=usage.started)
        return {**result, "disk": disk, "incoming": [str(a) for a in arrived]}


def _run(run: Runner, project: str, params_file: str, p, overrides: list[str]) -> dict:
    raw = Ref.of(Path(project) / p.raw.dir).to_dict()

    rows = run(ingest, project=project, raw=raw, params=stage_params(p, "ingest"))
    check_pool_rows(p, {"ingest": rows}, budget=False)
    deduped = run_dedup(run, p.execution, project, p, rows)
    embeddings = run_embed(run, p.execution, project, p, deduped)
    pool = run(semdedup, project=project, rows=deduped, embeddings=embeddings, params=stage_params(p, "semdedup"),
               previous=previous_semdedup(project, deduped, embeddings, stage_params(p, "semdedup")))
    split = run(holdout, project=project, pool=pool, **holdout_arguments(project, p))
    selectable, heldout = pool_and_heldout(project, p, split)
    check_pool_rows(p, {"ingest": rows, "dedup": deduped, "semdedup": pool, "holdout": selectable}, budget=True)
    warnings = pool_warnings(p, selectable)
    for w in warnings:
        get_run_logger().warning(w)
    base = run(base_model, project=project, params=stage_params(p, "base_model"))
    scores = _score(run, project, p, selectable, base)
    check_scorer_fit(p, scores)
    rounds = run_rounds(run, project, p, selectable, scores, base, heldout, execution=p.execution)
    evaluations = run_evaluations(run, project, p, heldout, base, [rd["train"] for rd in rounds], execution=p.execution)
    for rd, ev in zip(rounds, evaluations[1:]):
        rd["evaluate"] = ev

    refs = {"ingest": rows, "dedup": deduped, "embed": embeddings, "semdedup": pool, "holdout": split, "base_model": base,
            "score": scores, "evaluate_base": evaluations[0]}
    for name in ("ingest", "dedup", "embed", "semdedup", "holdout", "score"):
        publish(project, refs[name], LAYOUT[name])
    publish_base_model(project, base, p.base_model.source)
    publish_rounds(project, rounds)
    publish_evaluations(project, evaluations)

    versioned = version(project=project, remote=p.tracking.dvc_remote, push=p.tracking.push, raw_dir=p.raw.dir)
    lock = Path(project) / "dvc.lock"
    lineage = run(record, project=project, refs=refs, rounds=rounds, params=stage_params(p, "record"),
                  dvc_lock=Ref.of(lock).to_dict() if lock.exists() else None,
                  flow_run_id=str(flow_run.id), params_file=params_file, overrides=overrides)
    return {"refs": refs, "rounds": rounds, "version": versioned, "lineage": lineage, "flow_run_id": str(flow_run.id),
            "warnings": warnings, "stages": run.calls}


def _score(run: Runner, project: str, p, pool: dict, base: dict) -> dict:
    """The score stage; with execution.shards > 1 its batches planned once, scored shard by shard (each
    shard cached on its own: a killed run resumes shard by shard), merged by `score_pool`."""
    params = stage_params(p, "score")
    models = scoring_models(run, project, p, base)  # scoring.model: a proxy scores the pool
    plan = plan_pool(project, pool, params=params, shards=p.execution.shards, **models)
    if plan is None:
        return run(score_pool, project=project, pool=pool, params=params, **models)
    return merge_shards(run, p.execution, project, p, plan, models["model"], score_pool, pool=pool, params=params,
                        trained=base)
