"""MLflow keys made from names that come from the data (raw file names, held-out set names).

MLflow refuses a metric, parameter or tag key with any character but alphanumerics, `_ - . space`
(and `: /` with conditions), or longer than 250 characters. A file may be named `train (1).jsonl` or
`q&a=1.jsonl`: each part of a key is made safe on its own (`safe_key`), cut when long, and made
unique among its siblings; the caller keeps the original names (see `key_parts`). Pure: no MLflow.
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterable

_NOT_IN_KEYS = re.compile(r"[^\w\-. ]")  # MLflow's key characters, less ':' (not on Windows) and '/' (a path)
MAX_PART = 150  # characters of one part: a key of a few parts stays under MLflow's 250


def safe_key(name: str) -> str:
    """`name` with `/` as `.` and every other character MLflow refuses in a key as `_`."""
    return _NOT_IN_KEYS.sub("_", name.replace("/", "."))


def _cut(part: str, name: str) -> str:
    if len(part) <= MAX_PART:
        return part
    return f"{part[: MAX_PART - 9]}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def key_parts(names: Iterable[str]) -> dict[str, str]:
    """A safe, unique key part for each of `names` (one level of a key). A name that is already a valid
    part keeps it; the others get `safe_key` (cut to MAX_PART with a digest), and `-2`, `-3`, ... when that
    part is taken."""
    names = [str(n) for n in names]
    parts = {n: n for n in names if _cut(safe_key(n), n) == n}
    taken = set(parts.values())
    for name in names:
        if name in parts:
            continue
        base = _cut(safe_key(name), name)
        part, n = base, 1
        while part in taken:
            n += 1
            part = f"{base}-{n}"
        parts[name] = part
        taken.add(part)
    return parts
