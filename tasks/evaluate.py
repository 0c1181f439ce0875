"""Evaluate stage: every round's checkpoint (and the base model) on the held-out sets: the files of
raw.eval_dir, or, without any, the rows the holdout stage held out of the pool (tasks/holdout.py).

    metrics.json   per set: loss, rows, response tokens, rows cut, exact match; their means
    rows.parquet   per evaluated row: set, row_id, loss, tokens (what `curate compare` pairs arms on)
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from curate.artifacts import write_json, write_parquet
from curate.config import declared
from curate.seal import sealed_entry
from curate.evaluation.heldout import evaluate as evaluate_model
from curate.evaluation.sets import heldout_sets
from curate.models.loading import load_causal_lm, model_path
from tasks.caching import Stage, note_pid

STAGE = Stage("evaluate")
ROWS = "rows.parquet"  # set, row_id, loss (mean over the row's response tokens), tokens: one line per evaluated row


def row_table(rows: dict[str, dict[str, list]]) -> pa.Table:
    """The per-row losses of every held-out set, in set and row order."""
    return pa.table({"set": [name for name, r in rows.items() for _ in r["loss"]],
                     "row_id": [x for r in rows.values() for x in r["row_id"]],
                     "loss": pa.array([x for r in rows.values() for x in r["loss"]], pa.float64()),
                     "tokens": pa.array([x for r in rows.values() for x in r["tokens"]], pa.int64())})


@STAGE.task()
def evaluate(project: str, heldout: dict, model: dict, params: dict, round_index: int) -> dict:
    out = STAGE.out(project, locals())
    if not out.exists():
        note_pid(STAGE.name)
        v = declared(params)
        e, bm, s = v.evaluation, v.base_model, v.scoring
        sets = heldout_sets(Path(heldout["path"]), e.max_rows_per_skill, e.anchor_rows)
        lm, tokenizer = load_causal_lm(model_path(model), dtype=bm.dtype, trust_remote_code=bm.trust_remote_code,
                                       chat_template=bm.chat_template)
        metrics = evaluate_model(lm, tokenizer, sets, system_prompt=s.system_prompt,
                                 max_length=s.max_length, batch_tokens=e.batch_tokens,
                                 response_share=s.response_share, exact_match=e.exact_match)
        rows = metrics.pop("rows")
        with sealed_entry(out) as tmp:
            write_json({"round": round_index, "model_digest": model["digest"], **metrics}, tmp / "metrics.json")
            write_parquet(row_table(rows), tmp / ROWS)
    return STAGE.ref(out)


def step(run, arguments: dict) -> list[dict]:
    """Held-out metrics of the base model and of every round's checkpoint (`checkpoints`): [base, round 0, ...],
    mapped by executor `run` (on Dask or Ray workers with execution.runner dask or ray)."""
    models = [arguments["model"]] + list(arguments["checkpoints"] or [])
    return run.map(evaluate, {"model": models, "round_index": list(range(-1, len(models) - 1))},
                   project=arguments["project"], heldout=arguments["heldout"], params=arguments["params"])
