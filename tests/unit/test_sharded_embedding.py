"""Sharded embedding (docs/execution.md): `embed_shard` over 1-4 shards, each encoding its contiguous group of
the planned batches in a store entry of its own, and `embed` merging them store the bytes of one pass."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from curate.artifacts import Ref, write_parquet
from curate.config import Params
from tasks.embed import embed, embed_shard
from tasks.pipeline import stage_params

TEXTS = [("Add 2 and 3.", "The sum is 5."), ("Name a colour.", "Blue."), ("Reset my password?", "Use the link."),
         ("Translate 'cat' to French.", "Chat, a small domesticated feline kept as a pet in many homes."),
         ("Why is the sky blue?", "Rayleigh scattering of sunlight by the air."), ("Hi", "Hello!"),
         ("Write a haiku about rain.", "Soft rain on the roof / the garden drinks it slowly / puddles hold the sky")]


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("rows")
    write_parquet(pa.table({"row_id": [f"r{i}" for i in range(len(TEXTS))], "instruction": [t[0] for t in TEXTS],
                            "input": [""] * len(TEXTS), "response": [t[1] for t in TEXTS]}), path / "rows.parquet")
    return Ref.of(path).to_dict()


@pytest.mark.parametrize("shards", [1, 2, 4])
def test_sharded_embeddings_store_the_bytes_of_one_pass(rows, tmp_path, one_thread, shards):
    p = Params.model_validate({"embed": {"batch_size": 2}})  # 4 batches of the 7 texts
    params = stage_params(p, "embed")
    one = Path(embed.fn(project=str(tmp_path / "one"), rows=rows, params=params)["path"])
    project = str(tmp_path / "sharded")
    parts = [embed_shard.fn(project=project, rows=rows, params=stage_params(p, "embed_shard"), shard=i, shards=shards)
             for i in range(shards)]
    assert len({part["path"] for part in parts}) == shards  # a store entry each
    sharded = Path(embed.fn(project=project, rows=rows, params=params, shards=parts)["path"])
    assert (one / "embeddings.parquet").read_bytes() == (sharded / "embeddings.parquet").read_bytes()
    assert Ref.of(one).digest == Ref.of(sharded).digest


def test_shards_that_miss_rows_are_refused(rows, tmp_path, one_thread):
    p = Params.model_validate({"embed": {"batch_size": 2}})
    first = embed_shard.fn(project=str(tmp_path), rows=rows, params=stage_params(p, "embed_shard"), shard=0, shards=2)
    with pytest.raises(ValueError, match="do not cover every row"):
        embed.fn(project=str(tmp_path), rows=rows, params=stage_params(p, "embed"), shards=[first])
