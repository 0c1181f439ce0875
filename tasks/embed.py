"""Embed stage: one sentence-encoder vector per kept row (fixed_size_list<float32>)."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.artifacts import Ref, atomic_path, write_json, write_parquet
from curate.embed.minilm import embed_texts, load_encoder
from curate.progress import Progress
from curate.schema import embedding_schema, user_text
from tasks.caching import Stage

STAGE = Stage("embed")


def row_text(row: dict) -> str:
    return f"{user_text(row['instruction'], row['input'])}\n{row['response']}"


@STAGE.task()
def embed(project: str, rows: dict, params: dict) -> dict:
    out = STAGE.out(project, locals())
    if not out.exists():
        p = params["embed"]
        table = pq.read_table(Path(rows["path"]) / "rows.parquet", columns=["row_id", "instruction", "input", "response"])
        texts = [row_text(r) for r in table.to_pylist()]
        encoder = load_encoder(p["model"])
        vectors = embed_texts(
            texts, batch_size=p["batch_size"], max_length=p["max_length"], encoder=encoder,
            progress=Progress("embed", "rows"),
        )
        dim = int(vectors.shape[1]) if len(texts) else 384
        emb = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
        with atomic_path(out) as tmp:
            write_parquet(pa.table({"row_id": table["row_id"], "embedding": emb}, schema=embedding_schema(dim)), tmp / "embeddings.parquet")
            write_json({"rows": len(texts), "dim": dim, "model": p["model"]}, tmp / "stats.json")
    return Ref.of(out).to_dict()
