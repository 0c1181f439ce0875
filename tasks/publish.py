"""Workspace publishing: place store artifacts at the fixed `data/` paths that dvc.yaml declares (`LAYOUT`,
derived from the stage declarations), and read them back as the inputs of `curate stage` (`published_ref`)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from curate import published
from curate.artifacts import Ref, materialize, read_json, write_json
from curate.training.state import TRAINER_STATE
from tasks.pipeline import LAYOUT

__all__ = ["LAYOUT", "NOT_PUBLISHED", "publish", "publish_result", "published_ref", "published_rounds", "prune"]

# Entries of a store artifact that are never published: a round's optimizer state serves resuming,
# which reads the store; versioning it would push the largest file of a round (twice the trainable
# weights) to the DVC remote every night.
NOT_PUBLISHED = (TRAINER_STATE,)
POINTER = "pointer.json"  # what is published for an artifact outside the content store (an external base model)


def publish(project: str, ref: dict, rel: str) -> Path:
    """Hard-link (or copy) a store artifact, minus `NOT_PUBLISHED` entries, to `project/rel`, replacing
    what was there atomically; an artifact outside the content store (a base model that is referenced, not
    copied) is published as a small pointer file."""
    if published.store_name(ref["path"]) is None:
        dst = Path(project) / rel
        if dst.exists():
            shutil.rmtree(dst)
        write_json({"path": ref["path"], "digest": ref["digest"]}, dst / POINTER)
        published.record(project, rel, ref["path"])
        return dst
    out = materialize(ref["path"], Path(project) / rel, NOT_PUBLISHED)
    published.record(project, rel, ref["path"])
    return out


def publish_result(project: str, step: str, result: Any) -> None:
    """Publish what a walker step returned at its `LAYOUT` path: one artifact; a list of them (one per model
    evaluated: `base`, `round-0`, ...); or a list of rounds, each a dict of its stages' artifacts
    (`round-<r>/<stage>`). Sub-directories this run did not produce are removed."""
    rel = LAYOUT[step]
    if isinstance(result, dict):
        publish(project, result, rel)
        return
    if result and "path" not in result[0]:
        for r, parts in enumerate(result):
            for part, ref in parts.items():
                if ref:
                    publish(project, ref, f"{rel}/round-{r}/{part}")
        prune(project, rel, {f"round-{r}" for r in range(len(result))})
        return
    names = ["base"] + [f"round-{r}" for r in range(len(result) - 1)]
    for name, ref in zip(names, result):
        publish(project, ref, f"{rel}/{name}")
    prune(project, rel, set(names))


def published_ref(project: str, rel: str) -> dict | None:
    """The Ref of what `rel` holds: the store entry it was published from (`.curate/published.json`), the
    published copy itself when that entry is gone, the artifact a pointer names; None when nothing is there."""
    path = Path(project) / rel
    if (path / POINTER).is_file():
        pointer = read_json(path / POINTER)
        return {"path": pointer["path"], "digest": pointer["digest"]}
    source = published.source(project, rel)
    if source is None and not path.exists():
        return None
    return Ref.of(source or path).to_dict()


def published_rounds(project: str, step: str, stage: str, rounds: int) -> list[dict]:
    """`stage`'s published artifact of every round of `step` (`data/rounds/round-<r>/<stage>`) that exists."""
    found = [published_ref(project, f"{LAYOUT[step]}/round-{r}/{stage}") for r in range(rounds)]
    return [ref for ref in found if ref is not None]


def prune(project: str, rel: str, keep: set[str]) -> None:
    """Remove sub-directories of a published directory that this run did not produce."""
    root = Path(project) / rel
    if root.is_dir():
        for child in root.iterdir():
            if child.name not in keep:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
                published.forget(project, f"{rel}/{child.name}")
