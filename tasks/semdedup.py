"""Semantic dedup stage (SemDeDup-style, on the embed stage's vectors): k-means clusters, pairs with
cosine > 1 - epsilon inside a cluster are duplicates, one row kept per component. Off by default:
templated pools (like the demo) are semantically near-identical without being duplicates.

Incremental across runs, like the dedup stage (tasks/dedup.py, tasks/previous.py): `previous` is the earlier semdedup
artifact (chosen by `previous_semdedup`, part of the cache key). Rows it kept are never removed and
never compared with one another; rows it removed whose kept row is still in the pool are removed again
with the same record; every other row is new and compared with the kept rows and the other new rows.
Changed `dedup.semantic` parameters, or a previous artifact that cannot be read, mean a full pass, and
stats.json says which (`mode`, `reason`). The kept rows' embeddings are not stored again: the embed
stage's artifact holds tonight's vectors of every row, the old kept rows included.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.artifacts import read_json, ref_json, text_digest, write_json, write_parquet
from curate.config import declared
from curate.seal import sealed_entry
from curate.dedup.semantic import semantic_duplicates
from curate.schema import REMOVED
from tasks.caching import Stage
from tasks.previous import LINEAGE_FILE, previous_artifact, remember, usable_previous, write_lineage

STAGE = Stage("semdedup")
log = logging.getLogger("curate.dedup")


def _inputs_digest(rows: dict, embeddings: dict) -> str:
    return text_digest(rows["digest"], embeddings["digest"])


def _settings_digest(params: dict) -> str:
    return text_digest(params["dedup"]["semantic"])


def previous_semdedup(project: str, rows: dict, embeddings: dict, params: dict) -> dict | None:
    """The earlier semdedup artifact to deduplicate against; None when semantic dedup is off or there is none."""
    if not declared(params).dedup.semantic.enabled:
        return None
    return previous_artifact(project, STAGE.name, _inputs_digest(rows, embeddings), _settings_digest(params))


def _previous_decisions(previous: dict | None, params: dict) -> tuple[pa.Table | None, pa.Table | None, dict]:
    """(row ids kept before, REMOVED records of before) of a usable previous artifact, else (None, None),
    and the status for stats.json."""
    if previous is None:
        return None, None, {"mode": "full", "reason": "no previous semdedup artifact: full pass"}
    if not usable_previous(previous):
        return None, None, {"mode": "full", "reason": f"previous artifact {previous['path']} missing or changed: full pass"}
    directory = Path(previous["path"])
    try:
        lineage = read_json(directory / LINEAGE_FILE)
        kept = pq.read_table(directory / "rows.parquet", columns=["row_id"])
        removed = pq.read_table(directory / "removed.parquet", schema=REMOVED)
    except (OSError, ValueError, pa.ArrowException) as e:
        log.warning("semdedup: the previous artifact %s is unreadable (%s): full pass", directory, e)
        return None, None, {"mode": "full", "reason": f"previous artifact unreadable ({e}): full pass"}
    if lineage.get("settings") != _settings_digest(params):
        log.warning("semdedup: dedup.semantic parameters changed since the previous run: full pass")
        return None, None, {"mode": "full", "reason": "dedup.semantic parameters changed: full pass"}
    return kept["row_id"], removed, {"mode": "incremental", "reason": f"{kept.num_rows} rows kept before"}


def _carried_over(table: pa.Table, kept_ids: pa.ChunkedArray | None, removed_before: pa.Table | None):
    """Per pool row: kept before? removed before with its kept row still here (carried over)? And the
    carried rows' REMOVED records, with their current source and position."""
    n = table.num_rows
    if kept_ids is None:
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), REMOVED.empty_table()
    ids = table["row_id"].combine_chunks()
    kept_before = pc.is_in(ids, value_set=kept_ids.combine_chunks()).to_numpy(zero_copy_only=False)
    record = pc.fill_null(pc.index_in(ids, value_set=removed_before["row_id"].combine_chunks()), -1).to_numpy()
    candidates = np.flatnonzero((record >= 0) & ~kept_before)
    records = removed_before.take(pa.array(record[candidates], pa.int64()))
    still_kept = pc.is_in(records["duplicate_of"], value_set=ids.filter(pa.array(kept_before)))
    carried = np.zeros(n, dtype=bool)
    carried[candidates[still_kept.to_numpy(zero_copy_only=False)]] = True
    records = records.filter(still_kept)
    records = records.set_column(1, "source", table["source"].filter(pa.array(carried)))
    return kept_before, carried, records.set_column(2, "position", table["position"].filter(pa.array(carried)))


@STAGE.task()
def semdedup(project: str, rows: dict, embeddings: dict, params: dict, previous: dict | None = None) -> dict:
    out = STAGE.out(project, locals())
    if not out.exists():
        p = declared(params).dedup.semantic
        table = pq.read_table(Path(rows["path"]) / "rows.parquet")
        removed = REMOVED.empty_table()
        status: dict = {}
        if p.enabled and table.num_rows:
            emb = pq.read_table(Path(embeddings["path"]) / "embeddings.parquet")
            assert emb["row_id"].to_pylist() == table["row_id"].to_pylist(), "embeddings are not aligned with rows"
            vectors = np.stack(emb["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
            lengths = pc.utf8_length(table["response"]).to_numpy(zero_copy_only=False)
            kept_ids, removed_before, status = _previous_decisions(previous, params)
            ids = table["row_id"].combine_chunks()
            n = table.num_rows
            kept_before, carried, carried_records = _carried_over(table, kept_ids, removed_before)
            examined = np.flatnonzero(~carried)
            res = semantic_duplicates(vectors[examined], epsilon=p.epsilon, keep=p.keep, lengths=lengths[examined],
                                      seed=p.seed, probes=p.probes, kept_before=kept_before[examined])
            local = np.arange(len(examined))
            drop = local[res.kept_index != local]
            new_removed = pa.table({
                "row_id": ids.take(pa.array(examined[drop], pa.int64())),
                "source": table["source"].take(pa.array(examined[drop], pa.int64())),
                "position": table["position"].take(pa.array(examined[drop], pa.int64())),
                "reason": pa.array(["semantic"] * len(drop), pa.string()),
                "duplicate_of": ids.take(pa.array(examined[res.kept_index[drop]], pa.int64())),
                "similarity": pa.array(res.similarity[drop].astype(np.float64), pa.float64()),
            }, schema=REMOVED)
            rows_removed = np.r_[examined[drop], np.flatnonzero(carried)]
            order = np.argsort(rows_removed, kind="stable")
            removed = pa.concat_tables([new_removed, carried_records.cast(REMOVED)]).take(pa.array(order, pa.int64()))
            keep = np.ones(n, dtype=bool)
            keep[rows_removed] = False
            table = table.filter(pa.array(keep))
            status |= {"kept_before": int(kept_before.sum()), "carried_removed": int(carried.sum()),
                       "new_rows": int((~kept_before & ~carried).sum())}
        upstream = ref_json(rows)
        with sealed_entry(out) as tmp:
            write_parquet(table, tmp / "rows.parquet")
            write_parquet(removed, tmp / "removed.parquet")
            write_json({"enabled": p.enabled, "rows_in": upstream["kept"], "kept": table.num_rows,
                        "removed_semantic": removed.num_rows, **status}, tmp / "stats.json")
            write_lineage(tmp, project, _inputs_digest(rows, embeddings), _settings_digest(params), previous)
    return remember(project, STAGE.name, out)


def with_previous(arguments: dict) -> dict:
    """The call's arguments plus the earlier semdedup artifact to deduplicate against (`previous_semdedup`)."""
    previous = previous_semdedup(arguments["project"], arguments["rows"], arguments["embeddings"], arguments["params"])
    return {**arguments, "previous": previous}
