"""The comparison runner (`curate compare`): every strategy x seed on every pool variant, same base
model, same selection budget, same number of optimizer steps.

Per pool the demo generator writes a demo variant into the workspace (or the spec names your own
pool file), then ingest -> dedup -> embed -> semdedup -> holdout (decontamination; the split, for your
own pool without held-out sets) -> base model -> score run once (the stage functions called directly, as `flows/stages.py` does; no Prefect). For each strategy and seed, `flows.steps.run_rounds` and
`run_evaluations` run with the strategy's parameters; the content-keyed store shares every stage
whose inputs and parameters do not change (the pool stages, the base model and its evaluation).

Design choices:
- the base model is pre-trained once per comparison with `base_seed` (its `project.seed`), so the
  seeds vary only what curation controls: the training data order and the random draws
  (`project.seed` of the rounds). Seed-to-seed spread therefore excludes base-model variance.
- `full` trains every row every round; with `match_full_steps` it makes one pass over the pool per
  round with gradient accumulation raised to ceil(batches of the pool / steps of a K-row round), so
  it takes the same optimizer steps (and LR schedule) as the K-row strategies, on N / (K x epochs)
  times more tokens (reported).
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from curate.artifacts import Ref, ref_json, write_json
from curate.compare import model_aware
from curate.compare.cost import selection_cost
from curate.compare.facts import final_rows, match_full_steps, pool_facts, pool_labels, round_metrics
from curate.compare.matched import matched_params
from curate.compare.spec import CompareSpec, PoolFile, load_spec
from curate.config import Params, load_params
from curate.demo.pool import write_demo
from flows.steps import run_evaluations, run_rounds
from tasks.base_model import base_model, scoring_models
from tasks.dedup import dedup
from tasks.embed import embed
from tasks.evaluate import evaluate
from tasks.holdout import decontamination_references, holdout, split_refs
from tasks.ingest import ingest
from tasks.pipeline import stage_params
from tasks.score import score_pool
from tasks.semdedup import semdedup


def log(msg: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Timed:
    """A stage caller (`call(task, **kwargs)`) that runs `task.fn` and records each call's wall time."""

    def __init__(self):
        self.calls: list[dict[str, Any]] = []
        self.refs: dict[str, dict] = {}  # stage -> its last output

    def __call__(self, task, **kwargs) -> dict:
        start = time.perf_counter()
        result = self.refs[task.fn.__name__] = task.fn(**kwargs)
        self.calls.append({"stage": task.fn.__name__, "round": kwargs.get("round_index"),
                           "seconds": time.perf_counter() - start})
        return result

    def seconds(self, stage: str, round_index: int | None = None) -> float:
        return sum(c["seconds"] for c in self.calls if c["stage"] == stage and (round_index is None or c["round"] == round_index))


def _pool_stages(call: "Timed", project: str, raw: dict, p: Params) -> dict:
    """ingest -> dedup -> embed -> semdedup; returns the semdedup artifact (ingest's is `call.refs["ingest"]`)."""
    rows = call(ingest, project=project, raw=raw, params=stage_params(p, "ingest"))
    deduped = call(dedup, project=project, rows=rows, previous=None, params=stage_params(p, "dedup"))
    embeddings = call(embed, project=project, rows=deduped, params=stage_params(p, "embed"))
    return call(semdedup, project=project, rows=deduped, embeddings=embeddings, params=stage_params(p, "semdedup"),
                previous=None)


def heldout_dir(workspace: Path, name: str, path: Path) -> Path:
    """A directory of held-out files: `path` itself, or (one file) a workspace directory linking it."""
    if path.is_dir():
        return path
    d = workspace / "data" / name / "eval"
    d.mkdir(parents=True, exist_ok=True)
    link = d / path.name
    if not link.exists():
        if path.stat().st_dev == d.stat().st_dev:
            os.link(path, link)
        else:
            shutil.copy2(path, link)
    return d


def pool_source(workspace: Path, root: Path, name: str, pool, p: Params, call: "Timed") -> tuple[dict, dict, dict]:
    """(the pool rounds select from, the held-out sets, what was generated or read) of one spec pool."""
    project = str(workspace)
    if isinstance(pool, PoolFile):
        path = (root / pool.path).resolve()
        if not path.exists():
            raise FileNotFoundError(f"compare spec: pool file {path} not found (paths are relative to the project)")
        held_path = (root / pool.heldout).resolve() if pool.heldout else None
        if held_path is not None and not held_path.exists():
            raise FileNotFoundError(f"compare spec: held-out file {held_path} not found")
        deduped = _pool_stages(call, project, Ref.of(path).to_dict(), p)
        held_dir = heldout_dir(workspace, name, held_path) if held_path else None
        split = call(holdout, project=project, pool=deduped, params=stage_params(p, "holdout"),
                     eval_files=held_path is not None, references=decontamination_references(str(root), p, held_dir))
        selectable, held = split_refs(split)
        heldout_ref = Ref.of(held_dir).to_dict() if held_dir else held
        ingested = ref_json(call.refs["ingest"])
        return selectable, heldout_ref, {"pool_rows": ingested["rows_ok"], "quarantined": ingested["quarantined"],
                                         "rows_after_dedup": ref_json(split)["rows_in"], "source": str(path),
                                         "removed_heldout_overlap": ref_json(split)["removed_heldout_overlap"],
                                         "heldout": str(held_path) if held_path else f"evaluation.holdout {p.evaluation.holdout}"}
    data = workspace / "data" / name
    counts = write_demo(data, size=pool.size, seed=pool.seed, noise=pool.noise,
                        eval_per_skill=pool.eval_per_skill, skill_mix=pool.skill_mix)
    deduped = _pool_stages(call, project, Ref.of(data / "pool.jsonl").to_dict(), p)
    split = call(holdout, project=project, pool=deduped, params=stage_params(p, "holdout"), eval_files=True,
                 references=decontamination_references(str(root), p, data / "eval"))
    return split_refs(split)[0], Ref.of(data / "eval").to_dict(), {
        **counts, "removed_heldout_overlap": ref_json(split)["removed_heldout_overlap"]}


def prepare_pool(workspace: Path, root: Path, name: str, pool, p: Params) -> dict[str, Any]:
    """The spec pool's data and its pool stages, run once; returns the refs and the pool facts."""
    project, call = str(workspace), Timed()
    selectable, heldout_ref, generated = pool_source(workspace, root, name, pool, p, call)
    base = call(base_model, project=project, params=stage_params(p, "base_model"))
    scores = call(score_pool, project=project, pool=selectable, params=stage_params(p, "score"),
                  **scoring_models(call, project, p, base))
    base_eval = call(evaluate, project=project, heldout=heldout_ref, model=base,
                     params=stage_params(p, "evaluate"), round_index=-1)
    labels = pool_labels(selectable)
    facts = {"description": pool.description, "generated": generated,
             "seconds": {c["stage"]: c["seconds"] for c in call.calls},
             **pool_facts(selectable, scores, base_eval, labels, p.scoring.contrast, call.seconds("score_pool"))}
    return {"refs": {"pool": selectable, "scores": scores, "base": base, "heldout": heldout_ref}, "facts": facts,
            "labels": labels}


def run_strategy(workspace: Path, prepared: dict, p: Params, pool_name: str, strategy: str, seed: int,
                 final_only: bool = False) -> dict[str, Any]:
    """One (strategy, seed) on one prepared pool: rounds + evaluations (`final_only`: of the last round's
    checkpoint only), and the per-round metrics."""
    refs, labels, call = prepared["refs"], prepared["labels"], Timed()
    start = time.perf_counter()
    rounds = run_rounds(call, str(workspace), p, refs["pool"], refs["scores"], refs["base"], refs["heldout"])
    checkpoints = [rd["train"] for rd in rounds][-1 if final_only else 0:]
    evaluations = run_evaluations(call, str(workspace), p, refs["heldout"], refs["base"], checkpoints)
    per_round = round_metrics(rounds, [None] * (len(rounds) - len(checkpoints)) + evaluations[1:], labels, call)
    return {"pool": pool_name, "strategy": strategy, "seed": seed, "grad_accum": p.training.grad_accum,
            "rounds": per_round, "wall_seconds": time.perf_counter() - start,
            "selection_cost": selection_cost(p, refs["scores"], rounds),
            "final": per_round[-1]["eval"], "final_rows": final_rows(evaluations[-1]),
            "steps": sum(x["train"]["steps"] for x in per_round)}


def run_comparison(spec: CompareSpec, base: Params, workspace: Path, root: Path,
                   on_run: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Every pool x strategy x seed of `spec` (own pool paths relative to `root`, the project).
    Returns {"spec", "pools": {name: facts}, "runs": [...]}."""
    workspace.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"spec": spec.model_dump(mode="json"), "pools": {}, "runs": []}
    final_only = spec.evaluate_rounds == "final"
    for pool_name, pool in spec.pools.items():
        log(f"pool {pool_name}: running the pool stages")
        prepared = prepare_pool(workspace, root, pool_name, pool, spec.pool_params(base))
        results["pools"][pool_name] = prepared["facts"]
        n = prepared["facts"]["rows_scorable"]  # `full` selects the rows with a finite score
        for seed in spec.seeds:  # seed by seed: a comparison stopped early holds every strategy at fewer seeds
            for strategy in spec.strategies:
                p = spec.run_params(base, strategy, seed)
                if p.selection.strategy == "full" and spec.match_full_steps:
                    p = match_full_steps(p, n)
                _finished(results, run_strategy(workspace, prepared, p, pool_name, strategy, seed, final_only), on_run)
            for arm in spec.compute_matched:  # after the strategy whose selection compute it spends, in the same seed
                runs = {r["strategy"]: r for r in results["runs"] if r["pool"] == pool_name and r["seed"] == seed}
                p, plan = matched_params(spec, base, arm, seed, runs, prepared["facts"]["rows_after_dedup"], n)
                run = run_strategy(workspace, prepared, p, pool_name, arm, seed, final_only)
                _finished(results, {**run, "matched": plan}, on_run)
    return results


def _finished(results: dict, run: dict, on_run: Callable[[dict], None] | None) -> None:
    log(f"pool {run['pool']} {run['strategy']} seed {run['seed']}: held-out loss {run['final']['mean_loss']:.4f} "
        f"({run['steps']} steps, {run['wall_seconds']:.0f} s)")
    results["runs"].append(run)
    if on_run is not None:
        on_run(run)


def compare(project: Path, spec_file: Path, params_file: Path | None, out_dir: Path, command: str,
            workspace: Path | None = None, log_to_mlflow: bool = True, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run the comparison, write results.json + report.md + PNGs under `out_dir`, log them to MLflow.
    `overrides` (`--set KEY=VALUE`) apply over `params_file` (or the defaults) before the strategies'.
    Every stage is content-keyed in the workspace: a stopped comparison re-run with the same spec
    (or fewer seeds) finds its finished runs in the store."""
    from curate.compare.summary import summarise
    from curate.env import mlflow_artifact_root, state_dir
    from curate.report.page import write_comparison_report

    spec = load_spec(spec_file)
    base = load_params(params_file, overrides)
    workspace = workspace or state_dir(project) / "compare" / spec.name
    results = run_comparison(spec, base, workspace, project)
    results["model_aware"] = model_aware(spec, base)
    results["command"] = command
    summary = summarise(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(results, out_dir / "results.json")
    write_json(summary, out_dir / "summary.json")
    page = write_comparison_report(results, summary, out_dir, command)
    run_id = None
    if log_to_mlflow:
        from curate.compare.tracking import log_comparison

        run_id = log_comparison(spec.experiment, mlflow_artifact_root(project), spec.name,
                                spec.model_dump(mode="json"), summary, out_dir)
    return {"results": results, "summary": summary, "page": page, "mlflow_run_id": run_id}
