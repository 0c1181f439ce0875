"""Version step: check every copy about to be versioned, then record the run's artifacts in DVC
(`dvc.lock`, `data.dvc`) and push to the remote."""
from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from curate import integrity
from curate.seal import CorruptArtifact
from curate.versioning import dvc
from tasks.publish import NOT_PUBLISHED
from tasks.retry import RETRY


@task(name="version", cache_policy=NO_CACHE, persist_result=False, **RETRY)  # the DVC remote briefly unreachable
def version(project: str, remote: str, push: bool, raw_dir: str = "data/raw") -> dict:
    """Refuses (CorruptArtifact, never retried) when a store entry, a published copy or a DVC object the commit
    would reuse differs from its recorded digests: nothing is committed, pushed or recorded then."""
    dvc.ensure_repo(project, remote)
    problems = integrity.before_versioning(Path(project), dvc.cache_dir(project), raw_dir, NOT_PUBLISHED)
    if problems:
        raise CorruptArtifact([f"{c.area} {c.path}: {c.status}" + (f" ({c.detail})" if c.detail else "") for c in problems])
    dvc.unshare_cache(project)
    changed = not dvc.is_clean(project)
    if changed:
        dvc.add_raw(project)
        dvc.commit(project)
    pushed = dvc.push(project) if push else ""
    return {"committed": changed, "pushed": push, "push_output": pushed.strip(), "clean": dvc.is_clean(project)}
