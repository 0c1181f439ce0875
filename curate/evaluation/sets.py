"""The held-out sets: where they come from (files in raw.eval_dir, or the holdout stage's split),
which rows are evaluated and which are the online policies' anchors (never evaluated)."""
from __future__ import annotations

from pathlib import Path, PurePosixPath

import pyarrow.parquet as pq

from curate.artifacts import read_json
from curate.evaluation.split import KIND as HOLDOUT_KIND
from curate.ingest import ingest_path
from curate.ingest.formats import discover


def has_heldout_files(eval_dir: Path) -> bool:
    """Does raw.eval_dir hold any held-out file? (Without one, the holdout stage splits the pool.)"""
    return eval_dir.is_dir() and bool(discover(eval_dir))


def set_names(files: list[str]) -> dict[str, str]:
    """The held-out set of each file (its path under raw.eval_dir): the path without its extension
    (`sub/qa.jsonl` -> `sub/qa`, so files of the same name in two directories stay two sets), or with it
    when another file differs only in its extension (`qa.json` and `qa.jsonl`)."""
    stems = {f: PurePosixPath(f).with_suffix("").as_posix() if PurePosixPath(f).suffix else f for f in files}
    repeated = {stem for stem in stems.values() if list(stems.values()).count(stem) > 1}
    return {f: f if stem in repeated else stem for f, stem in stems.items()}


def read_heldout(eval_dir: Path) -> dict[str, list[dict]]:
    """Every held-out set of the eval directory (one per file, see `set_names`), in file order; for the
    held-out part of a holdout stage artifact, its rows as the one set `holdout`, in pool order."""
    stats = eval_dir / "stats.json"
    if stats.is_file() and read_json(stats).get("kind") == HOLDOUT_KIND:
        return {"holdout": pq.read_table(eval_dir / "rows.parquet").to_pylist()}
    rows = ingest_path(eval_dir).rows.to_pylist()
    names = set_names(list(dict.fromkeys(r["source"] for r in rows)))
    sets: dict[str, list[dict]] = {}
    for r in rows:
        sets.setdefault(names[r["source"]], []).append(r)
    return sets


def heldout_sets(eval_dir: Path, max_rows: int, anchor_rows: int = 0) -> dict[str, list[dict]]:
    """The evaluated rows: per set, the first `max_rows` of those that are not anchors (the last `anchor_rows`)."""
    return {name: rows[: max(len(rows) - anchor_rows, 0)][:max_rows] for name, rows in read_heldout(eval_dir).items()}


def anchor_set(eval_dir: Path, per_set: int) -> list[dict]:
    """The online policies' anchor/target rows: the last `per_set` rows of every held-out set (never evaluated)."""
    return [r for rows in read_heldout(eval_dir).values() for r in rows[len(rows) - min(per_set, len(rows)):]] if per_set else []
