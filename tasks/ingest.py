"""Ingest stage: raw pool (any supported format) -> normalised rows + quarantine."""
from __future__ import annotations

from pathlib import Path

from curate.artifacts import write_json, write_parquet
from curate.config import declared
from curate.seal import sealed_entry
from curate.ingest import ingest_path
from curate.pool_checks import check_pool_artifacts
from tasks.caching import Stage

STAGE = Stage("ingest")


@STAGE.task()
def ingest(project: str, raw: dict, params: dict) -> dict:
    out = STAGE.out(project, locals())
    if not out.exists():
        result = ingest_path(Path(raw["path"]), max_bytes=declared(params).ingest.max_bytes)
        with sealed_entry(out) as tmp:
            write_parquet(result.rows, tmp / "rows.parquet")
            write_parquet(result.quarantine, tmp / "quarantine.parquet")
            write_json(result.stats, tmp / "stats.json")
    return STAGE.ref(out)


def check(p, value) -> list[str]:
    """Stop when ingest left no row (curate/pool_checks.py)."""
    check_pool_artifacts(p.raw.dir, {"ingest": value("ingest")}, None)
    return []
