"""Sealed store entries: each content-store entry records the digest of every file it holds when it is
written, so any later change of its bytes is caught before anything reads, versions or records it
(docs/architecture.md, "Integrity").

A store entry (`.curate/store/<stage>/<key>/`) is written once, atomically, by `sealed_entry`: before the
rename that publishes it, `.seal.json` is written into it with every file's size, sha256 and md5 (the
md5 names the file's DVC object, so a damaged file can be restored from the DVC cache or remote), and
its files are made read-only. `checked_ref` re-hashes an entry (or a path inside one) against its
seal and returns its Ref, or raises `CorruptArtifact` naming the entry, the files and the repair.
"""
from __future__ import annotations

import hashlib
import stat
from dataclasses import dataclass
from pathlib import Path

from curate.artifacts import SEAL, TIMINGS, Ref, atomic_path, read_json, write_json
from curate.published import store_parts
_CHUNK = 1 << 20


class CorruptArtifact(RuntimeError):
    """Bytes that differ from the digests recorded when they were written. Never retried, never versioned."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        super().__init__(f"corrupt artifact(s): {shown}. Nothing was versioned or recorded. Run `curate repair` "
                         f"(it restores each file from a good copy, or sets the entry aside to be recomputed), "
                         f"then run again")


@dataclass(frozen=True)
class Problem:
    path: str  # the file (or entry) that is wrong
    what: str  # changed | missing | unexpected | unsealed-changed
    expected: str | None = None  # its recorded sha256 (or md5 for a DVC object)
    actual: str | None = None

    def describe(self) -> str:
        if self.what == "changed":
            return f"{self.path} changed (recorded {self.expected[:12]}…, now {self.actual[:12]}…)"
        return f"{self.path} {self.what}"


def hash_file(path: Path | str) -> tuple[int, str, str]:
    """(size, sha256, md5) of a file, read once."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest(), md5.hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != SEAL and not p.name.startswith(".tmp-"))


def write_seal(root: Path) -> dict[str, list]:
    """Seal the directory `root`: `.seal.json` = {relative path: [size, sha256, md5]}; files made read-only."""
    files = {}
    for f in _files(root):
        files[f.relative_to(root).as_posix()] = list(hash_file(f))
        f.chmod(f.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    write_json(files, root / SEAL)
    return files


def read_seal(root: Path) -> dict[str, list] | None:
    path = Path(root) / SEAL
    return read_json(path) if path.is_file() else None


class sealed_entry(atomic_path):
    """`atomic_path` for a store entry: on success the directory is sealed before it is renamed into place."""

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self.tmp.is_dir():
            write_seal(self.tmp)
        super().__exit__(exc_type, exc, tb)


def _under(rel: str, sub: str) -> bool:
    return not sub or rel == sub or rel.startswith(sub + "/")


def sealed_digest(seal: dict[str, list], sub: str = "", exclude: tuple[str, ...] = ()) -> str:
    """The digest (curate.artifacts.digest's rule) of `sub` inside a sealed entry, from its seal alone."""
    excluded = {TIMINGS, *exclude}
    inside = {rel[len(sub) + 1:] if sub else rel: v for rel, v in seal.items() if _under(rel, sub)}
    if list(inside) == [""]:  # `sub` is a file
        return inside[""][1]
    h = hashlib.sha256()
    for rel in sorted(inside):
        if excluded.intersection(rel.split("/")):
            continue
        h.update(rel.encode() + b"\0" + inside[rel][1].encode() + b"\n")
    return h.hexdigest()


def check_entry(root: Path, seal: dict[str, list], sub: str = "") -> list[Problem]:
    """Every file of `sub` inside the entry `root` re-hashed against the seal: changed, missing or unexpected."""
    problems = []
    present = {f.relative_to(root).as_posix(): f for f in _files(root)}
    for rel, (_, sha, _) in sorted(seal.items()):
        if not _under(rel, sub):
            continue
        if rel not in present:
            problems.append(Problem(str(root / rel), "missing", sha))
            continue
        actual = hash_file(present[rel])[1]
        if actual != sha:
            problems.append(Problem(str(root / rel), "changed", sha, actual))
    problems += [Problem(str(f), "unexpected") for rel, f in present.items() if _under(rel, sub) and rel not in seal]
    return problems


def entry_seal(root: Path) -> dict[str, list]:
    """The seal of an entry; an entry written before seals existed is sealed as it is found."""
    return read_seal(root) or write_seal(root)


def checked_ref(path: Path | str, seal_unsealed: bool = True) -> Ref:
    """The Ref of `path`, checked: inside a store entry, every file under it re-hashed against the entry's
    seal (raises CorruptArtifact); elsewhere (a model outside the store), its plain digest. An entry
    written before seals existed is sealed as it is found (`seal_unsealed`), or only digested."""
    parts = store_parts(path)
    if parts is None:
        return Ref.of(path)
    root, sub = parts
    seal = entry_seal(root) if seal_unsealed else read_seal(root)
    if seal is None:
        return Ref.of(path)
    problems = check_entry(root, seal, sub)
    if problems:
        raise CorruptArtifact([p.describe() for p in problems])
    return Ref(str(path), sealed_digest(seal, sub))


def check_ref(ref: dict) -> None:
    """A Ref handed over by a cache (Prefect's cached result): its bytes must still be the sealed ones and its
    recorded digest the sealed digest. An entry written before seals is sealed only once its bytes match the
    digest the cache recorded. A Ref outside the store (an external model) is not checked here."""
    parts = store_parts(ref["path"])
    if parts is None:
        return
    unsealed = read_seal(parts[0]) is None
    actual = checked_ref(ref["path"], seal_unsealed=False)
    if actual.digest != ref["digest"]:
        raise CorruptArtifact([Problem(ref["path"], "changed", ref["digest"], actual.digest).describe()])
    if unsealed:
        write_seal(parts[0])
