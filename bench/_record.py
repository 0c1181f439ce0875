"""Write benchmark results as JSON, atomically, after checking every entry has the required fields.

    from _record import record, update, utc_now
    record("bench/results/x.json", {"benchmark": "x", ..., "date": utc_now()})
    update("bench/results/x.json", [...], keys=("metric", "policy"))  # replace only the entries re-measured
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REQUIRED = {
    "benchmark": str,
    "metric": str,
    "value": (int, float),
    "unit": str,
    "baseline": str,
    "baseline_value": (int, float),
    "ratio": (int, float),  # higher is better
    "command": str,  # exact command to rerun
    "date": str,  # ISO 8601
    "machine": str,  # CPU model, cores, threads used (machine_info)
}


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def machine_info(threads: int) -> str:
    """'<CPU model>, <N> cores, <threads> threads used' of this machine."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {threads} threads used"


def _check(entry: dict) -> None:
    if not isinstance(entry, dict):
        raise TypeError(f"a result entry must be a dict, got {type(entry).__name__}")
    missing = sorted(set(REQUIRED) - set(entry))
    if missing:
        raise ValueError(f"result entry {entry.get('benchmark')!r} lacks {missing}")
    for name, kind in REQUIRED.items():
        value = entry[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TypeError(f"field {name!r} must be {kind}, got {value!r}")
    datetime.fromisoformat(entry["date"])


def record(path: str | Path, entries: dict | list[dict], kept: list[dict] = ()) -> Path:
    """Validate `entries` (one dict or a list of dicts) and write them, after `kept` (earlier entries
    written as they are), to `path` as JSON."""
    for entry in entries if isinstance(entries, list) else [entries]:
        _check(entry)
    if kept:
        entries = list(kept) + (entries if isinstance(entries, list) else [entries])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(entries, indent=2, allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def update(path: str | Path, entries: list[dict], keys: tuple[str, ...] = ("metric",)) -> Path:
    """Replace the entries of `path` that share `keys` with one of `entries`, keep the others, write."""
    path = Path(path)
    old = json.loads(path.read_text()) if path.exists() else []
    old = old if isinstance(old, list) else [old]
    fresh = {tuple(e.get(k) for k in keys) for e in entries}
    return record(path, entries, kept=[e for e in old if tuple(e.get(k) for k in keys) not in fresh])
