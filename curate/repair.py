"""`curate repair`: every damaged copy of an artifact restored from a good copy, or set aside to be
recomputed (docs/architecture.md, "Integrity").

Damage is what curate/integrity.py finds: a store file that differs from its entry's seal, a DVC
object (cache or local remote) whose bytes are not its name, a published copy in `data/` that
differs from its store entry, and any other file (an MLflow model artifact) that is a hard link of a
damaged store file. A good source is any file whose bytes hash to the recorded digests: a DVC object
named by the file's md5 (checked), or a sound store file sealed with the same digests.

- a damaged file with a good source is replaced by a copy of it (atomically, same permissions);
- a store entry with a damaged file and no good source is moved to `.curate/corrupt/`, so the next
  run recomputes it (every stage is deterministic on one machine);
- a damaged DVC object with no good source is deleted (the next `dvc commit` writes it again from
  the repaired workspace; the next push uploads it);
- a published copy is published again from its (repaired) store entry, or removed with it;
- the raw pool is never changed: a raw file that differs from `data.dvc` is reported with the
  command that restores it, since only its owner knows whether the change was an edit.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from curate import integrity, published
from curate.published import store_parts
from curate.artifacts import digest, materialize
from curate.env import state_dir
from curate.seal import check_entry, hash_file, read_seal
from curate.versioning.objects import HASH

RESTORE, SET_ASIDE, DELETE, REPUBLISH, REMOVE, UNRECOVERABLE, REPORT = (
    "restore", "set aside", "delete", "republish", "remove", "unrecoverable", "report")


@dataclass(frozen=True)
class Damage:
    area: str  # store | dvc-cache | dvc-remote | mlflow
    path: Path
    md5: str | None  # what its bytes should hash to (None: a file that should not be there)
    sha256: str | None = None
    entry: Path | None = None  # store: the entry it belongs to


@dataclass(frozen=True)
class Action:
    kind: str
    path: str
    source: str | None = None
    reason: str = ""


def store_entries(project: Path) -> list[Path]:
    root = state_dir(project) / "store"
    return [e for stage in sorted(root.iterdir()) if stage.is_dir() for e in sorted(stage.iterdir())
            if e.is_dir() and not e.name.startswith((".tmp-", ".inprogress-")) and not e.name.endswith(".model")] \
        if root.is_dir() else []


def _store_damage(project: Path) -> tuple[list[Damage], dict[str, Path]]:
    """(damaged store files, md5 -> a sound store file with it)."""
    damaged, sound = [], {}
    for entry in store_entries(project):
        seal = read_seal(entry)
        if seal is None:
            continue  # written before seals: checked against its recorded digest when a run reads it
        bad = {Path(p.path): p for p in check_entry(entry, seal)}
        for rel, (_, sha, md5) in seal.items():
            f = entry / rel
            if f in bad:
                damaged.append(Damage("store", f, md5, sha, entry))
            else:
                sound.setdefault(md5, f)
        damaged += [Damage("store", Path(p.path), None, None, entry) for p in bad.values() if p.what == "unexpected"]
    return damaged, sound


def _object_damage(area: str, root: Path) -> tuple[list[Damage], dict[str, Path]]:
    """(damaged DVC objects, object name -> a sound object) of a DVC cache or local remote."""
    damaged, sound = [], {}
    base = root / "files" / "md5"
    for obj in sorted(base.glob("??/*")) if base.is_dir() else []:
        name = obj.parent.name + obj.name
        if not obj.is_file() or not HASH.match(name):
            continue
        if hash_file(obj)[2] == name.removesuffix(".dir"):
            sound.setdefault(name, obj)
        else:
            damaged.append(Damage(area, obj, name.removesuffix(".dir")))
    return damaged, sound


def _inode(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def _source(d: Damage, objects: dict[str, Path], store: dict[str, Path]) -> Path | None:
    """A file holding the bytes `d` should hold (checked: its md5, and its sha256 when known)."""
    names = [d.md5, f"{d.md5}.dir"] if d.md5 else []
    candidates = [objects.get(n) for n in names] + [store.get(d.md5)]
    for c in candidates:
        if c is None or c == d.path or (c.exists() and d.path.exists() and _inode(c) == _inode(d.path)):
            continue
        size, sha, md5 = hash_file(c)
        if md5 == d.md5 and (d.sha256 is None or sha == d.sha256):
            return c
    return None


def _unsealed_damage(recorded: dict[str, str]) -> list[Action]:
    """Entries written before seals, whose bytes differ from a digest a run recorded for them (MLflow): with no
    per-file digests to restore from, they are set aside to be recomputed."""
    out, seen = [], set()
    for path, recorded_digest in sorted(recorded.items()):
        parts = store_parts(path)
        if parts is None or parts[0] in seen or not Path(path).exists() or read_seal(parts[0]) is not None:
            continue
        if digest(path) != recorded_digest:
            seen.add(parts[0])
            out.append(Action(SET_ASIDE, str(parts[0]), reason="written before seals; differs from the digest a run "
                                                              "recorded; the next run recomputes the entry"))
    return out


def plan(project: Path, cache: Path, remotes: Iterable[Path], exclude: Iterable[str] = (),
         recorded: dict[str, str] | None = None) -> list[Action]:
    """What `curate repair` does, in order; nothing is changed here. `recorded`: artifact path -> the digest a
    run recorded for it (the only check an entry written before seals can have)."""
    project = Path(project)
    store_damage, sound_store = _store_damage(project)
    object_damage, sound_objects = [], {}
    for area, root in [("dvc-cache", Path(cache)), *(("dvc-remote", Path(r)) for r in remotes)]:
        damaged, sound = _object_damage(area, root)
        object_damage += damaged
        for name, path in sound.items():
            sound_objects.setdefault(name, path)
    actions = _unsealed_damage(recorded or {})
    set_aside = {Path(a.path) for a in actions}
    bad_inodes: dict[tuple[int, int], Damage] = {}
    for d in store_damage:
        if d.md5 is None:
            actions.append(Action(DELETE, str(d.path), reason="not in the entry's seal"))
            continue
        source = _source(d, sound_objects, sound_store)
        if d.path.exists():
            bad_inodes[_inode(d.path)] = d
        if source is not None:
            actions.append(Action(RESTORE, str(d.path), str(source), "differs from its seal" if d.path.exists() else "missing"))
        elif d.entry not in set_aside:
            set_aside.add(d.entry)
            actions.append(Action(SET_ASIDE, str(d.entry), reason=f"{d.path.name}: no good copy anywhere; the next run "
                                                                   "recomputes the entry"))
    for d in object_damage:
        source = _source(d, sound_objects, sound_store)
        actions.append(Action(RESTORE, str(d.path), str(source), "bytes are not its name") if source is not None
                       else Action(DELETE, str(d.path), reason="bytes are not its name; no good copy (the next commit or "
                                                               "push writes it again from the repaired workspace)"))
    actions += _mlflow_actions(project, bad_inodes, sound_objects, sound_store)
    actions += _workspace_actions(project, {Path(a.path) for a in actions if a.kind == SET_ASIDE},
                                  {_inode(d.path) for d in store_damage if d.path.exists()}, exclude)
    return actions


def _mlflow_actions(project: Path, bad: dict[tuple[int, int], Damage], objects: dict[str, Path],
                    store: dict[str, Path]) -> list[Action]:
    """MLflow artifacts that are hard links of a damaged store file (a logged model's files)."""
    out = []
    for f in integrity.same_inode_files(state_dir(project) / "mlruns", set(bad)) if bad else []:
        d = bad[_inode(f)]
        source = _source(Damage("mlflow", f, d.md5, d.sha256), objects, store)
        out.append(Action(RESTORE, str(f), str(source), "a hard link of a damaged store file") if source is not None
                   else Action(UNRECOVERABLE, str(f), reason="a logged model's file, damaged, with no good copy: "
                                                             "the next run records a sound model"))
    return out


def _workspace_actions(project: Path, aside: set[Path], bad_inodes: set[tuple[int, int]],
                       exclude: Iterable[str]) -> list[Action]:
    """Published copies to publish again (their entry repaired, or their files damaged) or to remove (their
    entry set aside)."""
    out = []
    store = state_dir(project) / "store"
    for rel, inside in sorted((published.read(project) or {}).items()):
        parts = inside.split("/")
        entry, sub = store / parts[0] / parts[1], "/".join(parts[2:])
        if entry in aside:
            out.append(Action(REMOVE, str(project / rel), reason=f"published from {entry}, set aside"))
            continue
        copy = project / rel
        files = [copy] if copy.is_file() else [p for p in copy.rglob("*") if p.is_file()] if copy.exists() else []
        damaged = any(_inode(f) in bad_inodes for f in files)
        if damaged or not all(c.ok for c in integrity.copy_checks(copy, entry, sub, exclude)):
            out.append(Action(REPUBLISH, str(copy), str(entry / sub if sub else entry), "differs from its store entry"))
    return out


def raw_report(project: Path, raw_dir: str, roots: list[Path]) -> list[Action]:
    return [Action(REPORT, c.path, reason=f"{c.detail}; if you did not change it, restore it with "
                                          f"`dvc checkout data.dvc`")
            for c in integrity.raw_checks(project, raw_dir, "data.dvc", roots) if c.status in ("MISMATCH", "missing")]


def _copy_over(source: Path, target: Path) -> None:
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o444
    tmp = target.with_name(f".tmp-repair-{target.name}-{os.getpid()}")
    shutil.copyfile(source, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, target)


def apply(project: Path, actions: list[Action], exclude: Iterable[str] = ()) -> None:
    """Carry out `plan`'s actions in order."""
    project = Path(project)
    when = time.strftime("%Y%m%dT%H%M%S")
    for a in actions:
        path = Path(a.path)
        if a.kind == RESTORE:
            path.parent.mkdir(parents=True, exist_ok=True)
            _copy_over(Path(a.source), path)
        elif a.kind == DELETE and path.exists():
            path.unlink()
        elif a.kind == SET_ASIDE and path.exists():
            target = state_dir(project) / "corrupt" / path.parent.name / f"{path.name}-{when}"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, target)
        elif a.kind == REMOVE:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            published.forget(project, path.relative_to(project).as_posix())
        elif a.kind == REPUBLISH:
            materialize(Path(a.source), path, exclude)

