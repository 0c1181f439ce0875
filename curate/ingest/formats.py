"""Finding the raw sources under a path, detecting each one's format, and streaming its records.

Containers: JSON (a top-level list of records, or one record; a damaged or truncated list is read
record by record, see salvage.py), JSON Lines, Parquet, and a Hugging
Face `datasets` save_to_disk directory (a Dataset or a DatasetDict; all splits are read). The record
kind (alpaca / sharegpt / openai, see normalize.py) is detected once per source. `discover` detects
every source before anything is read, so an unsupported file fails the run before any output.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq

from curate.ingest.normalize import record_kind
from curate.ingest.salvage import TooDeep, array_elements, is_array, parse, reason

EXPECTED_FORMATS = (
    "Alpaca records {instruction, input?, output|response} as a JSON list or JSON Lines; "
    "ShareGPT records {conversations: [{from, value}]}; OpenAI records {messages: [{role, content}]}; "
    "Parquet with Alpaca columns or a messages/conversations column; "
    "a Hugging Face datasets save_to_disk directory with such columns"
)
JSON_SUFFIXES = {".json"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
HF_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")
SKIPPED_SUFFIXES = {".dvc"}
HELD_OUT_DIR = "eval"  # top-level sub-directory of held-out sets: not pool data
_PARQUET_BATCH = 4096


class UnsupportedFormatError(ValueError):
    def __init__(self, path: Path | str, why: str):
        super().__init__(f"{path}: unsupported input ({why}). Expected one of: {EXPECTED_FORMATS}.")
        self.path = str(path)


@dataclass(frozen=True)
class Source:
    path: Path
    name: str  # relative to the raw dir, posix
    container: str  # json | jsonl | parquet | hf_dataset
    kind: str | None  # alpaca | sharegpt | openai; None for an empty source

    @property
    def format(self) -> str:
        return f"{self.container}:{self.kind or 'empty'}"


@dataclass(frozen=True)
class RawRecord:
    position: int
    value: Any  # the parsed record (None when `error` is set)
    raw: str  # the record's text, for the quarantine report
    error: str | None = None  # "<code>: <detail>" when the record could not even be parsed


def is_hf_dataset_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in HF_MARKERS)


class SymlinkedInput(UnsupportedFormatError):
    def __init__(self, path: Path):
        ValueError.__init__(self, f"{path} is a symbolic link (to {os.path.realpath(path)}): the raw pool must hold its "
                                  f"files itself, since DVC versions the pool by copying it in (it would replace the "
                                  f"link by a copy) and a link's target can change without the pool's version "
                                  f"changing. Copy the data in instead: cp -rL {path} {path}.tmp && mv -T {path}.tmp {path}")
        self.path = str(path)


def refuse_symlinks(raw: Path) -> None:
    """Raise SymlinkedInput for the first symbolic link at or under `raw` (held-out sets and hidden files too)."""
    if Path(raw).is_symlink():
        raise SymlinkedInput(Path(raw))
    for dirpath, dirnames, filenames in os.walk(raw):  # never follows a link
        for name in sorted(dirnames) + sorted(filenames):
            if (Path(dirpath) / name).is_symlink():
                raise SymlinkedInput(Path(dirpath) / name)


def discover(raw: Path) -> list[Source]:
    """Every source under `raw` with its detected format, sorted by relative path. A symbolic link anywhere
    under `raw` (or `raw` itself) raises SymlinkedInput: nothing outside the project is read or changed."""
    raw = Path(raw)
    refuse_symlinks(raw)
    if not raw.exists():
        raise FileNotFoundError(f"raw data not found: {raw}")
    if raw.is_file() or is_hf_dataset_dir(raw):
        return [detect(raw, shown_name(raw.name))]
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(raw):
        here = Path(dirpath)
        kept = []
        for d in sorted(dirnames):
            sub = here / d
            if d.startswith(".") or (here == raw and d == HELD_OUT_DIR):
                continue
            if is_hf_dataset_dir(sub):
                found.append((sub.relative_to(raw).as_posix(), sub))
            else:
                kept.append(d)
        dirnames[:] = kept
        for f in filenames:
            if f.startswith(".") or Path(f).suffix in SKIPPED_SUFFIXES:
                continue
            found.append(((here / f).relative_to(raw).as_posix(), here / f))
    return [detect(path, shown_name(name)) for name, path in sorted(found)]


def shown_name(name: str) -> str:
    """A file name as text every output can hold: bytes that are not UTF-8 (which os.walk keeps as lone
    surrogates) written as `\\xNN` escapes; a UTF-8 name as it is."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def detect(path: Path, name: str) -> Source:
    if path.is_dir():
        return Source(path, name, "hf_dataset", _hf_kind(path))
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return Source(path, name, "jsonl", _jsonl_kind(path))
    if suffix in JSON_SUFFIXES:
        return _detect_json(path, name)
    if suffix in PARQUET_SUFFIXES:
        try:
            columns = pq.read_schema(path).names
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise UnsupportedFormatError(path, f"not a readable Parquet file: {e}") from None
        kind = record_kind(columns)
        if kind is None:
            raise UnsupportedFormatError(path, f"Parquet columns {columns} hold no instruction records")
        return Source(path, name, "parquet", kind)
    raise UnsupportedFormatError(path, f"unknown file type {suffix or '(no extension)'!r}")


def _first_kind(objects: Iterator[Any]) -> tuple[str | None, bool]:
    """Kind of the first recognisable record, and whether any JSON object was seen at all."""
    seen_object = False
    for obj in objects:
        if isinstance(obj, dict):
            seen_object = True
            kind = record_kind(obj)
            if kind:
                return kind, True
    return None, seen_object


def _parsed_lines(path: Path) -> Iterator[Any]:
    with open(path, "rb") as f:
        for line in f:
            try:
                yield parse(line.decode("utf-8-sig"))
            except (UnicodeDecodeError, ValueError):
                yield None


def _jsonl_kind(path: Path) -> str | None:
    kind, seen_object = _first_kind(_parsed_lines(path))
    if kind is None and (seen_object or path.stat().st_size and _has_content(path)):
        why = ("its JSON objects have none of the record keys" if seen_object
               else "no line is a readable JSON object: each is malformed or nested too deeply")
        raise UnsupportedFormatError(path, why)
    return kind


def _has_content(path: Path) -> bool:
    with open(path, "rb") as f:
        return any(line.strip() for line in f)


def _json_text(path: Path) -> str:
    # surrogateescape keeps undecodable bytes as lone surrogates: the record holding them is
    # quarantined as invalid UTF-8 instead of failing the whole file.
    return path.read_bytes().decode("utf-8", "surrogateescape").lstrip("\ufeff")


def _load_json(path: Path) -> Any:
    return parse(_json_text(path))


def _salvaged_kind(path: Path) -> str | None:
    """Record kind of a JSON array that does not parse as a whole, from its complete leading records."""
    text = _json_text(path)
    if not is_array(text):
        return None
    kind, _ = _first_kind(e.value for e in array_elements(text) if e.error is None)
    return kind


def _detect_json(path: Path, name: str) -> Source:
    try:
        data = _load_json(path)
    except ValueError as e:
        kind, _ = _first_kind(_parsed_lines(path))
        if kind is not None:  # JSON Lines saved with a .json name
            return Source(path, name, "jsonl", kind)
        kind = _salvaged_kind(path)
        if kind is not None:  # a damaged or truncated array: its complete records are read, the rest quarantined
            return Source(path, name, "json", kind)
        if isinstance(e, TooDeep):
            raise UnsupportedFormatError(path, f"it holds no readable record: it is {e}; fix the file or remove "
                                               "it from the raw directory") from None
        raise UnsupportedFormatError(path, f"not valid JSON ({e})") from None
    if isinstance(data, list):
        kind, seen_object = _first_kind(iter(data))
        if kind is None and data:
            why = "its objects have none of the record keys" if seen_object else "the list holds no JSON objects"
            raise UnsupportedFormatError(path, why)
        return Source(path, name, "json", kind)
    if isinstance(data, dict) and record_kind(data):
        return Source(path, name, "json", record_kind(data))
    what = "an object that is not a record" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
    raise UnsupportedFormatError(path, f"top level is {what}, expected a list of records")


def _load_hf(path: Path):
    import datasets  # imported only when a saved dataset is present (about 1 s)

    loaded = datasets.load_from_disk(str(path))
    return list(loaded.values()) if isinstance(loaded, datasets.DatasetDict) else [loaded]


def _hf_kind(path: Path) -> str | None:
    try:
        splits = _load_hf(path)
    except Exception as e:  # datasets raises FileNotFoundError, ValueError, ... for broken dirs
        raise UnsupportedFormatError(path, f"not a loadable datasets save_to_disk directory: {e}") from None
    kinds = {record_kind(split.column_names) for split in splits}
    if len(kinds) != 1 or None in kinds:
        columns = [split.column_names for split in splits]
        raise UnsupportedFormatError(path, f"dataset columns {columns} hold no instruction records of one kind")
    return kinds.pop()


def count_records(source: Source, limit: int) -> int:
    """How many records `source` holds, counted up to `limit`: cheaply (JSON Lines by non-blank lines,
    Parquet and datasets by their metadata), so an upper bound of the rows ingest will keep."""
    if source.kind is None:  # detected as empty
        return 0
    if source.container == "jsonl":
        n = 0
        with open(source.path, "rb") as f:
            for line in f:
                n += bool(line.strip())
                if n >= limit:
                    break
        return n
    if source.container == "parquet":
        return min(pq.ParquetFile(source.path).metadata.num_rows, limit)
    if source.container == "hf_dataset":
        return min(sum(split.num_rows for split in _load_hf(source.path)), limit)
    return sum(1 for _ in islice(read_records(source), limit))


def _raw_text(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except RecursionError:  # parsed just under the parser's depth limit, too deep to write back
        return "(nested too deeply to show)"


def read_records(source: Source) -> Iterator[RawRecord]:
    """The records of `source` in order; positions count records from 0 within the source."""
    if source.container == "jsonl":
        yield from _read_jsonl(source.path)
    elif source.container == "json":
        text = _json_text(source.path)
        if is_array(text):  # element by element: a damaged tail is one quarantined record, not a lost file
            for i, element in enumerate(array_elements(text)):
                if element.error is None:
                    yield RawRecord(i, element.value, _raw_text(element.value))
                else:
                    yield RawRecord(i, None, element.raw, element.error)
        else:
            yield RawRecord(0, parse(text), text)
    elif source.container == "parquet":
        position = 0
        for batch in pq.ParquetFile(source.path).iter_batches(batch_size=_PARQUET_BATCH):
            for value in batch.to_pylist():
                yield RawRecord(position, value, _raw_text(value))
                position += 1
    elif source.container == "hf_dataset":
        position = 0
        for split in _load_hf(source.path):
            for batch in split.iter(batch_size=_PARQUET_BATCH):
                for values in zip(*batch.values()):
                    value = dict(zip(batch.keys(), values))
                    yield RawRecord(position, value, _raw_text(value))
                    position += 1
    else:
        raise ValueError(f"unknown container {source.container!r}")


def _read_jsonl(path: Path) -> Iterator[RawRecord]:
    position = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8-sig" if position == 0 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                shown = line.decode("utf-8", "replace").rstrip("\r\n")
                yield RawRecord(position, None, shown, f"invalid_utf8: undecodable byte at offset {e.start}")
            else:
                try:
                    yield RawRecord(position, parse(text), text)
                except ValueError as e:
                    yield RawRecord(position, None, text, reason(e))
            position += 1
