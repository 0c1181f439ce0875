"""Embed stage: one sentence-encoder vector per kept row (fixed_size_list<float32>).

With `execution.shards` > 1 the flow maps `embed_shard` over the shards: each plans the same batches
(texts sorted by length, `curate.embed.minilm.plan_batches`), encodes its contiguous group of them
(`curate.sharding.shard_batches`) and has a store entry of its own; `embed` puts their vectors in row
order. A vector depends only on its batch, so the result is the bits of one pass.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.artifacts import write_json, write_parquet
from curate.config import declared
from curate.seal import sealed_entry
from curate.embed.minilm import embed_texts, encode_batches, load_encoder, plan_batches
from curate.progress import Progress
from curate.schema import embedding_schema, user_text
from curate.sharding import padded_tokens, shard_batches
from tasks.caching import Stage, note_pid
from tasks.pipeline import pick

STAGE = Stage("embed", ignore=("shards",))  # the shards' vectors: the same bits as one pass
SHARD = Stage("embed_shard")
DEFAULT_DIM = 384  # all-MiniLM-L6-v2's, for an empty pool


def row_text(row: dict) -> str:
    return f"{user_text(row['instruction'], row['input'])}\n{row['response']}"


def _texts(rows: dict) -> tuple[pa.Table, list[str]]:
    table = pq.read_table(Path(rows["path"]) / "rows.parquet", columns=["row_id", "instruction", "input", "response"])
    return table, [row_text(r) for r in table.to_pylist()]


@SHARD.task()
def embed_shard(project: str, rows: dict, params: dict, shard: int, shards: int) -> dict:
    """Shard `shard` of `shards`: the vectors of its contiguous group of the planned batches (`index`: row positions)."""
    out = SHARD.out(project, locals())
    if not out.exists():
        note_pid(SHARD.name)
        p = declared(params).embed
        _, texts = _texts(rows)
        encoder = load_encoder(p.model)
        ids, batches = plan_batches(encoder, texts, p.batch_size, p.max_length)
        mine = [batches[b] for b in shard_batches(padded_tokens([len(x) for x in ids], batches), shards)[shard]] if batches else []
        vectors = encode_batches(encoder, ids, mine, Progress(f"embed shard {shard + 1}/{shards}", "rows"))
        dim = vectors.shape[1]
        with sealed_entry(out) as tmp:
            write_parquet(pa.table({"index": pa.array([i for b in mine for i in b], pa.int64()),
                                    "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)}),
                          tmp / "vectors.parquet")
    return SHARD.ref(out)


def _merge(shards: list[dict], n: int) -> np.ndarray:
    parts = [pq.read_table(Path(s["path"]) / "vectors.parquet") for s in shards]
    dim = parts[0].schema.field("embedding").type.list_size
    out = np.full((n, dim), np.nan, dtype=np.float32)
    for part in parts:
        index = part["index"].to_numpy()
        out[index] = part["embedding"].combine_chunks().flatten().to_numpy().reshape(len(index), dim)
    if np.isnan(out).any():
        raise ValueError("embed: the shards do not cover every row (were they made from these rows?)")
    return out


@STAGE.task()
def embed(project: str, rows: dict, params: dict, shards: list[dict] | None = None) -> dict:
    """`shards`: the `embed_shard` Refs of every shard, to merge instead of embedding here."""
    out = STAGE.out(project, locals())
    if not out.exists():
        p = declared(params).embed
        table, texts = _texts(rows)
        if shards and texts:
            vectors = _merge(shards, len(texts))
        else:
            vectors = embed_texts(texts, batch_size=p.batch_size, max_length=p.max_length,
                                  encoder=load_encoder(p.model), progress=Progress("embed", "rows"))
        dim = int(vectors.shape[1]) if len(texts) else DEFAULT_DIM
        emb = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
        with sealed_entry(out) as tmp:
            write_parquet(pa.table({"row_id": table["row_id"], "embedding": emb}, schema=embedding_schema(dim)), tmp / "embeddings.parquet")
            write_json({"rows": len(texts), "dim": dim, "model": p.model}, tmp / "stats.json")
    return STAGE.ref(out)


def step(run, arguments: dict) -> dict:
    """The embed stage through executor `run`; with `run.shards` > 1, its batches encoded shard by shard by
    `embed_shard` (each cached on its own), merged by `embed`."""
    if run.shards == 1 or STAGE.is_stored(arguments):
        return run.call(embed, **arguments)
    results = run.map(embed_shard, {"shard": list(range(run.shards))}, project=arguments["project"],
                      rows=arguments["rows"], params=pick(arguments["params"], SHARD.spec.params), shards=run.shards)
    return run.call(embed, **arguments, shards=results)
