"""Ingest: raw instruction data in any supported format -> normalised rows + quarantine (docs/architecture.md §3).

    from curate.ingest import ingest_path
    result = ingest_path(Path("data/raw"))  # result.rows (schema ROWS), result.quarantine, result.stats

Every source's format is detected before any record is read (an unsupported file raises
UnsupportedFormatError naming it). Bad records never stop the run: each goes to the quarantine with
its reason. Identical rows keep identical row ids; removing them is deduplication's job.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from curate.ingest.formats import EXPECTED_FORMATS, RawRecord, Source, UnsupportedFormatError, discover, read_records
from curate.ingest.normalize import RecordError, record_to_row, row_id
from curate.ingest.salvage import TooDeep
from curate.schema import QUARANTINE, ROWS

__all__ = ["EXPECTED_FORMATS", "IngestResult", "UnsupportedFormatError", "ingest_path", "row_id"]

STAGE = "ingest"
RAW_PREVIEW_CHARS = 500
_CHUNK = 8192


@dataclass
class IngestResult:
    rows: pa.Table  # schema curate.schema.ROWS
    quarantine: pa.Table  # schema curate.schema.QUARANTINE
    stats: dict[str, Any]


class _TableBuilder:
    """Collects dicts and turns them into Arrow tables chunk by chunk."""

    def __init__(self, schema: pa.Schema):
        self.schema, self.pending, self.tables = schema, [], []

    def add(self, row: dict) -> None:
        self.pending.append(row)
        if len(self.pending) >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.tables.append(pa.Table.from_pylist(self.pending, schema=self.schema))
            self.pending = []

    def table(self) -> pa.Table:
        self.flush()
        return pa.concat_tables(self.tables) if self.tables else self.schema.empty_table()


def _preview(raw: str) -> str:
    return raw[:RAW_PREVIEW_CHARS].encode("utf-8", "replace").decode("utf-8")


def ingest_path(raw: Path | str, max_bytes: int = 4_000_000) -> IngestResult:
    """Normalise every record under `raw` (a file or a directory, see curate.ingest.formats)."""
    sources = discover(Path(raw))  # raises before any output if a source is unsupported
    rows, quarantine = _TableBuilder(ROWS), _TableBuilder(QUARANTINE)
    by_reason: Counter[str] = Counter()
    by_source: dict[str, dict[str, int]] = {}
    for source in sources:
        counts = by_source.setdefault(source.name, {"rows_in": 0, "rows_ok": 0, "quarantined": 0})
        for record in read_records(source):
            counts["rows_in"] += 1
            outcome = _normalise(source, record, max_bytes)
            if "reason" in outcome:
                quarantine.add(outcome)
                counts["quarantined"] += 1
                by_reason[outcome["reason"].split(":", 1)[0]] += 1
            else:
                rows.add(outcome)
                counts["rows_ok"] += 1
    stats = {
        "rows_in": sum(c["rows_in"] for c in by_source.values()),
        "rows_ok": sum(c["rows_ok"] for c in by_source.values()),
        "quarantined": sum(c["quarantined"] for c in by_source.values()),
        "by_reason": dict(sorted(by_reason.items())),
        "by_source": by_source,
        "formats": {s.name: s.format for s in sources},
        "max_bytes": max_bytes,
    }
    return IngestResult(rows.table(), quarantine.table(), stats)


def _normalise(source: Source, record: RawRecord, max_bytes: int) -> dict:
    """A ROWS dict, or a QUARANTINE dict (it has a `reason`)."""
    where = {"source": source.name, "position": record.position}
    if record.error is not None:
        return {**where, "stage": STAGE, "reason": record.error, "row_id": None, "raw": _preview(record.raw)}
    try:
        fields = record_to_row(record.value, source.kind, max_bytes)  # type: ignore[arg-type]
    except RecordError as e:
        return {**where, "stage": STAGE, "reason": str(e), "row_id": e.row_id, "raw": _preview(record.raw)}
    except RecursionError:  # a value just under the parser's depth limit, too deep to describe in a reason
        return {**where, "stage": STAGE, "reason": f"too_deep: {TooDeep()}", "row_id": None, "raw": _preview(record.raw)}
    return {**where, **fields}
