"""The persistent dedup index: what incremental deduplication compares a night's new rows against.

One entry per kept row of the pool: its `row_id`, the `source` and `position` of the kept occurrence,
the 16-byte digest of its dedup text (`exact.text_digest`, for exact matches) and, when
near-duplicate detection is on, its MinHash signature and LSH band keys (`minhash.py`, `lsh.py`).
Entries are in the order rows were first kept (night 1's keepers first), which is how an old kept row
is chosen when a new row joins several of them.

On disk, a directory (the dedup artifact's `index/`):

    signatures.parquet   row_id, source, position, text_digest (fixed_size_binary[16]),
                         signature (fixed_size_list<uint32>[num_perm]) and
                         band_keys (fixed_size_list<uint64>[bands]) when near dedup is on
    manifest.json        format, the dedup settings and their digest, rows, num_perm, bands,
                         rows_per_band, sha256 of signatures.parquet

`DedupIndex.load` raises `ParamsChanged` when the index was built with other settings (its entries
were kept under other rules: the caller makes a full pass) and `IndexProblem`, naming what is wrong,
when the manifest or the Parquet file is missing, unreadable, fails its checksum or has the wrong
shape (the caller rebuilds the index from the kept rows). A broken index is never used.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.artifacts import atomic_path, file_digest, text_digest, write_json, write_parquet
from curate.dedup.exact import KeepPolicy, text_digests
from curate.dedup.lsh import LSHIndex
from curate.dedup.minhash import MinHasher
from curate.dedup.normalize import dedup_texts

FORMAT = 1
SIGNATURES_FILE, MANIFEST_FILE = "signatures.parquet", "manifest.json"
DIGEST_TYPE = pa.binary(16)
VerifyMode = Literal["exact", "signature"]


class IndexProblem(Exception):
    """The persistent index cannot be used; the message says why."""


class ParamsChanged(Exception):
    """The persistent index was built with other dedup settings; the message lists the changes."""


@dataclass(frozen=True)
class DedupSettings:
    """The parameters that decide which rows dedup keeps (the `dedup.exact` and `dedup.near` params)."""

    exact: bool = True
    casefold: bool = True
    keep: KeepPolicy = "first"
    near: bool = True
    num_perm: int = 128
    ngram: int = 3
    threshold: float = 0.7
    seed: int = 1
    verify: VerifyMode = "exact"  # LSH candidates confirmed by exact shingle Jaccard, or by signature agreement

    def hasher(self) -> MinHasher:
        return MinHasher(num_perm=self.num_perm, ngram=self.ngram, seed=self.seed)

    def lsh(self) -> LSHIndex:
        return LSHIndex(self.threshold, self.num_perm, hasher_params=self.hasher().params)

    def as_dict(self) -> dict:
        """The settings plus the signature scheme (signatures of another scheme are not comparable)."""
        return {**asdict(self), "scheme": self.hasher().params["scheme"]}

    def digest(self) -> str:
        return text_digest(self.as_dict())

    @property
    def width(self) -> int:
        """Signature values per row (0 when near dedup is off)."""
        return self.num_perm if self.near else 0

    @property
    def bands(self) -> int:
        return self.lsh().bands if self.near else 0


@dataclass
class DedupIndex:
    settings: DedupSettings
    row_ids: pa.Array  # string
    sources: pa.Array  # string
    positions: np.ndarray  # int64
    digests: pa.Array  # fixed_size_binary[16]
    signatures: np.ndarray  # uint32, (n, settings.width)
    band_keys: np.ndarray  # uint64, (n, settings.bands)

    def __len__(self) -> int:
        return len(self.row_ids)

    @classmethod
    def empty(cls, settings: DedupSettings) -> "DedupIndex":
        return cls(settings, pa.array([], pa.string()), pa.array([], pa.string()), np.empty(0, np.int64),
                   pa.array([], DIGEST_TYPE), np.empty((0, settings.width), np.uint32),
                   np.empty((0, settings.bands), np.uint64))

    @classmethod
    def build(cls, ids: pa.Table, batches: Iterable[pa.RecordBatch], settings: DedupSettings) -> "DedupIndex":
        """An index of every row of `ids` (row_id, source, position); `batches` hold the same rows'
        text columns, in order. Used to rebuild a broken index from the rows kept before."""
        digests, signatures = [], []
        hasher = settings.hasher() if settings.near else None
        for batch in batches:
            texts = dedup_texts(batch, casefold=settings.casefold)
            digests += text_digests(texts)
            if hasher is not None:
                signatures.append(hasher.signatures(texts))
        if len(digests) != ids.num_rows:
            raise ValueError(f"the batches hold {len(digests)} rows, the ids {ids.num_rows}")
        return cls.of(settings, ids, pa.array(digests, DIGEST_TYPE),
                      np.concatenate(signatures) if signatures else np.empty((0, settings.width), np.uint32))

    @classmethod
    def ids_only(cls, settings: DedupSettings, ids: pa.Table) -> "DedupIndex":
        """The entries of `ids` (row_id, source, position) without fingerprints (null digests, no
        signatures): enough to tell which pool rows are new (`incremental.split_pool`), nothing more."""
        n = ids.num_rows
        return cls(settings, ids["row_id"].combine_chunks(), ids["source"].combine_chunks(),
                   ids["position"].to_numpy().astype(np.int64), pa.nulls(n, DIGEST_TYPE), np.empty((n, 0), np.uint32),
                   np.empty((n, 0), np.uint64))

    @classmethod
    def of(cls, settings: DedupSettings, ids: pa.Table, digests: pa.Array, signatures: np.ndarray) -> "DedupIndex":
        """An index from ids (row_id, source, position), digests and signatures (band keys computed)."""
        keys = settings.lsh().band_keys(signatures) if settings.near else np.empty((len(digests), 0), np.uint64)
        return cls(settings, ids["row_id"].combine_chunks(), ids["source"].combine_chunks(),
                   ids["position"].to_numpy().astype(np.int64), digests, signatures, keys)

    def take(self, entries: np.ndarray) -> "DedupIndex":
        taken = pa.array(entries, pa.int64())
        return replace(self, row_ids=self.row_ids.take(taken), sources=self.sources.take(taken),
                       positions=self.positions[entries], digests=self.digests.take(taken),
                       signatures=self.signatures[entries], band_keys=self.band_keys[entries])

    def extend(self, other: "DedupIndex") -> "DedupIndex":
        return replace(
            self,
            row_ids=pa.concat_arrays([self.row_ids, other.row_ids]),
            sources=pa.concat_arrays([self.sources, other.sources]),
            positions=np.concatenate((self.positions, other.positions)),
            digests=pa.concat_arrays([self.digests, other.digests]),
            signatures=np.concatenate((self.signatures, other.signatures)),
            band_keys=np.concatenate((self.band_keys, other.band_keys)),
        )

    def lsh(self) -> LSHIndex:
        """An LSH index over the entries (positions 0..n-1), from the stored band keys."""
        index = self.settings.lsh()
        index.add(np.arange(len(self)), self.signatures, keys=self.band_keys)
        return index

    # --- persistence ---------------------------------------------------------------------------

    def to_table(self) -> pa.Table:
        columns = {"row_id": self.row_ids, "source": self.sources, "position": pa.array(self.positions, pa.int64()),
                   "text_digest": self.digests}
        if self.settings.near:
            columns["signature"] = _fixed_lists(self.signatures, pa.uint32())
            columns["band_keys"] = _fixed_lists(self.band_keys, pa.uint64())
        return pa.table(columns)

    def save(self, directory: Path | str) -> Path:
        """Write `signatures.parquet` and `manifest.json` into `directory`, atomically."""
        directory = Path(directory)
        with atomic_path(directory) as tmp:
            write_parquet(self.to_table(), tmp / SIGNATURES_FILE)
            lsh = self.settings.lsh()
            write_json({
                "format": FORMAT,
                "settings": self.settings.as_dict(),
                "settings_digest": self.settings.digest(),
                "rows": len(self),
                "num_perm": self.settings.width,
                "bands": self.settings.bands,
                "rows_per_band": lsh.rows if self.settings.near else 0,
                "sha256": file_digest(tmp / SIGNATURES_FILE),
            }, tmp / MANIFEST_FILE)
        return directory

    @classmethod
    def load(cls, directory: Path | str, settings: DedupSettings, ids_only: bool = False) -> "DedupIndex":
        """The index saved in `directory`; see the module docstring. `ids_only`: read only the entries'
        row_id, source and position (`ids_only`), after the same checks."""
        directory = Path(directory)
        manifest = _read_manifest(directory)
        if manifest.get("settings_digest") != settings.digest():
            stored = manifest.get("settings") or {}
            changes = [f"{k}: {stored.get(k)!r} -> {v!r}" for k, v in settings.as_dict().items() if stored.get(k) != v]
            raise ParamsChanged(f"dedup parameters changed ({', '.join(changes) or 'settings digest differs'})")
        path = directory / SIGNATURES_FILE
        if not path.is_file():
            raise IndexProblem(f"{path} is missing")
        if file_digest(path) != manifest.get("sha256"):
            raise IndexProblem(f"{path} does not match the checksum in its manifest (changed or truncated)")
        expected = settings.lsh()
        want = {"row_id": pa.string(), "source": pa.string(), "position": pa.int64(), "text_digest": DIGEST_TYPE}
        if settings.near:
            want |= {"signature": pa.list_(pa.uint32(), settings.width),
                     "band_keys": pa.list_(pa.uint64(), expected.bands)}
        try:
            columns = list(want)[:3] if ids_only else None
            table = pq.read_table(path, columns=columns)
            got = {f.name: f.type for f in pq.read_schema(path)}
        except (OSError, pa.ArrowException) as e:
            raise IndexProblem(f"{path} is unreadable: {e}") from e
        if got != want or table.num_rows != manifest.get("rows") or manifest.get("bands") != settings.bands:
            raise IndexProblem(f"{path} has the wrong shape: {table.num_rows} rows of {got}, the manifest says "
                               f"{manifest.get('rows')} rows and {manifest.get('bands')} bands; expected columns {want}")
        if ids_only:
            if pc.any(pc.is_null(table["row_id"])).as_py():
                raise IndexProblem(f"{path} has null row ids")
            return cls.ids_only(settings, table)
        n = table.num_rows
        signatures = (table["signature"].combine_chunks().flatten().to_numpy().reshape(n, settings.width)
                      if settings.near else np.empty((n, 0), np.uint32))
        keys = (table["band_keys"].combine_chunks().flatten().to_numpy().reshape(n, expected.bands)
                if settings.near else np.empty((n, 0), np.uint64))
        index = cls(settings, table["row_id"].combine_chunks(), table["source"].combine_chunks(),
                    table["position"].to_numpy(), table["text_digest"].combine_chunks(), signatures, keys)
        if pc.any(pc.is_null(index.row_ids)).as_py() or pc.any(pc.is_null(index.digests)).as_py():
            raise IndexProblem(f"{path} has null row ids or digests")
        return index


def _read_manifest(directory: Path | str) -> dict:
    """The manifest of a saved index; `IndexProblem` when it is missing or unreadable."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise IndexProblem(f"{path} is missing")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise IndexProblem(f"{path} is unreadable: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexProblem(f"{path} is not a format-{FORMAT} dedup index manifest")
    return manifest


def _fixed_lists(values: np.ndarray, value_type: pa.DataType) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(values).ravel(), value_type), values.shape[1])
