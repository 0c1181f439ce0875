"""Train stage: one round of supervised fine-tuning on the round's selected subset.

The checkpoint carries the optimizer state and the global step, so the learning-rate schedule and
Adam's moments continue across rounds (IterIT does not reset them). With an online policy
(`training.online.policy`), each step's rows and loss weights are chosen inside the round and every
trained (row, step, weight) is written to `online_weights.parquet`.
"""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq

from curate.artifacts import TIMINGS, ref_json, write_json, write_parquet
from curate.seal import sealed_entry
from curate.config import OnlineParams, Params, declared
from curate.selection.iterit import selection_budget
from curate.training.schedule import planned_steps
from curate.progress import Progress
from curate.training.online import POLICY_CLASSES
from curate.training.distributed import train_round
from curate.training.trainer import RoundConfig
from curate.models.loading import model_path
from curate.evaluation.sets import anchor_set
from tasks.caching import Stage

STAGE = Stage("train")
LINEAGE = "online_weights.parquet"


def needs_anchors(online: OnlineParams) -> bool:
    return POLICY_CLASSES[online.policy].needs_anchors


def total_steps(p: Params, pool: dict) -> int:
    """Optimizer steps of the whole run on `pool` (the LR schedule spans every round): K rows a round, or
    every row of the pool for the strategy `full`."""
    rows = ref_json(pool)["kept"]
    budget = None if p.selection.strategy == "full" else selection_budget(rows, p.selection.ratio)
    return planned_steps(rows, budget, p.selection.rounds, p.training.batch_size, p.training.grad_accum,
                         p.training.epochs_per_round)


def subset_rows(pool: dict, selection: dict) -> list[dict]:
    """Rows of the pool selected this round, in selection rank order."""
    rows = pq.read_table(Path(pool["path"]) / "rows.parquet")
    chosen = pq.read_table(Path(selection["path"]) / "selection.parquet", columns=["row_id", "rank"]).to_pylist()
    by_id = {r["row_id"]: r for r in rows.to_pylist()}
    return [by_id[c["row_id"]] for c in sorted(chosen, key=lambda c: c["rank"])]


def _progress(round_index: int):
    bar = Progress(f"train round {round_index}: steps", "tokens")
    return lambda step, steps, loss, tokens_per_s: bar(step, steps, rate=tokens_per_s, loss=loss)


@STAGE.task()
def train(project: str, pool: dict, selection: dict, checkpoint: dict, params: dict, round_index: int, total_steps: int,
          heldout: dict | None = None, anchor_rows: int = 0) -> dict:
    """`heldout` and `anchor_rows` (evaluation.anchor_rows): where an anchor-based online policy takes its anchors."""
    out = STAGE.out(project, locals())
    if not out.exists():
        v = declared(params)
        t = v.training
        rows = subset_rows(pool, selection)
        anchors = anchor_set(Path(heldout["path"]), anchor_rows) if heldout and needs_anchors(t.online) else []
        config = RoundConfig.from_params(t, system_prompt=v.scoring.system_prompt,
                                         chat_template=v.base_model.chat_template, seed=v.project.seed, round_index=round_index, total_steps=total_steps)
        # A stable path (not the random temp name) so that a killed round finds its in-round checkpoint.
        model_out = out.parent / f"{out.name}.model"
        result = train_round(config, model_path(checkpoint), model_out, rows, processes=t.processes, anchors=anchors,
                             progress=_progress(round_index))
        with sealed_entry(out) as tmp:
            tmp.mkdir()
            os.rename(model_out, tmp / "model")
            write_parquet(result.log, tmp / "train_log.parquet")
            write_json({"step_seconds": result.step_seconds, "seconds": sum(result.step_seconds)}, tmp / TIMINGS)
            write_parquet(result.lineage, tmp / LINEAGE)
            log = result.log.to_pylist()
            write_json({"round": round_index, "steps": result.steps, "final_loss": result.final_loss, "rows": len(rows),
                        "rows_truncated": result.truncated_rows, "rows_skipped": result.skipped_rows,
                        "policy": t.online.policy, "anchors": len(anchors), "processes": t.processes,
                        "rows_trained": len(set(result.lineage.column("row_id").to_pylist())),
                        "fraction_kept": sum(x["kept"] for x in log) / max(sum(x["candidates"] for x in log), 1),
                        "weight_sum": sum(x["weight_sum"] for x in log)}, tmp / "stats.json")
    return STAGE.ref(out)
