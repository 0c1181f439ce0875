"""MinHash signatures computed ahead, shard by shard: the costliest part of near-duplicate detection,
split over processes or workers (docs/execution.md).

A signature depends only on its row's dedup text and the dedup settings (`minhash.py` hashes bytes,
never Python's salted `hash`), so a signature computed in a shard is the one dedup would compute
itself. The new rows of the pool (`incremental.split_pool`, the rows dedup will examine) are split
into `shards` contiguous groups of equal count (`shard_rows`); a shard normalises and hashes the
texts of its group and signs the distinct ones (`sign_rows`). Dedup takes each row's digest from the
shards instead of normalising it again (`Presigned.row_digests_of`; a batch of rows not all covered
is normalised here), looks each new text's signature up by its digest (`Presigned.lookup`) and
signs only what no shard signed, so its result does not depend on the number of shards, nor on
whether a shard's view of the previous run matched its own.
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
ROW_DIGESTS_FILE, SIGNATURES_FILE = "row_digests.parquet", "signatures.parquet"


@dataclass
class Presigned:
    """What shards computed ahead: the text digest of each of their rows, and a signature per distinct text."""

    rows: np.ndarray  # int64, pool rows, ascending
    row_digests: pa.Array  # fixed_size_binary[16], the dedup text digest of each of `rows`
    digests: pa.Array  # fixed_size_binary[16], distinct
    signatures: np.ndarray  # uint32, (len(digests), num_perm)
    _signature_of: dict[bytes, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._signature_of = dict(zip(self.digests.to_pylist(), range(len(self.digests))))

    def __len__(self) -> int:
        return len(self.digests)

    def lookup(self, digests: list[bytes]) -> np.ndarray:
        """The row of each digest's signature in `signatures`, -1 where none was computed."""
        return np.array([self._signature_of.get(d, -1) for d in digests], dtype=np.int64)

    def row_digests_of(self, rows: np.ndarray) -> list[bytes] | None:
        """The text digests of pool `rows`, None unless the shards covered every one of them."""
        at = np.minimum(np.searchsorted(self.rows, rows), max(len(self.rows) - 1, 0))
        if not len(self.rows) or not np.array_equal(self.rows[at], rows):
            return None
        return self.row_digests.take(pa.array(at, pa.int64())).to_pylist()

    @classmethod
    def concat(cls, parts: list["Presigned"], width: int) -> "Presigned":
        """The union of `parts` (of disjoint rows; a text in several keeps its first signature: they are equal)."""
        if not parts:
            empty = pa.array([], DIGEST_TYPE)
            return cls(np.empty(0, np.int64), empty, empty, np.empty((0, width), np.uint32))
        rows = np.concatenate([p.rows for p in parts])
        order = np.argsort(rows, kind="stable")
        return cls(rows[order], pa.concat_arrays([p.row_digests for p in parts]).take(pa.array(order, pa.int64())),
                   pa.concat_arrays([p.digests for p in parts]), np.concatenate([p.signatures for p in parts]))

    def write(self, directory: Path | str) -> None:
        """`row_digests.parquet` (row, text_digest) and `signatures.parquet` (text_digest, signature) in `directory`."""
        directory = Path(directory)
        write_parquet(pa.table({"row": pa.array(self.rows, pa.int64()), "text_digest": self.row_digests}),
                      directory / ROW_DIGESTS_FILE)
        values = pa.array(np.ascontiguousarray(self.signatures).ravel(), pa.uint32())
        write_parquet(pa.table({"text_digest": self.digests,
                                "signature": pa.FixedSizeListArray.from_arrays(values, self.signatures.shape[1])}),
                      directory / SIGNATURES_FILE)

    @classmethod
    def read(cls, directory: Path | str, width: int) -> "Presigned":
        """What `write` wrote; ValueError when the signatures are not `width` wide (other settings)."""
        directory = Path(directory)
        table = pq.read_table(directory / SIGNATURES_FILE)
        size = table.schema.field("signature").type.list_size
        if size != width:
            raise ValueError(f"{directory}: signatures of {size} values, the dedup settings make {width}")
        rows = pq.read_table(directory / ROW_DIGESTS_FILE)
        return cls(rows["row"].to_numpy(), rows["text_digest"].combine_chunks(), table["text_digest"].combine_chunks(),
                   table["signature"].combine_chunks().flatten().to_numpy().reshape(table.num_rows, width))


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
    """The text digests of `rows` (ascending pool rows) of the pool file `path` and the signatures of their
    distinct texts, reading only the row groups between the first and the last of them."""
    row_digests: list[bytes] = []
    digests: list[bytes] = []
    parts = []
    seen: set[bytes] = set()
    hasher = settings.hasher()
    if len(rows):
        for first, batch in iter_row_range(path, int(rows[0]), int(rows[-1]) + 1, TEXT_COLUMNS, batch_rows):
            lo, hi = np.searchsorted(rows, [first, first + batch.num_rows])  # rows ascend: no scan per batch
            local = rows[lo:hi] - first
            texts = dedup_texts(batch.take(pa.array(local)), casefold=settings.casefold)
            batch_digests = text_digests(texts)
            row_digests += batch_digests
            fresh = []
            for text, digest in zip(texts, batch_digests):
                if digest not in seen:
                    seen.add(digest)
                    digests.append(digest)
                    fresh.append(text)
            if fresh:
                parts.append(hasher.signatures(fresh))
    signatures = np.concatenate(parts) if parts else np.empty((0, settings.width), np.uint32)
    return Presigned(np.asarray(rows, dtype=np.int64), pa.array(row_digests, DIGEST_TYPE),
                     pa.array(digests, DIGEST_TYPE), signatures)
