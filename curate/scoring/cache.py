"""Row-level score cache (docs/architecture.md §4): scores keyed by (scorer checkpoint digest, scoring parameters,
row_id), so a nightly run on a pool with 5% new rows scores only those rows.

One Parquet file per (scorer, parameters) under the cache directory; additions rewrite it atomically.
Rows scored in another night keep the contrast partner they had then (a random other row either way).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from curate.artifacts import text_digest, write_parquet

COLUMNS = ("row_id", "loss_cond", "loss_prior", "ifd", "n_response_tokens", "loss_swapped", "truncated")


class RowScoreCache:
    def __init__(self, root: Path | str, scorer_digest: str, params: dict):
        self.path = Path(root) / f"{scorer_digest[:20]}-{text_digest(params)[:12]}.parquet"

    def lookup(self, row_ids: Iterable[str]) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        wanted = set(row_ids)
        table = pq.read_table(self.path)
        return {r["row_id"]: r for r in table.to_pylist() if r["row_id"] in wanted}

    def add(self, records: list[dict]) -> None:
        if not records:
            return
        new = pa.Table.from_pylist([{c: r[c] for c in COLUMNS} for r in records])
        if self.path.exists():
            old = pq.read_table(self.path)
            seen = set(new["row_id"].to_pylist())
            old = old.filter(pa.array([r not in seen for r in old["row_id"].to_pylist()]))
            new = pa.concat_tables([old, new.cast(old.schema)])
        write_parquet(new, self.path)
