"""Run a strategy comparison: every strategy x seed on every pool variant, same base model,
same selection budget, same number of optimizer steps.

Per pool variant the demo generator writes the pool into the workspace, then ingest -> dedup ->
embed -> semdedup -> base model -> score run once (the stage functions called directly, as
`flows/stages.py` does; no Prefect). For each strategy and seed, `flows.steps.run_rounds` and
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

Imports of the pipeline (tasks/, flows/, which import Prefect) are local to `run_comparison`.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pyarrow.parquet as pq

from curate.artifacts import Ref, read_json
from curate.compare.metrics import composition, ifd_histogram, overlap
from curate.compare.spec import CompareSpec, merge, validated
from curate.config import Params
from curate.selection.iterit import selection_budget


def log(msg: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Timed:
    """A stage caller (`call(task, **kwargs)`) that runs `task.fn` and records each call's wall time."""

    def __init__(self):
        self.calls: list[dict[str, Any]] = []

    def __call__(self, task, **kwargs) -> dict:
        start = time.perf_counter()
        result = task.fn(**kwargs)
        self.calls.append({"stage": task.fn.__name__, "round": kwargs.get("round_index"),
                           "seconds": time.perf_counter() - start})
        return result

    def seconds(self, stage: str, round_index: int | None = None) -> float:
        return sum(c["seconds"] for c in self.calls if c["stage"] == stage and (round_index is None or c["round"] == round_index))


def steps_per_round(rows: int, batch_size: int, grad_accum: int, epochs: int) -> int:
    return math.ceil(math.ceil(rows / batch_size) / grad_accum) * epochs


def match_full_steps(p: Params, pool_rows: int) -> Params:
    """`full` with the K-row strategies' optimizer steps per round: one pass over the whole pool per
    round, gradient accumulation raised to ceil(batches of the pool / steps of a K-row round)."""
    t = p.training
    target = steps_per_round(selection_budget(pool_rows, p.selection.ratio), t.batch_size, t.grad_accum, t.epochs_per_round)
    grad_accum = math.ceil(math.ceil(pool_rows / t.batch_size) / target)
    return validated(merge(p.model_dump(mode="json"), {"training": {"grad_accum": grad_accum, "epochs_per_round": 1}}),
                     "full (step-matched)")


def _eval_summary(ref: dict) -> dict[str, Any]:
    m = read_json(Path(ref["path"]) / "metrics.json")
    return {"mean_loss": m["mean_loss"], "mean_exact_match": m["mean_exact_match"],
            "sets": {k: {"loss": v["loss"], "exact_match": v["exact_match"]} for k, v in m["sets"].items()}}


def pool_labels(pool: dict) -> dict[str, tuple[str | None, str | None]]:
    t = pq.read_table(Path(pool["path"]) / "rows.parquet", columns=["row_id", "skill", "truth"])
    return {r: (s, g) for r, s, g in zip(*(t[c].to_pylist() for c in ("row_id", "skill", "truth")))}


def _response_tokens(ref: dict) -> int:
    t = pq.read_table(Path(ref["path"]) / "scores.parquet", columns=["n_response_tokens"])
    return int(sum(x or 0 for x in t["n_response_tokens"].to_pylist()))


def pool_facts(pool: dict, scores: dict, base_eval: dict, labels: dict, contrast: bool, score_seconds: float) -> dict:
    """What the report says about a pool: size, skill and noise composition, scoring cost, base metrics, IFD histogram."""
    score_table = pq.read_table(Path(scores["path"]) / "scores.parquet", columns=["row_id", "ifd"])
    truth = [labels.get(r, (None, None))[1] for r in score_table["row_id"].to_pylist()]
    ifd = score_table["ifd"].to_pylist()
    return {
        "rows_after_dedup": len(labels), "rows_scorable": sum(1 for x in ifd if x is not None and math.isfinite(x)),
        "skill": composition(s for s, _ in labels.values()), "truth": composition(g for _, g in labels.values()),
        "score": {"rows": score_table.num_rows, "response_tokens": _response_tokens(scores), "seconds": score_seconds,
                  "texts_per_row": 3 if contrast else 2},
        "base_eval": _eval_summary(base_eval), "ifd_hist_base": ifd_histogram(ifd, truth),
    }


def round_metrics(rounds: list[dict], evaluations: list[dict], labels: dict, wall: Timed | None = None) -> list[dict]:
    """Per round: held-out metrics, subset composition by noise kind and skill, overlap with the previous
    round, IFD histogram of the scores the round selected on, training and re-scoring cost."""
    out, previous = [], None
    for r, (rd, ev) in enumerate(zip(rounds, evaluations)):
        chosen = pq.read_table(Path(rd["select"]["path"]) / "selection.parquet", columns=["row_id"])["row_id"].to_pylist()
        state = pq.read_table(Path(rd["select"]["path"]) / "state.parquet", columns=["row_id", "ifd"])
        train_log = pq.read_table(Path(rd["train"]["path"]) / "train_log.parquet").to_pylist()
        entry = {
            "round": r, "selected": len(chosen), "eval": _eval_summary(ev),
            "truth": composition(labels[x][1] for x in chosen), "skill": composition(labels[x][0] for x in chosen),
            "overlap_prev": overlap(previous, chosen) if previous is not None else None,
            "ifd_hist": ifd_histogram(state["ifd"].to_pylist(), [labels[x][1] for x in state["row_id"].to_pylist()]),
            "train": {"steps": len(train_log), "tokens": sum(x["tokens"] for x in train_log),
                      "response_tokens": sum(x["response_tokens"] for x in train_log),
                      "seconds": sum(x["seconds"] for x in train_log),
                      "wall_seconds": wall.seconds("train", r) if wall else None},
            "rescore": None,
        }
        if rd.get("rescore"):
            stats = read_json(Path(rd["rescore"]["path"]) / "stats.json")
            entry["rescore"] = {"rows": stats["rows_scored"] + stats["rows_from_cache"], "rows_scored": stats["rows_scored"],
                                "response_tokens": _response_tokens(rd["rescore"]),
                                "wall_seconds": wall.seconds("rescore_window", r) if wall else 0.0}
        out.append(entry)
        previous = chosen
    return out


def prepare_pool(workspace: Path, name: str, variant, p: Params) -> dict[str, Any]:
    """Write the variant's demo data and run the pool stages once; returns the refs and the pool facts."""
    from curate.demo.pool import write_demo
    from tasks.base_model import base_model
    from tasks.dedup import dedup
    from tasks.embed import embed
    from tasks.evaluate import evaluate
    from tasks.ingest import ingest
    from tasks.pipeline import stage_params
    from tasks.score import score_pool
    from tasks.semdedup import semdedup

    data = workspace / "data" / name
    counts = write_demo(data, size=variant.size, seed=variant.seed, noise=variant.noise,
                        eval_per_skill=variant.eval_per_skill, skill_mix=variant.skill_mix)
    project, call = str(workspace), Timed()
    raw, heldout = Ref.of(data / "pool.jsonl").to_dict(), Ref.of(data / "eval").to_dict()
    rows = call(ingest, project=project, raw=raw, params=stage_params(p, "ingest"))
    deduped = call(dedup, project=project, rows=rows, previous=None, params=stage_params(p, "dedup"))
    embeddings = call(embed, project=project, rows=deduped, params=stage_params(p, "embed"))
    pool = call(semdedup, project=project, rows=deduped, embeddings=embeddings, params=stage_params(p, "semdedup"), previous=None)
    base = call(base_model, project=project, params=stage_params(p, "base_model"))
    scores = call(score_pool, project=project, pool=pool, model=base, params=stage_params(p, "score"))
    base_eval = call(evaluate, project=project, heldout=heldout, model=base,
                     params=stage_params(p, "evaluate"), round_index=-1)
    labels = pool_labels(pool)
    facts = {"description": variant.description, "generated": counts, "seconds": {c["stage"]: c["seconds"] for c in call.calls},
             **pool_facts(pool, scores, base_eval, labels, p.scoring.contrast, call.seconds("score_pool"))}
    return {"refs": {"pool": pool, "scores": scores, "base": base, "heldout": heldout}, "facts": facts, "labels": labels}


def run_strategy(workspace: Path, prepared: dict, p: Params, pool_name: str, strategy: str, seed: int) -> dict[str, Any]:
    """One (strategy, seed) on one prepared pool: rounds + evaluations, and the per-round metrics."""
    from flows.steps import run_evaluations, run_rounds

    refs, labels, call = prepared["refs"], prepared["labels"], Timed()
    start = time.perf_counter()
    rounds = run_rounds(call, str(workspace), p, refs["pool"], refs["scores"], refs["base"], refs["heldout"])
    evaluations = run_evaluations(call, str(workspace), p, refs["heldout"], refs["base"], [rd["train"] for rd in rounds])
    per_round = round_metrics(rounds, evaluations[1:], labels, call)
    return {"pool": pool_name, "strategy": strategy, "seed": seed, "grad_accum": p.training.grad_accum,
            "rounds": per_round, "wall_seconds": time.perf_counter() - start,
            "final": per_round[-1]["eval"], "steps": sum(x["train"]["steps"] for x in per_round)}


def run_comparison(spec: CompareSpec, base: Params, workspace: Path,
                   on_run: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Every pool x strategy x seed of `spec`. Returns {"spec", "pools": {name: facts}, "runs": [...]}."""
    workspace.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"spec": spec.model_dump(mode="json"), "pools": {}, "runs": []}
    for pool_name, variant in spec.pools.items():
        log(f"pool {pool_name}: writing {variant.size} rows and running the pool stages")
        prepared = prepare_pool(workspace, pool_name, variant, spec.pool_params(base))
        results["pools"][pool_name] = prepared["facts"]
        n = prepared["facts"]["rows_scorable"]  # `full` selects the rows with a finite score
        for strategy in spec.strategies:
            for seed in spec.seeds:
                p = spec.run_params(base, strategy, seed)
                if p.selection.strategy == "full" and spec.match_full_steps:
                    p = match_full_steps(p, n)
                run = run_strategy(workspace, prepared, p, pool_name, strategy, seed)
                log(f"pool {pool_name} {strategy} seed {seed}: held-out loss {run['final']['mean_loss']:.4f} "
                    f"({run['steps']} steps, {run['wall_seconds']:.0f} s)")
                results["runs"].append(run)
                if on_run is not None:
                    on_run(run)
    return results
