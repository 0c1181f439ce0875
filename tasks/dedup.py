"""Dedup stage: exact (normalised hash) and near-duplicate (MinHash-LSH) removal, every removal recorded."""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from curate.artifacts import Ref, atomic_path, write_json, write_parquet
from curate.dedup import dedup_rows
from tasks.caching import Stage

STAGE = Stage("dedup", code=("curate/dedup", "curate/schema.py"))


@STAGE.task()
def dedup(project: str, rows: dict, params: dict) -> dict:
    out = STAGE.out(project, locals())
    if not out.exists():
        p = params["dedup"]
        table = pq.read_table(Path(rows["path"]) / "rows.parquet")
        result = dedup_rows(
            table,
            exact=p["exact"]["enabled"],
            casefold=p["exact"]["casefold"],
            keep=p["exact"]["keep"],
            near=p["near"]["enabled"],
            num_perm=p["near"]["num_perm"],
            ngram=p["near"]["ngram"],
            threshold=p["near"]["threshold"],
            seed=p["near"]["seed"],
        )
        with atomic_path(out) as tmp:
            write_parquet(result.kept, tmp / "rows.parquet")
            write_parquet(result.removed, tmp / "removed.parquet")
            write_json(result.stats, tmp / "stats.json")
    return Ref.of(out).to_dict()
