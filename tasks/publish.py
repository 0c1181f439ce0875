"""Workspace publishing: place store artifacts at the fixed `data/` paths that dvc.yaml declares."""
from __future__ import annotations

import shutil
from pathlib import Path

from curate import published
from curate.artifacts import materialize, write_json
from curate.training.state import TRAINER_STATE

# Stage -> workspace path (relative to the project). dvc.yaml declares these as outs.
LAYOUT = {
    "ingest": "data/ingest",
    "dedup": "data/dedup",
    "embed": "data/embed",
    "semdedup": "data/semdedup",
    "holdout": "data/holdout",
    "base_model": "data/models/base",
    "score": "data/score",
    "rounds": "data/rounds",
    "evaluate": "data/eval",
}


# Entries of a store artifact that are never published: a round's optimizer state serves resuming,
# which reads the store; versioning it would push the largest file of a round (twice the trainable
# weights) to the DVC remote every night.
NOT_PUBLISHED = (TRAINER_STATE,)


def publish(project: str, ref: dict, rel: str) -> Path:
    """Hard-link (or copy) a store artifact, minus `NOT_PUBLISHED` entries, to `project/rel`, replacing
    what was there atomically."""
    out = materialize(ref["path"], Path(project) / rel, NOT_PUBLISHED)
    published.record(project, rel, ref["path"])
    return out


def publish_base_model(project: str, ref: dict, source: str) -> Path:
    """The tiny default model is published; an external model is referenced by a small pointer file."""
    if source == "tiny":
        return publish(project, ref, LAYOUT["base_model"])
    dst = Path(project) / LAYOUT["base_model"]
    if dst.exists():
        shutil.rmtree(dst)
    write_json({"source": source, "path": ref["path"], "digest": ref["digest"]}, dst / "pointer.json")
    published.record(project, LAYOUT["base_model"], ref["path"])
    return dst


def prune(project: str, rel: str, keep: set[str]) -> None:
    """Remove sub-directories of a published directory that this run did not produce."""
    root = Path(project) / rel
    if root.is_dir():
        for child in root.iterdir():
            if child.name not in keep:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
                published.forget(project, f"{rel}/{child.name}")
