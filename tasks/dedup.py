"""Dedup stage: exact (normalised hash) and near-duplicate (MinHash-LSH) removal, every removal recorded,
incremental across runs.

Output (`.curate/store/dedup/<key>/`, published to data/dedup):

    rows.parquet        the kept rows (ROWS schema, pool order), written batch by batch
    removed.parquet     every removed row: reason, duplicate_of, similarity
    stats.json          counts, mode (full | incremental), index (none | loaded | rebuilt | stale | unusable), reason
    cluster_sizes.png   histogram of duplicate-cluster sizes
    index/              the kept rows' digests, signatures and LSH band keys for the next run
                        (curate/dedup/index.py)
    lineage.json        what it was computed from: inputs digest, settings digest, previous artifact

`previous` is the earlier dedup artifact to deduplicate against (a Ref; None = full pass). It is part
of the cache key; tasks/previous.py picks it.

With `execution.shards` > 1 (and near dedup on) the flow maps `minhash_shard` over the shards first: each
normalises and hashes one contiguous group of the new rows and signs their distinct texts
(curate/dedup/presign.py: `row_digests.parquet`, `signatures.parquet`) in a store entry of its own, and
`dedup` takes those digests and signatures instead of computing them. Both depend only on the row's
text, so the artifact is the bytes of one pass.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.artifacts import atomic_path, iter_batches, write_json, write_parquet
from curate.config import declared
from curate.dedup import DedupSettings, dedup_batches
from curate.dedup.incremental import (ID_COLUMNS, INDEX_DIR, KEPT_FILE, REMOVED_FILE, TEXT_COLUMNS,
                                      previous_from_artifact)
from curate.dedup.presign import Presigned, new_rows, shard_rows, sign_rows
from curate.dedup.report import plot_cluster_sizes
from curate.schema import ROWS
from curate.seal import sealed_entry
from tasks.caching import Stage, note_pid
from tasks.pipeline import pick
from tasks.previous import previous_artifact, remember, usable_previous, write_lineage

STAGE = Stage("dedup", ignore=("shards",))  # the shards' signatures: the ones dedup would compute
SHARD = Stage("minhash_shard")
BATCH_ROWS = 65_536


def settings_of(params: dict) -> DedupSettings:
    """DedupSettings from the params slice {"dedup": {...}}."""
    exact, near = declared(params).dedup.exact, declared(params).dedup.near
    return DedupSettings(exact=exact.enabled, casefold=exact.casefold, keep=exact.keep, near=near.enabled,
                         num_perm=near.num_perm, ngram=near.ngram, threshold=near.threshold, seed=near.seed,
                         verify=near.verify)


def previous_dedup(project: str, rows: dict, params: dict) -> dict | None:
    """The earlier dedup artifact to deduplicate `rows` against, None when there is none."""
    return previous_artifact(project, STAGE.name, rows["digest"], settings_of(params).digest())


@SHARD.task()
def minhash_shard(project: str, rows: dict, params: dict, previous: dict | None, shard: int, shards: int) -> dict:
    """Shard `shard` of `shards`: the MinHash signatures of the distinct texts of its group of the rows that
    dedup (with this `previous`) will examine."""
    out = SHARD.out(project, locals())
    if not out.exists():
        note_pid(SHARD.name)
        settings = settings_of(params)
        source = Path(rows["path"]) / "rows.parquet"
        prior = previous_from_artifact(previous["path"], settings, fingerprints=False)[0] if usable_previous(previous) else None
        mine = shard_rows(new_rows(pq.read_table(source, columns=ID_COLUMNS), prior), shard, shards)
        signed = sign_rows(source, mine, settings, BATCH_ROWS)
        with sealed_entry(out) as tmp:
            signed.write(tmp)
            write_json({"rows": len(mine), "texts_signed": len(signed), "shard": shard, "shards": shards},
                       tmp / "stats.json")
    return SHARD.ref(out)


@STAGE.task()
def dedup(project: str, rows: dict, params: dict, previous: dict | None = None, shards: list[dict] | None = None) -> dict:
    """`shards`: the `minhash_shard` Refs of every shard, whose signatures dedup looks up instead of computing."""
    out = STAGE.out(project, locals())
    if not out.exists():
        settings = settings_of(params)
        prior, status = None, {"index": "none", "reason": "no previous dedup artifact: full pass"}
        if usable_previous(previous):
            prior, status = previous_from_artifact(previous["path"], settings)
        elif previous is not None:
            status = {"index": "unusable", "reason": f"previous artifact {previous['path']} missing or changed: full pass"}
        source = Path(rows["path"]) / "rows.parquet"
        presigned = (Presigned.concat([Presigned.read(s["path"], settings.width) for s in shards],
                                      settings.width) if shards and settings.near else None)
        result = dedup_batches(pq.read_table(source, columns=ID_COLUMNS),
                               iter_batches(source, TEXT_COLUMNS, BATCH_ROWS), settings, prior,
                               reread=lambda: iter_batches(source, TEXT_COLUMNS, BATCH_ROWS), presigned=presigned)
        with sealed_entry(out) as tmp:
            write_kept(source, result.keep, tmp / KEPT_FILE)
            write_parquet(result.removed, tmp / REMOVED_FILE)
            result.index.save(tmp / INDEX_DIR)
            write_lineage(tmp, project, rows["digest"], settings.digest(), previous)
            plot_cluster_sizes(result.cluster_sizes, tmp / "cluster_sizes.png")
            write_json({**result.stats, **status}, tmp / "stats.json")
    return remember(project, STAGE.name, out)


def write_kept(source: Path, keep: np.ndarray, path: Path) -> Path:
    """Copy the rows of `source` where `keep` is true to `path`, one record batch at a time, atomically."""
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, ROWS, compression="zstd") as writer:
            offset = 0
            for batch in iter_batches(source, batch_size=BATCH_ROWS):
                writer.write_batch(batch.filter(pa.array(keep[offset : offset + batch.num_rows])).cast(ROWS))
                offset += batch.num_rows
    return path


def with_previous(arguments: dict) -> dict:
    """The call's arguments plus the earlier dedup artifact to deduplicate against (`previous_dedup`)."""
    return {**arguments, "previous": previous_dedup(arguments["project"], arguments["rows"], arguments["params"])}


def step(run, arguments: dict) -> dict:
    """The dedup stage through executor `run`; with `run.shards` > 1 and near dedup on, its MinHash signatures
    computed shard by shard by `minhash_shard` (each cached on its own), looked up by `dedup`."""
    if run.shards == 1 or not declared(arguments["params"]).dedup.near.enabled or STAGE.is_stored(arguments):
        return run.call(dedup, **arguments)
    results = run.map(minhash_shard, {"shard": list(range(run.shards))}, project=arguments["project"],
                      rows=arguments["rows"], params=pick(arguments["params"], SHARD.spec.params),
                      previous=arguments["previous"], shards=run.shards)
    return run.call(dedup, **arguments, shards=results)
