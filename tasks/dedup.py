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
of the cache key. `previous_artifact` picks it for the flow (here and for the semdedup stage): the
published artifact, named by its immutable store entry (found through
`.curate/<stage>-artifacts/<digest>.json`, which the stage writes beside the store, so an artifact
never names its own location); and when the published artifact was itself computed from these very
inputs with these settings, the artifact *it* was computed against, so a re-run has the same cache
key and is a cache hit.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.artifacts import Ref, atomic_path, digest, iter_batches, read_json, write_json, write_parquet
from curate.dedup import DedupSettings, dedup_batches
from curate.dedup.incremental import (ID_COLUMNS, INDEX_DIR, KEPT_FILE, REMOVED_FILE, TEXT_COLUMNS,
                                      previous_from_artifact)
from curate.dedup.report import plot_cluster_sizes
from curate.env import state_dir
from curate.schema import ROWS
from tasks.caching import Stage
from tasks.publish import LAYOUT

STAGE = Stage("dedup")
BATCH_ROWS = 65_536
LINEAGE_FILE = "lineage.json"
log = logging.getLogger("curate.dedup")


def settings_of(params: dict) -> DedupSettings:
    """DedupSettings from the params slice {"dedup": {...}}."""
    exact, near = params["dedup"]["exact"], params["dedup"]["near"]
    return DedupSettings(exact=exact["enabled"], casefold=exact["casefold"], keep=exact["keep"], near=near["enabled"],
                         num_perm=near["num_perm"], ngram=near["ngram"], threshold=near["threshold"], seed=near["seed"],
                         verify=near["verify"])


def previous_dedup(project: str, rows: dict, params: dict) -> dict | None:
    """The earlier dedup artifact to deduplicate `rows` against, None when there is none."""
    return previous_artifact(project, STAGE.name, rows["digest"], settings_of(params).digest())


def previous_artifact(project: str, stage: str, inputs_digest: str, settings_digest: str) -> dict | None:
    """The published artifact of `stage` as the `previous` input of tonight's run (see the module
    docstring), None when there is none."""
    published = Path(project) / LAYOUT[stage]
    if not published.is_dir():
        return None
    try:
        lineage = read_json(published / LINEAGE_FILE)
    except (OSError, ValueError):  # no lineage: the stage checks what it finds and says so
        lineage = {}
    if lineage.get("inputs") == inputs_digest and lineage.get("settings") == settings_digest:
        before = lineage.get("previous")  # a re-run on the same inputs: the same inputs as the run that published it
        return before and _located(project, stage, Path(project) / before["path"], before["digest"])
    return _located(project, stage, published, digest(published))


def write_lineage(directory: Path, project: str, inputs_digest: str, settings_digest: str, previous: dict | None) -> None:
    """lineage.json: what an artifact was computed from; the previous artifact's path is relative to the
    project, so the artifact's bytes do not depend on where the project lives."""
    if previous is not None:
        resolved, root = Path(previous["path"]).resolve(), Path(project).resolve()
        path = resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(resolved)
        previous = {"path": path, "digest": previous["digest"]}
    write_json({"inputs": inputs_digest, "settings": settings_digest, "previous": previous}, directory / LINEAGE_FILE)


def remember(project: str, stage: str, out: Path) -> dict:
    """The Ref of a finished store entry, recorded under its digest for `previous_artifact`."""
    ref = Ref.of(out)
    if not _pointer(project, stage, ref.digest).is_file():
        write_json({"path": ref.path}, _pointer(project, stage, ref.digest))
    return ref.to_dict()


def usable_previous(previous: dict | None) -> bool:
    """Whether the chosen previous artifact is still there with the bytes its digest names (logged if not)."""
    if previous is None:
        return False
    if Path(previous["path"]).is_dir() and digest(previous["path"]) == previous["digest"]:
        return True
    log.warning("the previous artifact %s is missing or changed since it was chosen: full pass", previous["path"])
    return False


def _located(project: str, stage: str, fallback: Path, artifact_digest: str) -> dict:
    """A Ref to the artifact of `stage` with this digest: its immutable store entry when known, else `fallback`."""
    pointer = _pointer(project, stage, artifact_digest)
    stored = Path(read_json(pointer)["path"]) if pointer.is_file() else None
    return {"path": str(stored if stored is not None and stored.is_dir() else fallback), "digest": artifact_digest}


def _pointer(project: str, stage: str, artifact_digest: str) -> Path:
    return state_dir(Path(project)) / f"{stage}-artifacts" / f"{artifact_digest}.json"


@STAGE.task()
def dedup(project: str, rows: dict, params: dict, previous: dict | None = None) -> dict:
    out = STAGE.out(project, locals())
    if not out.exists():
        settings = settings_of(params)
        prior, status = None, {"index": "none", "reason": "no previous dedup artifact: full pass"}
        if usable_previous(previous):
            prior, status = previous_from_artifact(previous["path"], settings)
        elif previous is not None:
            status = {"index": "unusable", "reason": f"previous artifact {previous['path']} missing or changed: full pass"}
        source = Path(rows["path"]) / "rows.parquet"
        result = dedup_batches(pq.read_table(source, columns=ID_COLUMNS),
                               iter_batches(source, TEXT_COLUMNS, BATCH_ROWS), settings, prior,
                               reread=lambda: iter_batches(source, TEXT_COLUMNS, BATCH_ROWS))
        with atomic_path(out) as tmp:
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
