"""Every copy of the project's artifacts checked against the digests recorded when it was written
(docs/architecture.md, "Integrity"):

- a store entry against its seal (curate/seal.py);
- its published copy in `data/` against the same seal;
- a DVC object (cache or local remote) against its name, which is the md5 of its bytes;
- the raw pool (`data/raw`) against the listing `data.dvc` recorded.

`before_versioning` is what a run checks before `dvc commit`: the store entries the workspace was
published from, the published copies, and every DVC object the commit would reuse instead of writing
(an object already in the cache under the md5 of a file about to be versioned). `curate audit verify`
and `curate repair` build on the same checks.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from curate import published
from curate.env import state_dir
from curate.artifacts import TIMINGS, digest
from curate.seal import check_entry, hash_file, read_seal
from curate.versioning.objects import listing, object_path, out_files

OK, MISMATCH, MISSING, UNEXPECTED = "ok", "MISMATCH", "missing", "unexpected"
GONE = "gone"  # a store entry removed (curate gc) while its published copy stays: not damage, but unchecked
UNSEALED = "written before seals: compared by digest only"  # an entry of an older curate, sealed when a run reads it


@dataclass(frozen=True)
class Check:
    area: str  # store | data | dvc-cache | dvc-remote | raw
    path: str
    status: str  # ok | MISMATCH | missing | unexpected
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK


def _inode(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def entry_checks(root: Path, sub: str = "") -> list[Check]:
    """A store entry (or `sub` inside it) against its seal: one Check per problem, or one ok Check."""
    if not root.is_dir():
        return [Check("store", str(root), GONE, "the store entry is gone (curate gc): its published copy cannot be "
                                                "checked against its seal")]
    seal = read_seal(root)
    if seal is None:
        return [Check("store", str(root), OK, UNSEALED)]
    problems = check_entry(root, seal, sub)
    if not problems:
        return [Check("store", str(root / sub if sub else root), OK)]
    return [Check("store", p.path, MISMATCH if p.what == "changed" else p.what, p.describe()) for p in problems]


def copy_checks(copy: Path, root: Path, sub: str, exclude: Iterable[str] = ()) -> list[Check]:
    """A published copy of `sub` of the store entry `root` (minus entries named in `exclude`) against the
    entry's seal. A file that is a hard link of its store file is as good as the store file."""
    seal, excluded = read_seal(root), {TIMINGS, *exclude}  # wall times are not content (curate/artifacts.py)
    if seal is None:
        same = copy.exists() and digest(copy) == digest(root / sub if sub else root, exclude)
        return [Check("data", str(copy), OK if same else MISMATCH, UNSEALED)]
    prefix = f"{sub}/" if sub else ""
    expected = {rel[len(prefix):]: v for rel, v in seal.items()
                if rel.startswith(prefix) and not excluded.intersection(rel.split("/"))}
    if sub in seal:  # the published path is one file
        expected = {"": seal[sub]}
    present = {f.relative_to(copy).as_posix() if f != copy else "": f
               for f in ([copy] if copy.is_file() else sorted(p for p in copy.rglob("*") if p.is_file()))} \
        if copy.exists() else {}
    checks = []
    for rel, (_, sha, _) in sorted(expected.items()):
        f = present.get(rel)
        if f is None:
            checks.append(Check("data", str(copy / rel if rel else copy), MISSING))
            continue
        store_file = root / prefix / rel if rel else root / sub
        same = store_file.exists() and _inode(store_file) == _inode(f)
        if not same and hash_file(f)[1] != sha:
            checks.append(Check("data", str(f), MISMATCH, f"differs from {store_file}"))
    checks += [Check("data", str(f), UNEXPECTED, "not in the store entry it was published from")
               for rel, f in sorted(present.items()) if rel not in expected and not excluded.intersection(rel.split("/"))]
    return checks or [Check("data", str(copy), OK)]


def published_checks(project: Path, exclude: Iterable[str] = ()) -> list[Check]:
    """Every published path of the workspace (curate/published.py) and the store entry it came from."""
    checks = []
    store = state_dir(project) / "store"
    for rel, inside in sorted((published.read(project) or {}).items()):
        parts = inside.split("/")
        root, sub = store / parts[0] / parts[1], "/".join(parts[2:])
        entry = entry_checks(root, sub)
        checks += entry
        if root.is_dir():
            checks += copy_checks(project / rel, root, sub, exclude)
    return checks


def object_check(root: Path, name: str, area: str, label: str = "", good: set[tuple[int, int]] = frozenset()) -> Check:
    """DVC object `name` under `root`: missing, or its bytes' md5 against its name (an inode in `good`, already
    checked, is not read again)."""
    path = object_path(root, name)
    if not path.is_file():
        return Check(area, str(path), MISSING, label)
    if _inode(path) in good or hash_file(path)[2] == name.removesuffix(".dir"):
        return Check(area, str(path), OK, label)
    return Check(area, str(path), MISMATCH, f"{label}: its bytes' md5 is not its name" if label else "its bytes' md5 is not its name")


def _published_md5s(project: Path, exclude: Iterable[str]) -> dict[str, tuple[str, tuple[int, int] | None]]:
    """md5 of every published file (from the seals) -> (its label, the inode of its store file)."""
    out = {}
    store, excluded = state_dir(project) / "store", set(exclude)
    for rel, inside in (published.read(project) or {}).items():
        parts = inside.split("/")
        root, sub = store / parts[0] / parts[1], "/".join(parts[2:])
        for path, (_, _, md5) in (read_seal(root) or {}).items() if root.is_dir() else ():
            if (path == sub or not sub or path.startswith(sub + "/")) and not excluded.intersection(path.split("/")):
                f = root / path
                out[md5] = (f"{rel}/{path[len(sub) + 1:] if sub else path}".rstrip("/"), _inode(f) if f.exists() else None)
    return out


def raw_files(project: Path, raw_dir: str) -> list[Path]:
    raw = project / raw_dir
    return sorted(p for p in raw.rglob("*") if p.is_file()) if raw.is_dir() else []


def before_versioning(project: Path, cache: Path, raw_dir: str, exclude: Iterable[str] = ()) -> list[Check]:
    """The problems that must stop `dvc commit`: a store entry or published copy that differs from its seal,
    and a DVC cache object, about to be reused for a published or raw file, whose bytes are not its name."""
    project = Path(project)
    checks = [c for c in published_checks(project, exclude) if not c.ok]
    bad = {_inode(Path(c.path)) for c in checks if Path(c.path).is_file()}
    reused = _published_md5s(project, exclude)
    for f in raw_files(project, raw_dir):
        reused.setdefault(hash_file(f)[2], (str(f.relative_to(project)), _inode(f)))
    for md5, (label, inode) in sorted(reused.items()):
        if not object_path(cache, md5).is_file():
            continue  # the commit writes it from the (checked) workspace file
        good = {inode} if inode is not None and inode not in bad else set()
        check = object_check(cache, md5, "dvc-cache", label, good)
        if not check.ok:
            checks.append(check)
    return checks


def raw_checks(project: Path, raw_dir: str, dvc_file: str, roots: list[Path]) -> list[Check]:
    """The raw pool against the listing `dvc_file` records: a file changed or missing since it was versioned
    (an edit not yet run, or damage: either way not what the last run trained on); new files are noted."""
    target = project / dvc_file
    if not target.is_file():
        return [Check("raw", str(target), MISSING, "no DVC record of the raw pool")]
    outs = (yaml.safe_load(target.read_text()) or {}).get("outs") or []
    name = outs[0]["md5"] if outs else None
    entries = listing(name, roots) if name and name.endswith(".dir") else None
    if entries is None:
        return [Check("raw", str(target), MISSING, f"the listing {name} is in neither the DVC cache nor a remote")]
    raw = project / raw_dir
    present = {f.relative_to(raw).as_posix(): f for f in raw_files(project, raw_dir)}
    checks = []
    for entry in entries:
        f = present.get(entry["relpath"])
        if f is None:
            checks.append(Check("raw", str(raw / entry["relpath"]), MISSING, f"recorded in {dvc_file}"))
        elif hash_file(f)[2] != entry["md5"]:
            checks.append(Check("raw", str(f), MISMATCH, f"differs from {dvc_file}: changed since the last run"))
    listed = {e["relpath"] for e in entries}
    checks += [Check("raw", str(f), UNEXPECTED, "new since the last run: the next run versions it")
               for rel, f in sorted(present.items()) if rel not in listed]
    return checks or [Check("raw", str(raw), OK, f"{len(entries)} files match {dvc_file}")]


def lock_object_checks(texts: Iterable[str], cache: Path, remotes: list[Path]) -> list[Check]:
    """Every object the outs of these dvc.lock / .dvc texts name, in the cache and in each local remote."""
    names: dict[str, str] = {}
    for text in texts:
        names.update(out_files(yaml.safe_load(text) or {}, [cache, *remotes]))
    checks = [object_check(cache, n, "dvc-cache", label) for n, label in sorted(names.items())]
    for remote in remotes:
        checks += [object_check(remote, n, "dvc-remote", label) for n, label in sorted(names.items())]
    return checks


def same_inode_files(root: Path, inodes: set[tuple[int, int]]) -> list[Path]:
    """Files under `root` that are one of `inodes` (hard links of a damaged file)."""
    out = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            f = Path(dirpath) / name
            try:
                if _inode(f) in inodes:
                    out.append(f)
            except OSError:
                continue
    return out
