"""Holdout stage: the pool the rounds select from, and the held-out rows evaluation reads when the user
gave no held-out files (curate/evaluation/split.py). It runs on every pool; with held-out files in
raw.eval_dir its share is 0 and the pool passes through whole.

    pool/rows.parquet       the rows selection and training see (ROWS schema)
    heldout/rows.parquet    the rows held out (never selected nor trained), evaluated as the set `holdout`
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.artifacts import digest, write_json, write_parquet
from curate.config import declared
from curate.seal import checked_ref, sealed_entry
from curate.evaluation.split import KIND, holdout_mask
from curate.pool_checks import check_pool_artifacts
from curate.scoring.fit import pool_warnings
from tasks.caching import Stage

STAGE = Stage("holdout")


@STAGE.task()
def holdout(project: str, pool: dict, params: dict, eval_files: bool) -> dict:
    """`eval_files`: does raw.eval_dir hold the held-out sets? Then nothing is split off (share 0)."""
    out = STAGE.out(project, locals())
    if not out.exists():
        share = 0.0 if eval_files else declared(params).evaluation.holdout
        table = pq.read_table(Path(pool["path"]) / "rows.parquet")
        mask = pa.array(holdout_mask(table["row_id"].to_pylist(), share))
        kept, held = table.filter(pc.invert(mask)), table.filter(mask)
        with sealed_entry(out) as tmp:
            write_parquet(kept, tmp / "pool" / "rows.parquet")
            write_parquet(held, tmp / "heldout" / "rows.parquet")
            write_json({"kind": KIND, "rows": held.num_rows, "share": share,
                        "digest": digest(tmp / "heldout" / "rows.parquet")}, tmp / "heldout" / "stats.json")
            stats = {"rows_in": table.num_rows, "kept": kept.num_rows, "heldout": held.num_rows, "share": share,
                     "eval_files": eval_files}
            write_json(stats, tmp / "pool" / "stats.json")
            write_json(stats, tmp / "stats.json")
    return STAGE.ref(out)


def split_refs(ref: dict) -> tuple[dict, dict]:
    """(pool, held-out rows) of a holdout artifact, as Refs of its two parts."""
    return checked_ref(Path(ref["path"]) / "pool").to_dict(), checked_ref(Path(ref["path"]) / "heldout").to_dict()


def eval_files(arguments: dict) -> dict:
    """`eval_files`: the held-out files' Ref (None without any) -> whether there are any."""
    return {**arguments, "eval_files": arguments["eval_files"] is not None}


def check(p, value) -> list[str]:
    """Stop before the base model is built when no row is left, or when selection.ratio gives no row per round
    (curate/pool_checks.py); warn when the base model does not know this pool."""
    pool = value("holdout/pool")
    artifacts = {"ingest": value("ingest"), "dedup": value("dedup"), "semdedup": value("semdedup"), "holdout": pool}
    check_pool_artifacts(p.raw.dir, artifacts, p.selection.ratio if p.selection.strategy != "full" else None)
    return pool_warnings(pool["path"], p.base_model.source)
