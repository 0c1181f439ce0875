"""The previous night's artifact of an incremental stage (dedup, semdedup), shared by both.

`previous_artifact` picks it for the flow: the published artifact, named by its immutable store entry
(found through `.curate/<stage>-artifacts/<digest>.json`, which the stage writes beside the store, so
an artifact never names its own location); and when the published artifact was itself computed from
these very inputs with these settings, the artifact *it* was computed against, so a re-run has the
same cache key and is a cache hit. `lineage.json` in each artifact records what it was computed from.
"""
from __future__ import annotations

import logging
from pathlib import Path

from curate.artifacts import digest, read_json, write_json
from curate.seal import checked_ref
from curate.env import state_dir
from tasks.pipeline import LAYOUT

LINEAGE_FILE = "lineage.json"
log = logging.getLogger("curate.dedup")


def previous_artifact(project: str, stage: str, inputs_digest: str, settings_digest: str) -> dict | None:
    """The published artifact of `stage` as the `previous` input of tonight's run (see the module
    docstring), None when there is none."""
    published = Path(project) / LAYOUT[stage]
    if not published.is_dir():
        return None
    try:
        lineage = read_json(published / LINEAGE_FILE)
    except (OSError, ValueError):  # no lineage: the stage checks what it finds and says so
        lineage = {}
    if lineage.get("inputs") == inputs_digest and lineage.get("settings") == settings_digest:
        before = lineage.get("previous")  # a re-run on the same inputs: the same inputs as the run that published it
        return before and _located(project, stage, Path(project) / before["path"], before["digest"])
    return _located(project, stage, published, digest(published))


def write_lineage(directory: Path, project: str, inputs_digest: str, settings_digest: str, previous: dict | None) -> None:
    """lineage.json: what an artifact was computed from; the previous artifact's path is relative to the
    project, so the artifact's bytes do not depend on where the project lives."""
    if previous is not None:
        resolved, root = Path(previous["path"]).resolve(), Path(project).resolve()
        path = resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(resolved)
        previous = {"path": path, "digest": previous["digest"]}
    write_json({"inputs": inputs_digest, "settings": settings_digest, "previous": previous}, directory / LINEAGE_FILE)


def remember(project: str, stage: str, out: Path) -> dict:
    """The Ref of a finished store entry (checked against its seal), recorded under its digest for
    `previous_artifact`."""
    ref = checked_ref(out)
    if not _pointer(project, stage, ref.digest).is_file():
        write_json({"path": ref.path}, _pointer(project, stage, ref.digest))
    return ref.to_dict()


def usable_previous(previous: dict | None) -> bool:
    """Whether the chosen previous artifact is still there with the bytes its digest names (logged if not)."""
    if previous is None:
        return False
    if Path(previous["path"]).is_dir() and digest(previous["path"]) == previous["digest"]:
        return True
    log.warning("the previous artifact %s is missing or changed since it was chosen: full pass", previous["path"])
    return False


def _located(project: str, stage: str, fallback: Path, artifact_digest: str) -> dict:
    """A Ref to the artifact of `stage` with this digest: its immutable store entry when known, else `fallback`."""
    pointer = _pointer(project, stage, artifact_digest)
    stored = Path(read_json(pointer)["path"]) if pointer.is_file() else None
    return {"path": str(stored if stored is not None and stored.is_dir() else fallback), "digest": artifact_digest}


def _pointer(project: str, stage: str, artifact_digest: str) -> Path:
    return state_dir(Path(project)) / f"{stage}-artifacts" / f"{artifact_digest}.json"
