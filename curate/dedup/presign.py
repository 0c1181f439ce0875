"""MinHash signatures computed ahead, shard by shard: the costliest part of near-duplicate detection,
split over processes or workers (README: Execution).

A signature depends only on its row's dedup text and the dedup settings (`minhash.py` hashes bytes,
never Python's salted `hash`), so a signature computed in a shard is the one dedup would compute
itself. The new rows of the pool (`incremental.split_pool`, the rows dedup will examine) are split
into `shards` contiguous groups of equal count (`shard_rows`); a shard signs the distinct dedup
texts of its group (`sign_rows`). Dedup looks each new text's signature up by its digest
(`Presigned.lookup`) and signs only what no shard signed, so its result does not depend on the
number of shards, nor on whether a shard's view of the previous run matched its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.artifacts import iter_row_range, write_parquet
from curate.dedup.exact import text_digests
from curate.dedup.incremental import TEXT_COLUMNS, Previous, split_pool
from curate.dedup.index import DIGEST_TYPE, DedupSettings
from curate.dedup.normalize import dedup_texts

BATCH_ROWS = 65_536


@dataclass
class Presigned:
    """Signatures by the digest of their dedup text."""

    digests: pa.Array  # fixed_size_binary[16], distinct
    signatures: np.ndarray  # uint32, (len(digests), num_perm)
    _row: dict[bytes, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._row = dict(zip(self.digests.to_pylist(), range(len(self.digests))))

    def __len__(self) -> int:
        return len(self.digests)

    def lookup(self, digests: list[bytes]) -> np.ndarray:
        """The row of each digest's signature in `signatures`, -1 where none was computed."""
        return np.array([self._row.get(d, -1) for d in digests], dtype=np.int64)

    @classmethod
    def concat(cls, parts: list["Presigned"], width: int) -> "Presigned":
        """The union of `parts` (a digest in several keeps its first signature: they are equal)."""
        digests = pa.concat_arrays([p.digests for p in parts]) if parts else pa.array([], DIGEST_TYPE)
        signatures = np.concatenate([p.signatures for p in parts]) if parts else np.empty((0, width), np.uint32)
        return cls(digests, signatures)

    def write(self, path: Path | str) -> Path:
        width = self.signatures.shape[1]
        values = pa.array(np.ascontiguousarray(self.signatures).ravel(), pa.uint32())
        return write_parquet(pa.table({"text_digest": self.digests,
                                       "signature": pa.FixedSizeListArray.from_arrays(values, width)}), path)

    @classmethod
    def read(cls, path: Path | str, width: int) -> "Presigned":
        """The signatures written by `write`; ValueError when they are not `width` wide (other settings)."""
        table = pq.read_table(path)
        if table.schema.field("signature").type.list_size != width:
            raise ValueError(f"{path}: signatures of {table.schema.field('signature').type.list_size} values, "
                             f"the dedup settings make {width}")
        n = table.num_rows
        return cls(table["text_digest"].combine_chunks(),
                   table["signature"].combine_chunks().flatten().to_numpy().reshape(n, width))


def new_rows(ids: pa.Table, previous: Previous | None) -> np.ndarray:
    """Bool per pool row (ids: row_id, source, position): examined by dedup, so to be signed.
    `previous` may hold an ids-only index (`incremental.previous_from_artifact(fingerprints=False)`)."""
    if previous is None:
        return np.ones(ids.num_rows, dtype=bool)
    return split_pool(ids["row_id"].combine_chunks(), ids["source"].combine_chunks(),
                      ids["position"].to_numpy().astype(np.int64), previous).new


def shard_rows(new: np.ndarray, shard: int, shards: int) -> np.ndarray:
    """Shard `shard`'s rows: the `shard`-th of `shards` contiguous groups of equal count of the new rows."""
    return np.array_split(np.flatnonzero(new), shards)[shard]


def sign_rows(path: Path | str, rows: np.ndarray, settings: DedupSettings,
              batch_rows: int = BATCH_ROWS) -> Presigned:
    """The signatures of the distinct dedup texts of `rows` (ascending pool rows) of the pool file `path`,
    reading only the row groups between the first and the last of them."""
    digests: list[bytes] = []
    parts = []
    seen: set[bytes] = set()
    hasher = settings.hasher()
    if len(rows):
        for first, batch in iter_row_range(path, int(rows[0]), int(rows[-1]) + 1, TEXT_COLUMNS, batch_rows):
            local = rows[(rows >= first) & (rows < first + batch.num_rows)] - first
            texts = dedup_texts(batch.take(pa.array(local)), casefold=settings.casefold)
            fresh = []
            for text, digest in zip(texts, text_digests(texts)):
                if digest not in seen:
                    seen.add(digest)
                    digests.append(digest)
                    fresh.append(text)
            if fresh:
                parts.append(hasher.signatures(fresh))
    signatures = np.concatenate(parts) if parts else np.empty((0, settings.width), np.uint32)
    return Presigned(pa.array(digests, DIGEST_TYPE), signatures)

