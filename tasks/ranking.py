"""Ranking stage: the fixed ranking of the pool that the baselines `longest` and `rds` follow
(docs/selection-baselines.md). It runs once, before round 0, and only for those strategies.

    ranking.parquet   row_id, key (response tokens, or RDS+ similarity), in pool order
    stats.json        what was computed: rows, target rows, tokens through the model
    timings.json      its wall time (the selection cost; not part of the digest)

`longest`: the last assistant response's length in tokens of the base model's tokenizer, uncut.
`rds`: RDS+ (curate/selection/rds.py) with the base model, the targets being the held-out sets'
anchor rows (`evaluation.anchor_rows`; never evaluated).
"""
from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from transformers import AutoTokenizer

from curate.artifacts import TIMINGS, write_json, write_parquet
from curate.config import declared
from curate.seal import sealed_entry
from curate.evaluation.sets import anchor_set
from curate.models.loading import load_causal_lm, model_path
from curate.progress import Progress
from curate.selection.rds import embed_rows, rds_scores
from tasks.caching import Stage

STAGE = Stage("ranking")


def response_tokens(tokenizer, rows: list[dict]) -> list[int]:
    return [len(ids) for ids in tokenizer([r["response"] for r in rows], add_special_tokens=False)["input_ids"]]


@STAGE.task()
def rank_pool(project: str, pool: dict, model: dict, heldout: dict | None, params: dict) -> dict:
    out = STAGE.out(project, locals())
    if not out.exists():
        v = declared(params)
        strategy, s, bm = v.selection.strategy, v.scoring, v.base_model
        rows = pq.read_table(Path(pool["path"]) / "rows.parquet").to_pylist()
        start = time.perf_counter()
        if strategy == "longest":  # the tokenizer alone: no weights to load
            tokenizer = AutoTokenizer.from_pretrained(model_path(model), trust_remote_code=bm.trust_remote_code)
            key, stats = response_tokens(tokenizer, rows), {"forward_tokens": 0, "target_rows": 0}
        elif strategy == "rds":
            targets = anchor_set(Path(heldout["path"]), v.evaluation.anchor_rows) if heldout else []
            if not targets:
                raise ValueError("selection.strategy rds needs target rows: the last evaluation.anchor_rows rows of "
                                 "every held-out set; set evaluation.anchor_rows > 0 and give held-out rows")
            loaded, tokenizer = load_causal_lm(model_path(model), dtype=bm.dtype,
                                               trust_remote_code=bm.trust_remote_code, chat_template=bm.chat_template)
            embed = dict(system_prompt=s.system_prompt, max_length=s.max_length,
                         response_share=s.response_share, batch_tokens=s.batch_tokens)
            pool_e = embed_rows(loaded, tokenizer, rows, progress=Progress("rds: embed pool", "rows"), **embed)
            target_e = embed_rows(loaded, tokenizer, targets, **embed)
            key = rds_scores(pool_e.vectors, target_e.vectors).tolist()
            stats = {"forward_tokens": pool_e.forward_tokens + target_e.forward_tokens, "target_rows": len(targets)}
        else:
            raise ValueError(f"the ranking stage serves the strategies longest and rds, not {strategy!r}")
        seconds = time.perf_counter() - start
        with sealed_entry(out) as tmp:
            write_parquet(pa.table({"row_id": [r["row_id"] for r in rows], "key": [float(x) for x in key]}),
                          tmp / "ranking.parquet")
            write_json({"strategy": strategy, "rows": len(rows), **stats}, tmp / "stats.json")
            write_json({"seconds": seconds}, tmp / TIMINGS)
    return STAGE.ref(out)

