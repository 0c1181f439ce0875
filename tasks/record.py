"""Record stage: the run's lineage in MLflow (parent run, a nested run per stage and per round)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from curate.artifacts import digest, ref_json
from curate.config import declared
from curate.disk_usage import describe
from curate.env import mlflow_artifact_root
from curate.progress import Progress
from curate.tracking.mlflow_tracking import RoundRecord
from tasks.caching import Stage, is_ref
from tasks.pipeline import STAGES
from tasks.publish import LAYOUT, NOT_PUBLISHED
from tasks.retry import RETRY

STAGE = Stage("record", ignore=("flow_run_id",))


def git_commit(project: str) -> str:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def arguments(arguments: dict) -> dict:
    """record's arguments from the walk's `artifacts` (step -> result) and the flow `run`'s identity
    (flow_run_id, params_file, overrides, dvc_lock): every single artifact by its stage, the base model's
    evaluation as `evaluate_base`, and per round its stages' artifacts with the round's evaluation."""
    rest = {k: v for k, v in arguments.items() if k not in ("artifacts", "run")}
    refs, rounds = lineage_inputs(arguments["artifacts"])
    return {**rest, "refs": refs, "rounds": rounds, **arguments["run"]}


def lineage_inputs(artifacts: dict) -> tuple[dict, list[dict]]:
    """(every single artifact by its stage, with the base model's evaluation as `evaluate_base`; per round its
    stages' artifacts and its evaluation) of a walk's results."""
    evaluations = artifacts["evaluate"]
    refs = {name: ref for name, ref in artifacts.items() if is_ref(ref)}
    rounds = [{**rd, "evaluate": ev} for rd, ev in zip(artifacts["rounds"], evaluations[1:])]
    return {**refs, "evaluate_base": evaluations[0]}, rounds


@STAGE.task(**RETRY)  # MLflow's store briefly unreachable: retried with backoff
def record(project: str, refs: dict, rounds: list[dict], params: dict, dvc_lock: dict | None,
           flow_run_id: str, params_file: str, overrides: list[str] | None = None) -> dict:
    """`refs`: stage name -> Ref; `rounds`: per round {select, train, evaluate} Refs; `refs['evaluate_base']`;
    `overrides`: the run's `--set KEY=VALUE` strings (already merged into `params`)."""
    from curate.tracking import mlflow_tracking

    round_records = []
    for i, r in enumerate(rounds):
        train_dir = Path(r["train"]["path"])
        round_records.append(RoundRecord(
            index=i,
            params={"round": i, **params["selection"], "training": params["training"]},
            selection_path=Path(r["select"]["path"]) / "selection.parquet",
            selection_digest=r["select"]["digest"],
            checkpoint_dir=train_dir / "model",
            checkpoint_digest=r["train"]["digest"],
            train_log_path=train_dir / "train_log.parquet",
            lineage_path=train_dir / "online_weights.parquet",
            eval_metrics=ref_json(r["evaluate"], "metrics.json"),
            stats={**ref_json(r["select"]), **{f"train.{k}": v for k, v in ref_json(r["train"]).items()}},
        ))
    stages = {s.name: ref_json(refs.get(s.name)) for s in STAGES if s.logged}
    artifacts = {
        "quarantine": Path(refs["ingest"]["path"]) / "quarantine.parquet",
        "quarantine-score": Path(refs["score"]["path"]) / "quarantine.parquet",
        "dedup": Path(refs["dedup"]["path"]) / "removed.parquet",
        "semdedup": Path(refs["semdedup"]["path"]) / "removed.parquet",
        "holdout-overlap": Path(refs["holdout"]["path"]) / "removed.parquet",  # decontamination
        "params": Path(project) / params_file,
    }
    if dvc_lock:
        artifacts["dvc"] = Path(dvc_lock["path"])
    if (Path(project) / "data.dvc").is_file():  # the raw pool's version: `curate audit verify` checks its objects
        artifacts["dvc/raw"] = Path(project) / "data.dvc"
    tags = {"prefect.flow_run_id": flow_run_id, "git_commit": git_commit(project),
            "curate.strategy": declared(params).selection.strategy, "curate.params_file": params_file,
            "curate.overrides": json.dumps(overrides or [])}
    artifact_refs = {**refs, **{f"round{i}.{part}": ref for i, r in enumerate(rounds) for part, ref in r.items() if ref}}
    tags.update({f"curate.digest.{k}": v["digest"] for k, v in artifact_refs.items() if v})
    tags.update({f"curate.path.{k}": v["path"] for k, v in artifact_refs.items() if v})
    # where `dvc pull` restores each artifact when the store entry is gone (audit verify / export fall back to it)
    tags["curate.project"] = str(Path(project).resolve())
    tags.update({f"curate.workspace.{k}": rel for k, rel in workspace_paths(artifact_refs).items()})
    for k, v in artifact_refs.items():  # the published copy leaves out the optimizer state: its own digest
        if v and Path(v["path"]).is_dir() and any(next(Path(v["path"]).rglob(n), None) for n in NOT_PUBLISHED):
            tags[f"curate.workspace_digest.{k}"] = digest(v["path"], NOT_PUBLISHED)
    if refs.get("holdout"):  # the held-out rows split off the pool (none when raw.eval_dir holds the held-out sets)
        held = ref_json(refs["holdout"], "heldout/stats.json")
        tags.update({"curate.holdout.rows": str(held.get("rows", 0)), "curate.holdout.digest": held.get("digest", ""),
                     "curate.holdout.share": str(held.get("share", 0.0))})
    if stages["score"].get("warning"):  # the scorer-fit check failed: say it where people look
        tags["curate.warning.scorer_fit"] = stages["score"]["warning"]
    return mlflow_tracking.record(
        experiment=declared(params).project.experiment, artifact_root=mlflow_artifact_root(project),
        run_name=f"curate {declared(params).selection.strategy}", tags=tags, params=params,
        metrics={name: s for name, s in stages.items()}, artifacts=artifacts, stages=stages,
        rounds=round_records, base_eval=ref_json(refs["evaluate_base"], "metrics.json"),
        log_models=declared(params).tracking.log_models, progress=Progress("record", "rounds"),
        regression_threshold=declared(params).tracking.regression_threshold,
    )


@task(name="disk usage", cache_policy=NO_CACHE, persist_result=False, **RETRY)
def record_disk_usage(lineage: dict, usage: dict, started: float) -> dict:
    """Log the bytes this flow run added (curate/disk_usage.py) on its MLflow parent run as metrics
    `disk.added.<area>` / `disk.total.<area>` and the tag `curate.disk.added`; not when that parent run is
    an earlier flow run's (a fully cached re-run records no new run, and must not overwrite its numbers)."""
    from curate.tracking import mlflow_tracking

    run_id = lineage["parent_run_id"]
    new = mlflow_tracking.run_info(run_id)["start_time"] >= started * 1000
    if new:
        metrics = {f"disk.{kind}.{area}": n for kind in ("added", "total") for area, n in usage[kind].items()}
        mlflow_tracking.log_disk_usage(run_id, metrics, describe(usage))
    return {**usage, "logged_to": run_id if new else None}


def workspace_paths(refs: dict) -> dict[str, str]:
    """Published (DVC-tracked) path of every recorded artifact, relative to the project."""
    out = {}
    for key in refs:
        if key in LAYOUT:
            out[key] = LAYOUT[key]
        elif key == "evaluate_base":
            out[key] = f"{LAYOUT['evaluate']}/base"
        elif key.startswith("round") and "." in key:
            r, part = key[len("round"):].split(".", 1)
            out[key] = f"{LAYOUT['evaluate']}/round-{r}" if part == "evaluate" else f"{LAYOUT['rounds']}/round-{r}/{part}"
    return out
