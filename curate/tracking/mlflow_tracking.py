"""MLflow adapter: one parent run per flow run, one nested run per stage and per round (docs/architecture.md §7).

A round's run holds its parameters, the per-step training loss, evaluation metrics, the selected
subset as an input dataset carrying our content digest (MLflow's own digest only samples rows),
the subset Parquet and `dvc.lock` as artifacts, and the checkpoint as a logged model
(transformers format, safetensors; a LoRA checkpoint as its adapter directory, tagged with the
base model's path and digest). The only module of the library that imports mlflow.
"""
from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pyarrow.parquet as pq
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from curate.artifacts import link_tree, local_path
from curate.errors import UsageError
from curate.names import check_name
from curate.tracking.keys import key_parts

TAG_KIND = "curate.kind"  # parent | stage | round
TAG_ROUND = "curate.round"
SUBSET_ARTIFACT = "subset/selection.parquet"
LINEAGE_ARTIFACT = "online/online_weights.parquet"  # (row_id, step, weight, score) of every trained row
ONLINE_METRICS = ("kept", "weight_sum", "residual", "score_mean", "score_std")  # per-step train-log columns
TAG_MODEL_URI = "curate.model_uri"
TAG_BASE_PATH = "curate.base_model.path"  # a LoRA checkpoint: the base model its adapter applies to
TAG_BASE_DIGEST = "curate.base_model.digest"
TAG_RENAMED = "curate.renamed_keys"
RENAMED_ARTIFACT = "renamed_keys.json"  # on the parent run: MLflow key (part) -> the file or set name it stands for


@dataclass
class RoundRecord:
    index: int
    params: dict[str, Any]
    selection_path: Path
    selection_digest: str
    checkpoint_dir: Path
    checkpoint_digest: str
    train_log_path: Path | None
    eval_metrics: dict[str, Any] = field(default_factory=dict)  # the evaluation's metrics.json
    stats: dict[str, float] = field(default_factory=dict)
    lineage_path: Path | None = None  # the round's online weights (LINEAGE_ARTIFACT)


def experiment_id(name: str, artifact_root: str) -> str:
    """The id of experiment `name`, created with its artifacts in `artifact_root/name` when new."""
    check_name(name, "MLflow experiment")
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return mlflow.create_experiment(name, artifact_location=f"{artifact_root.rstrip('/')}/{name}")


def _flat(d: dict[str, Any], prefix: str = "", renamed: dict[str, str] | None = None) -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`, every level's names made valid, unique MLflow key parts
    (curate/tracking/keys.py); `renamed` collects each changed part's key (prefix included) -> original name."""
    out: dict[str, Any] = {}
    parts = key_parts(d)
    for k, v in d.items():
        key = f"{prefix}{parts[str(k)]}"
        if renamed is not None and parts[str(k)] != str(k):
            renamed[key] = str(k)
        if isinstance(v, dict):
            out.update(_flat(v, key + ".", renamed))
        else:
            out[key] = v
    return out


def _numeric(d: dict[str, Any], prefix: str = "", renamed: dict[str, str] | None = None) -> dict[str, float]:
    return {k: float(v) for k, v in _flat(d, prefix, renamed).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _eval_metrics(metrics: dict[str, Any], prefix: str, renamed: dict[str, str]) -> dict[str, float]:
    """An evaluation's metrics.json as MLflow metrics: `<prefix>mean_loss`, ... and `<prefix><set>.<metric>`
    for every held-out set (its name made a valid key part)."""
    scalars = {k: v for k, v in metrics.items() if k not in ("sets", "round")}
    return {**_numeric(scalars, prefix, renamed), **_numeric(metrics.get("sets") or {}, prefix, renamed)}


def _log_adapter(adapter_dir: Path, name: str, digest: str) -> str:
    """Log a LoRA checkpoint as an MLflow model: the adapter directory (adapter weights and config,
    tokenizer, `base.json`) with the base model's path and digest as tags; the base is not copied."""
    from curate.models.loading import read_base_ref
    from curate.training.state import TRAINER_STATE  # optimizer state: for resuming, not part of the model

    base = read_base_ref(adapter_dir)
    tags = {"curate.checkpoint_digest": digest, TAG_BASE_PATH: base["path"], TAG_BASE_DIGEST: base["digest"]}
    model = mlflow.initialize_logged_model(name=name, source_run_id=mlflow.active_run().info.run_id, tags=tags,
                                           model_type="peft-lora-adapter")
    local = local_path(model.artifact_location)
    if local is not None:  # a file-based artifact store: hard links, so the adapter is on disk once
        link_tree(adapter_dir, local, exclude=(TRAINER_STATE,), exist_ok=True)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            link_tree(adapter_dir, Path(tmp) / "adapter", exclude=(TRAINER_STATE,))
            MlflowClient().log_model_artifacts(model.model_id, str(Path(tmp) / "adapter"))
    mlflow.set_tags({TAG_BASE_PATH: base["path"], TAG_BASE_DIGEST: base["digest"]})
    mlflow.finalize_logged_model(model.model_id, "READY")
    return f"models:/{model.model_id}"


def _log_model(model_dir: Path, name: str, digest: str) -> str:
    """Log a Hugging Face checkpoint (transformers flavor, safetensors) as an MLflow model.

    MLflow's local-checkpoint path form fails with transformers 5 (its pipeline registry holds class
    names, not classes), so the components are loaded and logged as a dict; pip requirements are
    given explicitly (inference would add torchvision, which is not installed).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curate.models.loading import is_adapter_dir

    if is_adapter_dir(model_dir):
        return _log_adapter(model_dir, name, digest)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    info = mlflow.transformers.log_model(
        {"model": model, "tokenizer": tokenizer}, name=name, task="text-generation",
        pip_requirements=["transformers", "torch", "safetensors", "tokenizers"],
        tags={"curate.checkpoint_digest": digest},
    )
    return info.model_uri


def record(**kwargs) -> dict[str, Any]:
    """Write the whole lineage of one flow run (see `_record`), without MLflow's advisory noise
    (model-card lookups of local paths, schema hints, dataset-source ambiguity)."""
    logging.getLogger("mlflow.transformers").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _record(**kwargs)


def _record(
    *, experiment: str, artifact_root: str, run_name: str, tags: dict[str, str], params: dict[str, Any],
    metrics: dict[str, Any], artifacts: dict[str, Path], stages: dict[str, dict[str, Any]],
    rounds: list[RoundRecord], base_eval: dict[str, Any], log_models: bool = True, progress=None,
    regression_threshold: float = 0.05,
) -> dict[str, Any]:
    """Returns the run ids, model URIs and the comparison with the previous run. Keys made from file or set
    names MLflow refuses are logged under safe names, listed with the originals in RENAMED_ARTIFACT."""
    renamed: dict[str, str] = {}
    exp_id = experiment_id(experiment, artifact_root)
    interrupted = mark_interrupted(exp_id)
    previous = MlflowClient().search_runs([exp_id], f"tags.`{TAG_KIND}` = 'parent' and attributes.status = 'FINISHED'",
                                          max_results=1, order_by=["attributes.start_time DESC"])
    if interrupted:
        tags = {**tags, "curate.resumes": ",".join(interrupted)}
    out: dict[str, Any] = {"experiment_id": exp_id, "rounds": [], "interrupted": interrupted}
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags={**tags, TAG_KIND: "parent"}) as parent:
        out["parent_run_id"] = parent.info.run_id
        mlflow.log_params({k: str(v)[:6000] for k, v in _flat(params, renamed=renamed).items()})
        mlflow.log_metrics(_numeric(metrics, renamed=renamed))
        mlflow.log_metrics(_eval_metrics(base_eval, "eval.base.", renamed))
        for rel, path in artifacts.items():
            if Path(path).exists():
                mlflow.log_artifact(str(path), artifact_path=rel)
        if "dedup" in artifacts and (plot := Path(artifacts["dedup"]).with_name("cluster_sizes.png")).is_file():
            mlflow.log_artifact(str(plot), artifact_path="dedup")  # the dedup stage's cluster-size histogram
        for name, stats in stages.items():
            with mlflow.start_run(experiment_id=exp_id, run_name=name, nested=True, parent_run_id=parent.info.run_id,
                                  tags={TAG_KIND: "stage", "curate.stage": name}):
                mlflow.log_metrics(_numeric(stats, renamed=renamed))
        final = rounds[-1].eval_metrics.get("mean_loss") if rounds else None
        if final is not None:
            mlflow.log_metric("eval.final.mean_loss", final)
        for i, r in enumerate(rounds):
            out["rounds"].append(_record_round(exp_id, parent.info.run_id, r, artifacts.get("dvc"), log_models,
                                               renamed))
            if progress is not None:
                progress(i + 1, len(rounds))
        if renamed:
            mlflow.log_dict(renamed, RENAMED_ARTIFACT)
            mlflow.set_tag(TAG_RENAMED, f"{len(renamed)} key part(s) made from file or set names; "
                                        f"safe key -> original name in the artifact {RENAMED_ARTIFACT}")
        if previous:
            out["compare"] = compare_with(previous[0], exp_id, metrics, rounds, final, regression_threshold)
            mlflow.log_metrics({f"vs_previous.{k}": v for k, v in out["compare"].items() if isinstance(v, (int, float))})
            mlflow.set_tag("curate.previous_run", previous[0].info.run_id)
            if out["compare"].get("regression"):
                mlflow.set_tag("curate.regression", out["compare"]["regression"])
    return out


def compare_with(prev, exp_id: str, metrics: dict[str, Any], rounds: list[RoundRecord], final: float | None,
                 threshold: float) -> dict[str, Any]:
    """Tonight vs the previous finished run: rows in, pool size, trained-set overlap, held-out loss."""
    now_rows = {r for rd in rounds for r in pq.read_table(rd.selection_path, columns=["row_id"])["row_id"].to_pylist()}
    before_rows = {s["row_id"] for _, subset in round_subsets(prev.info.run_id, exp_id) for s in subset}
    now, before = _numeric(metrics), prev.data.metrics
    union = now_rows | before_rows
    out: dict[str, Any] = {
        "previous_run_id": prev.info.run_id,
        "rows_in_change": now.get("ingest.rows_in", 0) - before.get("ingest.rows_in", 0),
        "pool_change": now.get("semdedup.kept", 0) - before.get("semdedup.kept", 0),
        "trained_overlap": len(now_rows & before_rows) / len(union) if union else 1.0,
        "entered": len(now_rows - before_rows), "left": len(before_rows - now_rows),
    }
    if final is not None and "eval.final.mean_loss" in before:
        out["heldout_loss_change"] = final - before["eval.final.mean_loss"]
        if out["heldout_loss_change"] > threshold:
            out["regression"] = (f"held-out mean loss {final:.4f} is {out['heldout_loss_change']:+.4f} worse than run "
                                 f"{prev.info.run_id} (threshold {threshold})")
    return out


def mark_interrupted(exp_id: str) -> list[str]:
    """Mark runs left RUNNING by a killed process as KILLED. Only called under the project lock,
    so no live writer can own them. Returns the ids of the parent runs so marked."""
    client = MlflowClient()
    parents = []
    for run in client.search_runs([exp_id], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        client.set_terminated(run.info.run_id, status="KILLED")
        if run.data.tags.get(TAG_KIND) == "parent":
            parents.append(run.info.run_id)
    for parent_id in parents:  # rounds it finished before dying are not lineage of any checkpoint run
        for child in client.search_runs([exp_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=1000):
            client.set_terminated(child.info.run_id, status="KILLED")
    return parents


def _record_round(exp_id: str, parent_id: str, r: RoundRecord, dvc_lock: Path | None, log_model: bool,
                  renamed: dict[str, str]) -> dict[str, Any]:
    tags = {TAG_KIND: "round", TAG_ROUND: str(r.index), "curate.subset_digest": r.selection_digest,
            "curate.checkpoint_digest": r.checkpoint_digest}
    with mlflow.start_run(experiment_id=exp_id, run_name=f"round-{r.index}", nested=True, parent_run_id=parent_id, tags=tags) as run:
        mlflow.log_params({k: str(v) for k, v in _flat(r.params, renamed=renamed).items()})
        mlflow.log_metrics(_numeric(r.stats, renamed=renamed))
        mlflow.log_metrics(_eval_metrics(r.eval_metrics, "eval.", renamed))
        if r.train_log_path and r.train_log_path.exists():
            log = pq.read_table(r.train_log_path).to_pylist()
            client = MlflowClient()
            batch = [mlflow.entities.Metric("train_loss", float(x["loss"]), 0, int(x["step"])) for x in log]
            batch += [mlflow.entities.Metric("lr", float(x["lr"]), 0, int(x["step"])) for x in log]
            batch += [mlflow.entities.Metric(f"online.{m}", float(x[m]), 0, int(x["step"]))
                      for x in log for m in ONLINE_METRICS if x.get(m) is not None]
            for i in range(0, len(batch), 900):
                client.log_batch(run.info.run_id, metrics=batch[i : i + 900])
        subset = pq.read_table(r.selection_path).to_pandas()
        dataset = mlflow.data.from_pandas(subset, source=str(r.selection_path), name=f"round-{r.index}-subset",
                                          digest=r.selection_digest[:36])
        mlflow.log_input(dataset, context="training")
        mlflow.log_artifact(str(r.selection_path), artifact_path="subset")
        if r.lineage_path and r.lineage_path.exists():
            mlflow.log_artifact(str(r.lineage_path), artifact_path=LINEAGE_ARTIFACT.split("/")[0])
        if dvc_lock and Path(dvc_lock).exists():
            mlflow.log_artifact(str(dvc_lock), artifact_path="dvc")
        model_uri = _log_model(r.checkpoint_dir, f"round-{r.index}-model", r.checkpoint_digest) if log_model else None
        if model_uri:
            mlflow.set_tag(TAG_MODEL_URI, model_uri)
        return {"round": r.index, "run_id": run.info.run_id, "model_uri": model_uri}


# ---- queries for audit -------------------------------------------------------------------------


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


UNKNOWN_ID = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # MLflow's answers to an id it does not know


def resolve_run(ref: str) -> str:
    """A round run id from a run id or a `models:/m-...` URI of a logged checkpoint."""
    if ref.startswith("models:/"):
        model_id = ref[len("models:/"):].split("/")[0]
        try:
            return mlflow.get_logged_model(model_id).source_run_id
        except MlflowException as e:
            if e.error_code not in UNKNOWN_ID:
                raise
            raise UsageError(f"no checkpoint {ref} is recorded in MLflow ({tracking_uri()}): use a "
                             f"models:/ URI that `curate run` printed, or a run id") from None
    return ref


def run_info(run_id: str) -> dict[str, Any]:
    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException as e:
        if e.error_code not in UNKNOWN_ID:
            raise
        raise UsageError(f"no MLflow run {run_id} is recorded in {tracking_uri()}: use a run id that "
                         f"`curate run` printed (its summary's parent run)") from None
    return {"run_id": run_id, "experiment_id": run.info.experiment_id, "tags": dict(run.data.tags),
            "params": dict(run.data.params), "status": run.info.status, "start_time": run.info.start_time,
            "name": run.info.run_name}


def round_runs(parent_run_id: str, experiment_id: str) -> list[dict[str, Any]]:
    """The finished round runs under a parent run, by round index."""
    runs = MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`{TAG_KIND}` = 'round' "
                                       f"and attributes.status = 'FINISHED'",
        max_results=1000,
    )
    out = [{"run_id": r.info.run_id, "round": int(r.data.tags[TAG_ROUND]), "model_uri": r.data.tags.get(TAG_MODEL_URI),
            "subset_digest": r.data.tags.get("curate.subset_digest"), "parent_run_id": parent_run_id} for r in runs]
    return sorted(out, key=lambda x: x["round"])


def round_subsets(parent_run_id: str, experiment_id: str, upto: int | None = None) -> list[tuple[dict, list[dict]]]:
    """(round run, its selection records) for every finished round of a parent run (up to `upto`), by round.

    When the round recorded online weights, every record also says in how many optimizer steps the
    row trained (`steps`) and with what total loss weight (`total_weight`); 0 and 0.0 for a selected
    row that an online policy dropped in every step."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for rr in round_runs(parent_run_id, experiment_id):
            if upto is not None and rr["round"] > upto:
                continue
            path = download(rr["run_id"], SUBSET_ARTIFACT, Path(tmp) / rr["run_id"])
            records = pq.read_table(path).to_pylist() if path else []
            weights = download(rr["run_id"], LINEAGE_ARTIFACT, Path(tmp) / rr["run_id"])
            if weights:
                steps: dict[str, int] = {}
                total: dict[str, float] = {}
                for w in pq.read_table(weights).to_pylist():
                    steps[w["row_id"]] = steps.get(w["row_id"], 0) + 1
                    total[w["row_id"]] = total.get(w["row_id"], 0.0) + w["weight"]
                records = [{**r, "steps": steps.get(r["row_id"], 0), "total_weight": total.get(r["row_id"], 0.0)}
                           for r in records]
            out.append((rr, records))
    return out


def parent_info(ref: str | None) -> dict[str, Any]:
    """The parent run of a run id / round run / `models:/` URI; the latest finished one when `ref` is None."""
    if ref is None:
        parents = all_runs("parent")
        if not parents:
            raise UsageError(f"no finished curate run is recorded in {tracking_uri()}: run `curate run` "
                             f"first")
        ref = parents[0]["run_id"]
    info = run_info(resolve_run(ref))
    kind = info["tags"].get(TAG_KIND)
    if kind in ("round", "stage"):
        return run_info(info["tags"]["mlflow.parentRunId"])
    if kind != "parent":
        raise UsageError(f"MLflow run {ref} is not a run of `curate run` (its {TAG_KIND} tag is {kind!r}): use the "
                         f"parent run id that `curate run` printed")
    return info


def all_runs(kind: str) -> list[dict[str, Any]]:
    """Every finished run of a kind (parent | round | stage) in every experiment, newest first
    (runs of killed processes are left out: a resumed run records their rounds again)."""
    client = MlflowClient()
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    if not exp_ids:
        return []
    runs = client.search_runs(exp_ids, filter_string=f"tags.`{TAG_KIND}` = '{kind}' and attributes.status = 'FINISHED'",
                              max_results=5000, order_by=["attributes.start_time DESC"])
    return [{"run_id": r.info.run_id, "experiment_id": r.info.experiment_id, "tags": dict(r.data.tags),
             "start_time": r.info.start_time} for r in runs]


def download(run_id: str, artifact_path: str, dst: Path) -> Path | None:
    """Download one run artifact into dst; None when the run has no such artifact."""
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=str(dst)))
    except Exception:  # noqa: BLE001 - MLflow raises several types for a missing artifact
        return None


# ---- queries and changes for `curate gc` and the per-run disk report ----------------------------


def parent_runs() -> list[dict[str, Any]]:
    """Every curate parent run in every experiment, whatever its status (a killed run included)."""
    client = MlflowClient()
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    runs, token = [], None
    while exp_ids:
        page = client.search_runs(exp_ids, filter_string=f"tags.`{TAG_KIND}` = 'parent'", max_results=1000,
                                  order_by=["attributes.start_time DESC"], page_token=token)
        runs += [{"run_id": r.info.run_id, "experiment_id": r.info.experiment_id, "start_time": r.info.start_time,
                  "status": r.info.status, "tags": dict(r.data.tags)} for r in page]
        token = page.token
        if not token:
            break
    return runs


def logged_models() -> list[dict[str, Any]]:
    """Every logged model in every experiment: id, artifact location, and the parent run of the round
    run that logged it (None when that is not a curate round run)."""
    client = MlflowClient()
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    models, token = [], None
    while exp_ids:
        page = client.search_logged_models(exp_ids, max_results=100, page_token=token)
        models += list(page)
        token = page.token
        if not token:
            break
    parents: dict[str, str | None] = {}
    out = []
    for m in models:
        if m.source_run_id and m.source_run_id not in parents:
            tags = client.get_run(m.source_run_id).data.tags
            parents[m.source_run_id] = tags.get("mlflow.parentRunId") if tags.get(TAG_KIND) == "round" else None
        out.append({"model_id": m.model_id, "artifact_location": m.artifact_location, "source_run_id": m.source_run_id,
                    "parent_run_id": parents.get(m.source_run_id) if m.source_run_id else None})
    return out


def mark_model_removed(model_id: str, when: str) -> None:
    """Record that `curate gc` deleted a logged model's artifacts, on the model and on the round run that
    logged it (the model stays resolvable, so `curate audit checkpoint models:/...` still answers)."""
    client = MlflowClient()
    client.set_logged_model_tags(model_id, {"curate.gc.removed": when})
    source = client.get_logged_model(model_id).source_run_id
    if source:
        client.set_tag(source, "curate.gc.model_removed", when)


def log_disk_usage(run_id: str, metrics: dict[str, float], summary: str) -> None:
    """The bytes a flow run added to disk, on its parent run (metrics, and one readable tag)."""
    import time

    now = int(time.time() * 1000)
    MlflowClient().log_batch(run_id, metrics=[mlflow.entities.Metric(k, float(v), now, 0) for k, v in metrics.items()],
                             tags=[mlflow.entities.RunTag("curate.disk.added", summary)])
