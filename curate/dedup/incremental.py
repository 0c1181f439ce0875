"""Incremental deduplication across nights: which rows of tonight's pool are new.

Rows carry a content-derived `row_id` (`curate.ingest.normalize.row_id`), so the same row arriving
again has the same id. Given the index of the rows kept before (`index.py`) and the rows removed
before (their `removed.parquet`), every pool row is one of:

- **old kept**: the occurrence of an indexed row_id that stays kept, never re-examined. It is the
  occurrence at the indexed (source, position) when that is still in the pool, else the first
  occurrence in pool order (a file was edited or renamed); the index entry moves to it.
- **copy of a kept row**: another occurrence of an indexed row_id (the same content: row ids are
  content digests): removed as an exact duplicate of the kept occurrence, not examined.
- **carried removal**: a row removed before (its row_id is in the previous removal report) whose
  kept row is still in the pool: removed again with the same reason, `duplicate_of` and similarity.
- **new**: everything else, including rows removed before whose kept row left the pool. Only these
  are hashed, signed and queried.

Index entries whose row left the pool are dropped: a later copy of such a row is new and can be kept.

`previous_from_artifact` reads what an earlier run left in its dedup artifact directory
(`rows.parquet` = kept rows, `removed.parquet`, `index/`) and says how it went:

- the index loads: incremental;
- the dedup settings changed (`ParamsChanged`): a full pass (the old keepers were chosen by other rules);
- the index is missing or broken (`IndexProblem`: no manifest, checksum or shape mismatch, unreadable
  Parquet): a warning, and the index is rebuilt from the kept rows (they are signed again, not
  re-examined), then incremental; if the kept rows cannot be read either, a full pass.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.artifacts import iter_batches
from curate.dedup.index import DedupIndex, DedupSettings, IndexProblem, ParamsChanged
from curate.schema import REMOVED

KEPT_FILE, REMOVED_FILE, INDEX_DIR = "rows.parquet", "removed.parquet", "index"
ID_COLUMNS = ["row_id", "source", "position"]
TEXT_COLUMNS = ["context", "instruction", "input", "response"]
log = logging.getLogger("curate.dedup")


@dataclass
class Previous:
    """What an earlier run left: the index of its kept rows and its removal report (REMOVED)."""

    index: DedupIndex
    removed: pa.Table


@dataclass
class PoolSplit:
    index: DedupIndex  # previous keepers still in the pool, in index order, at their current occurrence
    old_rows: np.ndarray  # pool row of each entry of `index`
    copy_rows: np.ndarray  # pool rows repeating the row_id of an old kept row, ascending
    copy_of: np.ndarray  # pool row of the old kept occurrence each copy repeats
    carried_rows: np.ndarray  # pool rows whose earlier removal carries over, ascending
    carried: pa.Table  # REMOVED records of `carried_rows` (source and position of the current occurrence)
    new: np.ndarray  # bool per pool row: to be examined tonight


def split_pool(row_ids: pa.Array, sources: pa.Array, positions: np.ndarray, previous: Previous) -> PoolSplit:
    """Split the pool rows (ids in pool order) into old kept, carried removals and new; see the module docstring."""
    n = len(row_ids)
    rows = np.arange(n)
    index = previous.index
    slot = pc.fill_null(pc.index_in(row_ids, value_set=index.row_ids), -1).to_numpy()
    candidates = rows[slot >= 0]
    at_home = (
        pc.equal(sources.take(pa.array(candidates)), index.sources.take(pa.array(slot[candidates]))).to_numpy(zero_copy_only=False)
        & (positions[candidates] == index.positions[slot[candidates]])
    )
    order = np.lexsort((candidates, ~at_home, slot[candidates]))  # per slot: at home first, then pool order
    ordered = candidates[order]
    first = np.r_[True, slot[ordered[1:]] != slot[ordered[:-1]]] if len(ordered) else np.empty(0, bool)
    old_rows = ordered[first]  # one per present slot, slots ascending
    copy_rows = np.sort(ordered[~first])
    row_of_slot = np.full(len(index), -1)
    row_of_slot[slot[old_rows]] = old_rows
    kept_index = replace(index.take(slot[old_rows]), sources=sources.take(pa.array(old_rows, pa.int64())),
                         positions=positions[old_rows].astype(np.int64))

    removed_before = pc.fill_null(pc.index_in(row_ids, value_set=previous.removed["row_id"].combine_chunks()), -1)
    removed_before = np.where(slot >= 0, -1, removed_before.to_numpy())  # a repeated kept row_id is a copy
    maybe = rows[removed_before >= 0]
    records = previous.removed.select(REMOVED.names).take(pa.array(removed_before[maybe], pa.int64()))
    still_kept = pc.is_in(records["duplicate_of"], value_set=kept_index.row_ids).to_numpy(zero_copy_only=False)
    carried_rows = maybe[still_kept]
    records = records.filter(pa.array(still_kept))
    carried = records.set_column(1, "source", sources.take(pa.array(carried_rows, pa.int64())))
    carried = carried.set_column(2, "position", pa.array(positions[carried_rows], pa.int64()))

    new = np.ones(n, dtype=bool)
    new[old_rows] = False
    new[copy_rows] = False
    new[carried_rows] = False
    return PoolSplit(kept_index, old_rows, copy_rows, row_of_slot[slot[copy_rows]], carried_rows, carried.cast(REMOVED), new)


def previous_from_artifact(directory: Path | str, settings: DedupSettings,
                           fingerprints: bool = True) -> tuple[Previous | None, dict]:
    """What an earlier dedup artifact left, or None for a full pass, and a status for stats.json:
    `index` (loaded | rebuilt | stale | unusable) and `reason`; see the module docstring.
    `fingerprints=False`: the index's ids only (`DedupIndex.ids_only`; a rebuild signs nothing), enough
    for `split_pool` to tell the new rows, by the same decisions."""
    directory = Path(directory)
    try:
        index = DedupIndex.load(directory / INDEX_DIR, settings, ids_only=not fingerprints)
        status = {"index": "loaded", "reason": f"{len(index)} rows kept before"}
    except ParamsChanged as e:
        log.warning("dedup: %s: full pass", e)
        return None, {"index": "stale", "reason": f"{e}: full pass"}
    except IndexProblem as problem:
        try:
            kept = directory / KEPT_FILE
            ids = pq.read_table(kept, columns=ID_COLUMNS)
            index = (DedupIndex.build(ids, iter_batches(kept, TEXT_COLUMNS), settings) if fingerprints
                     else DedupIndex.ids_only(settings, ids))
        except (OSError, pa.ArrowException, ValueError) as e:
            log.warning("dedup: the previous index is unusable (%s) and the kept rows unreadable (%s): full pass", problem, e)
            return None, {"index": "unusable", "reason": f"index: {problem}; kept rows: {e}: full pass"}
        log.warning("dedup: the previous index is unusable (%s): rebuilt from the %d rows kept before", problem, len(index))
        status = {"index": "rebuilt", "reason": f"index: {problem}: rebuilt from the {len(index)} rows kept before"}
    try:
        removed = pq.read_table(directory / REMOVED_FILE, schema=REMOVED)
    except (OSError, pa.ArrowException) as e:
        log.warning("dedup: the previous removal report is unreadable (%s): its rows are examined again", e)
        removed = REMOVED.empty_table()
        status["reason"] += f"; removal report unreadable ({e}): its rows are examined again"
    return Previous(index, removed), status
