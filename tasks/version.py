"""Version step: record the run's artifacts in DVC (`dvc.lock`, `data.dvc`) and push to the remote."""
from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from curate.versioning import dvc
from tasks.retry import RETRY


@task(name="version", cache_policy=NO_CACHE, persist_result=False, **RETRY)  # the DVC remote briefly unreachable
def version(project: str, remote: str, push: bool) -> dict:
    dvc.ensure_repo(project, remote)
    changed = not dvc.is_clean(project)
    if changed:
        dvc.add_raw(project)
        dvc.commit(project)
    pushed = dvc.push(project) if push else ""
    return {"committed": changed, "pushed": push, "push_output": pushed.strip(), "clean": dvc.is_clean(project)}
