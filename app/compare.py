"""The comparison runner (`curate compare`): every strategy x seed on every pool variant, same base
model, same selection budget, same number of optimizer steps.

Per pool the demo generator writes a demo variant into the workspace (or the spec names your own
pool file), then ingest -> dedup -> embed -> semdedup -> holdout (decontamination; the split, for your own
pool without held-out sets) -> base model -> score run once: a
walk of the declared stages (flows/walk.py) with the `Timed` executor, the stage functions called
directly (no Prefect). For each strategy and seed, the rounds and evaluate steps are walked with the
strategy's parameters; the content-keyed store shares every stage whose inputs and parameters do not
change (the pool stages, the base model and its evaluation).

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

from curate.artifacts import ref_json, write_json
from curate.compare import model_aware
from curate.compare.cost import selection_cost
from curate.compare.facts import final_rows, match_full_steps, pool_facts, pool_labels, round_metrics
from curate.compare.matched import matched_params
from curate.compare.spec import CompareSpec, PoolFile, load_spec
from curate.config import Params, load_params
from curate.demo.pool import write_demo
from curate.seal import checked_ref
from flows.walk import Inputs, resolver, walk
from tasks.evaluate import evaluate
from tasks.executor import Direct
from tasks.pipeline import HELDOUT, STAGES, stage_params


def log(msg: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Timed(Direct):
    """The Direct executor (`task.fn`), noting each call's wall time."""

    def __init__(self):
        self.calls: list[dict[str, Any]] = []

    def call(self, task, note_round: int | None = None, **kwargs) -> dict:
        start = time.perf_counter()
        result = task.fn(**kwargs)
        self.calls.append({"stage": task.fn.__name__, "round": kwargs.get("round_index", note_round),
                           "seconds": time.perf_counter() - start})
        return result

    def seconds(self, stage: str, round_index: int | None = None) -> float:
        return sum(c["seconds"] for c in self.calls if c["stage"] == stage and (round_index is None or c["round"] == round_index))


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


def link_benchmarks(workspace: Path, root: Path, p: Params) -> None:
    """`decontamination.benchmarks` are paths inside the project; the comparison's stages run in its workspace,
    where each is linked (or copied) at the same relative path."""
    for rel in p.decontamination.benchmarks:
        source, target = root / rel, workspace / rel
        if not source.exists():
            raise FileNotFoundError(f"decontamination.benchmarks: {source} not found (paths are relative to the project)")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, target, copy_function=os.link) if source.is_dir() else os.link(source, target)


def pool_source(workspace: Path, root: Path, name: str, pool, p: Params) -> tuple[Inputs, dict]:
    """(the walk's inputs: the pool's raw file and its held-out files, what was generated or read) of one spec pool."""
    link_benchmarks(workspace, root, p)
    if isinstance(pool, PoolFile):
        path = (root / pool.path).resolve()
        if not path.exists():
            raise FileNotFoundError(f"compare spec: pool file {path} not found (paths are relative to the project)")
        held_path = (root / pool.heldout).resolve() if pool.heldout else None
        if held_path is not None and not held_path.exists():
            raise FileNotFoundError(f"compare spec: held-out file {held_path} not found")
        eval_dir = heldout_dir(workspace, name, held_path) if held_path else None
        return Inputs(str(workspace), p, raw=path, raw_eval=eval_dir), {
            "source": str(path), "heldout": str(held_path) if held_path else f"evaluation.holdout {p.evaluation.holdout}"}
    data = workspace / "data" / name
    counts = write_demo(data, size=pool.size, seed=pool.seed, noise=pool.noise,
                        eval_per_skill=pool.eval_per_skill, skill_mix=pool.skill_mix)
    return Inputs(str(workspace), p, raw=data / "pool.jsonl", raw_eval=data / "eval"), counts


def prepare_pool(workspace: Path, root: Path, name: str, pool, p: Params) -> dict[str, Any]:
    """The spec pool's data and its pool stages, the base model and its evaluation, run once; returns the
    walk's results and the pool facts."""
    call = Timed()
    inputs, generated = pool_source(workspace, root, name, pool, p)
    walked = walk(STAGES, call, inputs, until="score", checks=False).results
    walked.update(walk(STAGES, call, inputs, only=["evaluate"], checks=False, done=walked).results)
    split = ref_json(walked["holdout"])
    if isinstance(pool, PoolFile):
        ingested = ref_json(walked["ingest"])
        generated = {"pool_rows": ingested["rows_ok"], "quarantined": ingested["quarantined"],
                     "rows_after_dedup": split["rows_in"], **generated}
    generated["removed_heldout_overlap"] = split["removed_heldout_overlap"]
    selectable = selectable_pool(walked)
    labels = pool_labels(selectable)
    facts = {"description": pool.description, "generated": generated,
             "seconds": {c["stage"]: c["seconds"] for c in call.calls},
             **pool_facts(selectable, walked["score"], walked["evaluate"][0], labels, p.scoring.contrast,
                          call.seconds("score_pool"))}
    return {"inputs": inputs, "results": walked, "facts": facts, "labels": labels,
            "heldout": resolver(walked, inputs)(HELDOUT)}  # what the evaluate stage evaluates on


def selectable_pool(walked: dict) -> dict:
    """The pool the rounds select from: the holdout stage's `pool` part."""
    return checked_ref(Path(walked["holdout"]["path"]) / "pool").to_dict()


def run_strategy(workspace: Path, prepared: dict, p: Params, pool_name: str, strategy: str, seed: int,
                 final_only: bool = False) -> dict[str, Any]:
    """One (strategy, seed) on one prepared pool: rounds + evaluations (`final_only`: of the last round's
    checkpoint only), and the per-round metrics."""
    results, labels, call = prepared["results"], prepared["labels"], Timed()
    inputs = Inputs(str(workspace), p, raw=prepared["inputs"].raw, raw_eval=prepared["inputs"].raw_eval)
    start = time.perf_counter()
    if final_only:
        rounds = walk(STAGES, call, inputs, only=["rounds"], checks=False, done=results).results["rounds"]
        last = call.call(evaluate, project=str(workspace), heldout=prepared["heldout"], model=rounds[-1]["train"],
                         params=stage_params(p, "evaluate"), round_index=len(rounds) - 1)
        evaluations = [results["evaluate"][0]] + [None] * (len(rounds) - 1) + [last]
    else:
        walked = walk(STAGES, call, inputs, only=["rounds", "evaluate"], checks=False, done=results).results
        rounds, evaluations = walked["rounds"], walked["evaluate"]
    per_round = round_metrics(rounds, evaluations[1:], labels, call)
    return {"pool": pool_name, "strategy": strategy, "seed": seed, "grad_accum": p.training.grad_accum,
            "rounds": per_round, "wall_seconds": time.perf_counter() - start,
            "selection_cost": selection_cost(p, results["score"], rounds),
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
