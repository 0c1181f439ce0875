"""Pipeline steps shared by the Prefect flow and the DVC stage commands.

`call(task, **kwargs)` runs a stage: through Prefect (cached task runs) in the flow, or as the plain
function (`task.fn`) under `dvc repro`. Both write the same content-keyed store entries.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq

from curate.artifacts import Ref, ref_json
from curate.config import ExecutionParams, Params
from curate.demo.skills import SKILLS
from curate.pool_checks import check_pool
from curate.scoring.fit import ScorerDoesNotFit, fit_problem, outside_demo, tiny_outside_demo_warning
from curate.selection.iterit import selection_budget
from curate.selection.rounds import RANKED, RESCORING
from curate.training.schedule import steps_per_round
from curate.evaluation.sets import has_heldout_files
from tasks.dedup import STAGE as DEDUP
from tasks.dedup import dedup, minhash_shard, previous_dedup
from tasks.embed import STAGE as EMBED
from tasks.embed import embed, embed_shard
from tasks.evaluate import evaluate
from tasks.holdout import decontamination_references, split_refs
from tasks.pipeline import stage_params
from tasks.publish import LAYOUT, prune, publish
from tasks.ranking import rank_pool
from tasks.score import drop_plan, plan_window, rescore_window, score_shard, shard_count
from tasks.select import select
from tasks.train import needs_anchors, train

Call = Callable[..., dict]


def holdout_arguments(project: str, p: Params) -> dict:
    """The holdout stage's arguments: its parameters, whether raw.eval_dir holds held-out files (then nothing
    is split off), and the sets it decontaminates the pool against."""
    eval_dir = Path(project) / p.raw.eval_dir
    files = has_heldout_files(eval_dir)
    return {"params": stage_params(p, "holdout"), "eval_files": files,
            "references": decontamination_references(project, p, eval_dir if files else None)}


def pool_and_heldout(project: str, p: Params, split: dict) -> tuple[dict, dict]:
    """(the pool rounds select from, the held-out sets evaluation reads) of a holdout stage artifact."""
    pool, held = split_refs(split)
    eval_dir = Path(project) / p.raw.eval_dir
    return pool, (Ref.of(eval_dir).to_dict() if has_heldout_files(eval_dir) else held)


def check_pool_rows(p: Params, refs: dict[str, dict], budget: bool) -> None:
    """Stop before the base model is built when no row is left (curate/pool_checks.py), and, with `budget`,
    when selection.ratio gives no row per round. `refs`: stage -> its artifact (a rows.parquet inside), in
    pipeline order, ingest first; the last is the pool the rounds select from."""
    rows = {stage: pq.ParquetFile(Path(ref["path"]) / "rows.parquet").metadata.num_rows for stage, ref in refs.items()}
    ratio = p.selection.ratio if budget and p.selection.strategy != "full" else None
    check_pool(p.raw.dir, ref_json(refs["ingest"]), rows, str(Path(refs["ingest"]["path"]) / "quarantine.parquet"), ratio)


def pool_warnings(p: Params, pool: dict) -> list[str]:
    """Warnings about the pool and the chosen base model, given before scoring (and in the summary)."""
    if p.base_model.source != "tiny":
        return []
    skills = pq.read_table(Path(pool["path"]) / "rows.parquet", columns=["skill"])["skill"].to_pylist()
    return [tiny_outside_demo_warning()] if outside_demo(skills, list(SKILLS)) else []


def check_scorer_fit(p: Params, scores: dict) -> None:
    """Stop right after scoring, with the cause and the fix, when the base model cannot score the pool."""
    ifd = pq.read_table(Path(scores["path"]) / "scores.parquet", columns=["ifd"])["ifd"].to_numpy(zero_copy_only=False)
    problem = fit_problem(ifd, ifd_max=p.selection.ifd_max, min_eligible_share=p.scorer_fit.min_eligible_share,
                          max_nan_share=p.scorer_fit.max_nan_share, max_length=p.scoring.max_length,
                          source=p.base_model.source)
    if problem:
        raise ScorerDoesNotFit(problem)


def planned_steps(p: Params, pool_rows: int) -> int:
    """Optimizer steps of the whole run (the LR schedule spans every round)."""
    k = pool_rows if p.selection.strategy == "full" else selection_budget(pool_rows, p.selection.ratio)
    t = p.training
    per_round = steps_per_round(k, t.batch_size, t.grad_accum, t.epochs_per_round)
    return max(1, per_round * p.selection.rounds)


def run_dedup(call: Call, execution: ExecutionParams | None, project: str, p: Params, rows: dict) -> dict:
    """The dedup stage, against the previous dedup artifact; with `execution` (the flow's), execution.shards > 1
    and near dedup on, its MinHash signatures computed shard by shard by `minhash_shard` through `call.map`
    (each cached on its own), looked up by `dedup`."""
    params = stage_params(p, "dedup")
    arguments = {"project": project, "rows": rows, "params": params,
                 "previous": previous_dedup(project, rows, params)}
    if execution is None or execution.shards == 1 or not p.dedup.near.enabled or DEDUP.is_stored(arguments):
        return call(dedup, **arguments)
    results = call.map(minhash_shard, execution, {"shard": list(range(execution.shards))}, project=project, rows=rows,
                       params=stage_params(p, "minhash_shard"), previous=arguments["previous"], shards=execution.shards)
    return call(dedup, **arguments, shards=results)


def run_embed(call: Call, execution: ExecutionParams | None, project: str, p: Params, rows: dict) -> dict:
    """The embed stage; with `execution` (the flow's) and execution.shards > 1, its batches encoded shard by
    shard by `embed_shard` through `call.map` (each cached on its own), merged by `embed`."""
    params = stage_params(p, "embed")
    if execution is None or execution.shards == 1 or EMBED.is_stored({"project": project, "rows": rows, "params": params}):
        return call(embed, project=project, rows=rows, params=params)
    results = call.map(embed_shard, execution, {"shard": list(range(execution.shards))}, project=project, rows=rows,
                       params=stage_params(p, "embed_shard"), shards=execution.shards)
    return call(embed, project=project, rows=rows, params=params, shards=results)


def merge_shards(call, execution: ExecutionParams, project: str, p: Params, plan: dict, model: dict, task,
                 **arguments) -> dict:
    """`task` (score_pool or rescore_window) merging the shards of `plan`, each scored by `score_shard` through
    `call.map` (the flow's Runner: on Dask workers with execution.runner dask); then the plan is dropped."""
    results = call.map(score_shard, execution, {"shard": list(range(shard_count(plan)))}, project=project, plan=plan,
                       model=model, params=stage_params(p, "score_shard"), note_round=arguments.get("round_index"))
    merged = call(task, project=project, model=model, **arguments, shards={"plan": plan, "results": results})
    drop_plan(plan)
    return merged


def rescore(call: Call, execution: ExecutionParams | None, project: str, p: Params, pool: dict, model: dict,
            state: dict, round_index: int) -> dict:
    """The rescore stage of round `round_index`; with `execution` (the flow's) and execution.shards > 1, its
    window's batches planned once and scored shard by shard (README: Execution: scaling out)."""
    arguments = {"pool": pool, "state": state, "params": stage_params(p, "rescore"), "round_index": round_index}
    plan = None if execution is None else plan_window(project, model=model, shards=execution.shards, **arguments)
    if plan is None:
        return call(rescore_window, project=project, model=model, **arguments)
    return merge_shards(call, execution, project, p, plan, model, rescore_window, **arguments)


def run_rounds(call: Call, project: str, p: Params, pool: dict, scores: dict, base: dict,
               heldout: dict | None = None, execution: ExecutionParams | None = None) -> list[dict]:
    """IterIT's loop: for each round, re-score the window with the newest checkpoint, select, train.
    `heldout` (the held-out sets' Ref) is where anchor-based online policies and `rds` take their
    anchors. The baselines `longest` and `rds` first rank the pool once (the ranking stage).
    `execution`: the flow's, whose Runner `call` can `.map` the re-scoring's shards; None (a direct
    caller: `curate stage`, `curate compare`): every window re-scored in one pass."""
    total = planned_steps(p, ref_json(pool)["kept"])
    anchors = ({"heldout": heldout, "anchor_rows": p.evaluation.anchor_rows}
               if heldout is not None and needs_anchors(p.training.online) else {})
    ranking = (call(rank_pool, project=project, pool=pool, model=base, heldout=heldout,
                    params=stage_params(p, "ranking")) if p.selection.strategy in RANKED else None)
    checkpoint, previous, rounds = base, None, []
    for r in range(p.selection.rounds):
        window = None
        if r > 0 and p.selection.strategy in RESCORING:
            window = rescore(call, execution, project, p, pool, checkpoint, previous, r)
        previous = call(select, project=project, pool=pool, base_scores=scores, previous=previous, window_scores=window,
                        model=base, params=stage_params(p, "select"), round_index=r,
                        **({"ranking": ranking} if ranking else {}))
        checkpoint = call(train, project=project, pool=pool, selection=previous, checkpoint=checkpoint,
                          params=stage_params(p, "train"), round_index=r, total_steps=total,
                          **anchors)
        rounds.append({"ranking": ranking if r == 0 else None, "rescore": window, "select": previous,
                       "train": checkpoint})
    return rounds


def run_evaluations(call: Call, project: str, p: Params, heldout: dict, base: dict, checkpoints: list[dict],
                    execution: ExecutionParams | None = None) -> list[dict]:
    """Held-out metrics of the base model and of every round's checkpoint: [base, round 0, round 1, ...].
    `execution`: the flow's, whose Runner `call` `.map`s the evaluations (on Dask or Ray workers with runner dask or ray);
    None (a direct caller): one after the other."""
    params = stage_params(p, "evaluate")
    models = [base] + checkpoints
    rounds = list(range(-1, len(checkpoints)))
    if execution is not None:
        return call.map(evaluate, execution, {"model": models, "round_index": rounds}, project=project,
                        heldout=heldout, params=params)
    return [call(evaluate, project=project, heldout=heldout, model=m, params=params, round_index=r)
            for m, r in zip(models, rounds)]


def publish_rounds(project: str, rounds: list[dict]) -> None:
    for r, rd in enumerate(rounds):
        for part in ("ranking", "rescore", "select", "train"):
            if rd.get(part):
                publish(project, rd[part], f"{LAYOUT['rounds']}/round-{r}/{part}")
    prune(project, LAYOUT["rounds"], {f"round-{r}" for r in range(len(rounds))})


def publish_evaluations(project: str, evaluations: list[dict]) -> None:
    names = ["base"] + [f"round-{r}" for r in range(len(evaluations) - 1)]
    for name, ref in zip(names, evaluations):
        publish(project, ref, f"{LAYOUT['evaluate']}/{name}")
    prune(project, LAYOUT["evaluate"], set(names))
