"""The held-out sets: where they come from (files in raw.eval_dir, or the holdout stage's split),
which rows are evaluated and which are the online policies' anchors (never evaluated)."""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from curate.artifacts import read_json
from curate.evaluation.split import KIND as HOLDOUT_KIND
from curate.ingest import ingest_path
from curate.ingest.formats import discover


def has_heldout_files(eval_dir: Path) -> bool:
    """Does raw.eval_dir hold any held-out file? (Without one, the holdout stage splits the pool.)"""
    return eval_dir.is_dir() and bool(discover(eval_dir))


def read_heldout(eval_dir: Path) -> dict[str, list[dict]]:
    """Every held-out set of the eval directory (one per file, named by the file's stem), in file order;
    for the held-out part of a holdout stage artifact, its rows as the one set `holdout`, in pool order."""
    stats = eval_dir / "stats.json"
    if stats.is_file() and read_json(stats).get("kind") == HOLDOUT_KIND:
        return {"holdout": pq.read_table(eval_dir / "rows.parquet").to_pylist()}
    sets: dict[str, list[dict]] = {}
    for r in ingest_path(eval_dir).rows.to_pylist():
        sets.setdefault(Path(r["source"]).name.split(".")[0], []).append(r)
    return sets


def heldout_sets(eval_dir: Path, max_rows: int, anchor_rows: int = 0) -> dict[str, list[dict]]:
    """The evaluated rows: per set, the first `max_rows` of those that are not anchors (the last `anchor_rows`)."""
    return {name: rows[: max(len(rows) - anchor_rows, 0)][:max_rows] for name, rows in read_heldout(eval_dir).items()}


def anchor_set(eval_dir: Path, per_set: int) -> list[dict]:
    """The online policies' anchor/target rows: the last `per_set` rows of every held-out set (never evaluated)."""
    return [r for rows in read_heldout(eval_dir).values() for r in rows[len(rows) - min(per_set, len(rows)):]] if per_set else []
