"""Refusals before compute: a pool with no row, or a selection budget of no row per round.

`check_raw` is `curate run`'s pre-check on the raw files (no stage has run: record counts are upper
bounds of the pool, since ingest may quarantine records and dedup remove rows). `check_pool` runs in
the flow after ingest and again after the holdout stage, on the exact row counts, so an empty pool
or K < 1 stops the run before the base model is built, saying which files gave how many rows.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pyarrow.parquet as pq

from curate.artifacts import ref_json
from curate.errors import UsageError
from curate.ingest.formats import Source, count_records
from curate.selection.iterit import BudgetTooSmall, budget_problem

WHAT_TO_DO = ("put instruction records there (JSON/JSONL, Parquet or a datasets directory; held-out sets in its "
              "eval/ sub-directory), then run again")


class EmptyPool(UsageError, ValueError):
    """No row to curate: the raw files hold no record, or none is left after ingest, dedup or the holdout."""


def check_raw(raw: str, sources: Sequence[Source], ratio: float | None) -> None:
    """EmptyPool when the raw files hold no record; BudgetTooSmall when `ratio` (None: every row is trained,
    no budget) gives no row per round even if every record there became a pool row."""
    if not sources:
        raise EmptyPool(f"raw pool {raw} is empty: {WHAT_TO_DO}")
    need = math.ceil(1 / ratio) + 1 if ratio is not None and ratio <= 1 else 1  # records that surely give K >= 1
    counts: dict[str, int] = {}
    for source in sources:
        counts[source.name] = count_records(source, need - sum(counts.values()))
        if sum(counts.values()) >= need:
            return
    total = sum(counts.values())
    if not total:
        files = ", ".join(f"{name} (0 records)" for name in counts)
        raise EmptyPool(f"raw pool {raw} holds no record, every file is empty: {files}; {WHAT_TO_DO}")
    problem = budget_problem(total, ratio, f"the {total} records in {raw} (the pool has at most that many rows)")
    if problem:
        raise BudgetTooSmall(problem)


def _sources(ingest_stats: dict) -> str:
    """Per raw file: rows kept of records read, and quarantined; then the quarantine reasons."""
    files = "; ".join(f"{name}: {c['rows_ok']} rows of {c['rows_in']} records ({c['quarantined']} quarantined)"
                      for name, c in ingest_stats.get("by_source", {}).items())
    reasons = ", ".join(f"{n} {reason}" for reason, n in ingest_stats.get("by_reason", {}).items())
    return f"{files or 'no file'}{f'; quarantine reasons: {reasons}' if reasons else ''}"


def check_pool(raw: str, ingest_stats: dict, rows: dict[str, int], quarantine: str, ratio: float | None) -> None:
    """`rows`: stage -> rows it left, in pipeline order (ingest first, the pool selection sees last).
    EmptyPool naming the stage that left none, each raw file's counts and what to do; BudgetTooSmall
    when `ratio` (None: no budget) gives no row per round from the last stage's rows."""
    empty = next((stage for stage, n in rows.items() if n == 0), None)
    if empty is not None:
        left = ", ".join(f"{stage} {n}" for stage, n in rows.items())
        fixes = {"ingest": f"every record was quarantined: see each one's reason in {quarantine}, fix the records or "
                           f"{WHAT_TO_DO}",
                 "holdout": f"evaluation.holdout held out every row: put held-out files in raw.eval_dir, lower "
                            f"evaluation.holdout or add rows to {raw}"}
        raise EmptyPool(f"the pool is empty: no row is left after {empty} (rows left: {left}). Read from {raw}: "
                        f"{_sources(ingest_stats)}. To fix: {fixes.get(empty, f'add rows to {raw}')}")
    if ratio is not None:
        n = list(rows.values())[-1]
        problem = budget_problem(n, ratio, f"the pool of {n} rows (after {', '.join(rows)})")
        if problem:
            raise BudgetTooSmall(problem)


def check_pool_artifacts(raw: str, artifacts: dict[str, dict], ratio: float | None) -> None:
    """`check_pool` on stage artifacts: `artifacts` is stage -> its Ref (a `rows.parquet` inside), in pipeline
    order, ingest first (its stats and quarantine are read); the last is the pool the rounds select from."""
    rows = {stage: pq.ParquetFile(Path(ref["path"]) / "rows.parquet").metadata.num_rows for stage, ref in artifacts.items()}
    ingest = artifacts["ingest"]
    check_pool(raw, ref_json(ingest), rows, str(Path(ingest["path"]) / "quarantine.parquet"), ratio)
