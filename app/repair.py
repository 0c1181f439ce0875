"""`curate repair`: find the damaged copies (curate/integrity.py), restore or set them aside
(curate/repair.py), check again, and say what the next run will do."""
from __future__ import annotations

import json
from pathlib import Path

from curate import repair as library
from curate.config import load_params
from curate.versioning.dvc import cache_dir, is_repo, local_remotes
from tasks.publish import NOT_PUBLISHED

VERBS = {library.RESTORE: ("would restore", "restored"), library.SET_ASIDE: ("would set aside", "set aside"),
         library.DELETE: ("would delete", "deleted"), library.REPUBLISH: ("would republish", "republished"),
         library.REMOVE: ("would remove", "removed"), library.UNRECOVERABLE: ("cannot repair", "cannot repair"),
         library.REPORT: ("not changed", "not changed")}


def repair(project: Path, params_file: str, dry_run: bool, as_json: bool) -> int:
    """Returns the exit status: 0 when every copy matches its recorded digests afterwards (or, with
    `dry_run`, when nothing is damaged), 1 otherwise."""
    p = load_params(project / params_file)
    roots = ([cache_dir(project)], local_remotes(project)) if is_repo(project) else ([], [])
    cache = roots[0][0] if roots[0] else project / ".dvc" / "cache"
    actions = library.plan(project, cache, roots[1], NOT_PUBLISHED, recorded_digests())
    report = library.raw_report(project, p.raw.dir, [cache, *roots[1]]) if is_repo(project) else []
    if not dry_run:
        library.apply(project, actions, NOT_PUBLISHED)
    # what is still wrong afterwards: a second look, the copies no repair can make, the raw files left alone
    left = [] if dry_run else library.plan(project, cache, roots[1], NOT_PUBLISHED, recorded_digests()) + \
        [a for a in actions if a.kind == library.UNRECOVERABLE] + report
    if as_json:
        print(json.dumps({"dry_run": dry_run, "actions": [a.__dict__ for a in actions + report],
                          "left": [a.__dict__ for a in left]}, indent=2))
    else:
        print(render(project, actions + report, dry_run, left))
    return 1 if (left or (dry_run and actions)) else 0


def recorded_digests() -> dict[str, str]:
    """Artifact path -> the digest a recorded run noted for it (tags curate.path.* / curate.digest.*)."""
    from curate.tracking import mlflow_tracking as mt

    out = {}
    for run in mt.parent_runs():
        tags = run["tags"]
        for key, path in tags.items():
            name = key.removeprefix("curate.path.")
            if key.startswith("curate.path.") and f"curate.digest.{name}" in tags:
                out.setdefault(path, tags[f"curate.digest.{name}"])
    return out


def render(project: Path, actions: list, dry_run: bool, left: list) -> str:
    def rel(path: str | None) -> str:
        return str(Path(path).relative_to(project)) if path and Path(path).is_relative_to(project) else str(path)

    if not actions:
        return "curate repair: every store entry, published copy and DVC object matches its recorded digests"
    lines = [f"curate repair{' (dry run: nothing changed)' if dry_run else ''}:"]
    for a in actions:
        verb = VERBS[a.kind][0 if dry_run else 1]
        source = f" <- {rel(a.source)}" if a.source else ""
        lines.append(f"  {verb:<16} {rel(a.path)}{source}  ({a.reason})")
    if not dry_run:
        lines.append(f"{len(left)} problem(s) left" if left else "every damaged copy was restored or set aside")
    if any(a.kind in (library.SET_ASIDE, library.REMOVE, library.DELETE) for a in actions):
        lines.append("next: `curate run` recomputes the set-aside entries and versions the repaired workspace")
    return "\n".join(lines)
