"""Semantic dedup stage (SemDeDup-style, on the embed stage's vectors): k-means clusters, pairs with
cosine > 1 - epsilon inside a cluster are duplicates, one row kept per component. Off by default:
templated pools (like the demo) are semantically near-identical without being duplicates."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.artifacts import Ref, atomic_path, ref_json, write_json, write_parquet
from curate.dedup.semantic import semantic_duplicates
from curate.schema import REMOVED
from tasks.caching import Stage

STAGE = Stage("semdedup", code=("curate/dedup/semantic.py", "curate/dedup/exact.py", "curate/schema.py"))


@STAGE.task()
def semdedup(project: str, rows: dict, embeddings: dict, params: dict) -> dict:
    out = STAGE.out(project, locals())
    if not out.exists():
        p = params["dedup"]["semantic"]
        table = pq.read_table(Path(rows["path"]) / "rows.parquet")
        removed = REMOVED.empty_table()
        if p["enabled"] and table.num_rows:
            emb = pq.read_table(Path(embeddings["path"]) / "embeddings.parquet")
            assert emb["row_id"].to_pylist() == table["row_id"].to_pylist(), "embeddings are not aligned with rows"
            vectors = np.stack(emb["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
            lengths = pc.utf8_length(table["response"]).to_numpy(zero_copy_only=False)
            res = semantic_duplicates(vectors, epsilon=p["epsilon"], keep=p["keep"], lengths=lengths,
                                      seed=p["seed"], probes=p["probes"])
            idx = np.arange(table.num_rows)
            drop = idx[res.kept_index != idx]
            ids = table["row_id"].to_pylist()
            removed = pa.Table.from_pylist(
                [{"row_id": ids[i], "source": table["source"][i].as_py(), "position": table["position"][i].as_py(),
                  "reason": "semantic", "duplicate_of": ids[res.kept_index[i]], "similarity": float(res.similarity[i])}
                 for i in drop], schema=REMOVED)
            table = table.filter(pa.array(res.kept_index == idx))
        upstream = ref_json(rows)
        with atomic_path(out) as tmp:
            write_parquet(table, tmp / "rows.parquet")
            write_parquet(removed, tmp / "removed.parquet")
            write_json({"enabled": p["enabled"], "rows_in": upstream["kept"], "kept": table.num_rows,
                        "removed_semantic": removed.num_rows}, tmp / "stats.json")
    return Ref.of(out).to_dict()
