"""Artifacts: atomic writes and content digests (docs/architecture.md §3).

An artifact is a file or a directory. Its digest is a sha256 over its bytes (for a directory: over
the sorted relative paths and the digests of its files), never over its path or mtime. Every write
goes to a temporary name in the same directory, is fsynced, then renamed, so a killed process leaves
either the old artifact or the new one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Ref:
    """A reference to an artifact: where it is and what it holds."""

    path: str
    digest: str

    @classmethod
    def of(cls, path: Path | str) -> "Ref":
        return cls(str(Path(path)), digest(path))

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @property
    def p(self) -> Path:
        return Path(self.path)

    def exists(self) -> bool:
        return self.p.exists()


def file_digest(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


TIMINGS = "timings.json"  # an artifact's wall times: recorded beside its content, never part of its digest
SEAL = ".seal.json"  # a store entry's record of its files' digests (curate/seal.py): about the content, not part of it


def digest(path: Path | str, exclude: Iterable[str] = ()) -> str:
    """Content digest of a file or a directory tree: the same bytes give the same digest on any machine
    and in any run. Left out: hidden temp files, `TIMINGS` and `SEAL` files, and any entry whose name is in `exclude`."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    if not path.is_dir():
        raise FileNotFoundError(f"artifact not found: {path}")
    excluded = {TIMINGS, SEAL, *exclude}
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")
                    and not excluded.intersection(p.relative_to(path).parts)):
        h.update(f.relative_to(path).as_posix().encode())
        h.update(b"\0")
        h.update(file_digest(f).encode())
        h.update(b"\n")
    return h.hexdigest()


def text_digest(*parts: Any) -> str:
    """Digest of JSON-serialisable values (parameter slices, cache keys)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _tmp_name(final: Path) -> Path:
    return final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class atomic_path:
    """Context manager yielding a temp path beside `final`; renamed onto `final` on success.

    Works for files and directories. On error the temp path is removed and `final` is untouched.
    """

    def __init__(self, final: Path | str):
        self.final = Path(final)
        self.tmp = _tmp_name(self.final)

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            _remove(self.tmp)
            return
        if self.tmp.is_file():
            with open(self.tmp, "rb+") as f:
                os.fsync(f.fileno())
        elif self.tmp.is_dir():
            for f in self.tmp.rglob("*"):
                if f.is_file():
                    with open(f, "rb+") as fh:
                        os.fsync(fh.fileno())
        if self.final.is_dir() and self.tmp.is_dir():
            old = _tmp_name(self.final)
            os.rename(self.final, old)
            os.rename(self.tmp, self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.final)
        _fsync_dir(self.final.parent)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def write_parquet(table: pa.Table, final: Path | str) -> Path:
    final = Path(final)
    with atomic_path(final) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return final


def write_json(obj: Any, final: Path | str) -> Path:
    final = Path(final)
    with atomic_path(final) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return final


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text())


def ref_json(ref: dict | None, name: str = "stats.json") -> dict:
    """A JSON file inside an artifact directory given by its Ref dict; {} when absent."""
    path = Path(ref["path"]) / name if ref else None
    return read_json(path) if path and path.exists() else {}


def local_path(uri: str) -> Path | None:
    """The local path of a `file:` URI or a plain path (an MLflow artifact location); None for a remote one."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(uri) if not parsed.scheme else None


def link_tree(src: Path, dst: Path, exclude: Iterable[str] = (), exist_ok: bool = False) -> None:
    """Place a copy of `src` (file or dir; entries named in `exclude` left out) at `dst`, using hard
    links where possible.

    Artifacts are never modified in place (every write is a rename), so sharing inodes is safe.
    """
    def _link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    if src.is_dir():
        shutil.copytree(src, dst, copy_function=_link, ignore=shutil.ignore_patterns(*exclude), dirs_exist_ok=exist_ok)
    else:
        _link(str(src), str(dst))


def materialize(src: Path | str, dst: Path | str, exclude: Iterable[str] = ()) -> Path:
    """Atomically replace `dst` with the content of `src` minus the entries named in `exclude`
    (skipped when the digests already match)."""
    src, dst = Path(src), Path(dst)
    if dst.exists() and digest(dst) == digest(src, exclude):
        return dst
    with atomic_path(dst) as tmp:
        link_tree(src, tmp, (*exclude, SEAL))  # a store entry's seal is about the store copy
    return dst


def remove_stale_temps(root: Path | str) -> int:
    """Delete leftovers of killed writers (`.tmp-*`) under root. Returns how many were removed."""
    n = 0
    for p in Path(root).rglob(".tmp-*"):
        _remove(p)
        n += 1
    return n


def iter_batches(path: Path | str, columns: Iterable[str] | None = None, batch_size: int = 65536):
    """Stream a Parquet file as record batches (large pools never become one pandas frame)."""
    pf = pq.ParquetFile(path)
    yield from pf.iter_batches(batch_size=batch_size, columns=list(columns) if columns else None)


def iter_row_range(path: Path | str, start: int, stop: int, columns: Iterable[str] | None = None,
                   batch_size: int = 65536):
    """Stream rows start..stop-1 of a Parquet file as (first row, record batch) pairs, reading only the
    row groups that hold them."""
    pf = pq.ParquetFile(path)
    groups, first, offset = [], None, 0
    for g in range(pf.metadata.num_row_groups):
        size = pf.metadata.row_group(g).num_rows
        if offset < stop and offset + size > start:
            groups.append(g)
            first = offset if first is None else first
        offset += size
    if not groups:
        return
    for batch in pf.iter_batches(batch_size=batch_size, row_groups=groups, columns=list(columns) if columns else None):
        lo, hi = max(start - first, 0), min(stop - first, batch.num_rows)
        if lo < hi:
            yield first + lo, batch.slice(lo, hi - lo)
        first += batch.num_rows
