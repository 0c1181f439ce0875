"""What `curate gc` removes: the decision, from what is on disk and what the kept runs reference.

Pure: no filesystem, MLflow or DVC here (curate/gc_adapter.py finds the candidates and the
references, and deletes). The rule is conservative: a candidate is removed only when it is provably
unreferenced; every candidate gets the reason it is kept or removed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

STORE = "store"  # a content-store entry, `<stage>/<key>`
PARTIAL = "partial"  # a killed round's unfinished checkpoint in the store (`<key>.model`, `.inprogress-*`)
DVC_CACHE = "dvc-cache"  # a DVC object (md5 hash, `.dir` listings included)
DVC_REMOTE = "dvc-remote"
MLFLOW_MODEL = "mlflow-model"  # a logged model's artifacts, by model id
AREAS = (STORE, PARTIAL, DVC_CACHE, DVC_REMOTE, MLFLOW_MODEL)


@dataclass(frozen=True)
class ParentRun:
    run_id: str
    experiment_id: str
    start_time: float  # seconds since the epoch
    status: str


@dataclass(frozen=True)
class Candidate:
    area: str
    name: str  # STORE/PARTIAL: `<stage>/<dir name>`; DVC: the hash; MLFLOW_MODEL: the model id
    path: str
    size: int
    written: float | None = None  # STORE/PARTIAL: when it was last written (seconds since the epoch)
    in_workspace: bool = False  # STORE: a file of it is hard-linked into the published `data/`
    run_id: str | None = None  # MLFLOW_MODEL: the parent run whose round logged it (None: unknown)


@dataclass(frozen=True)
class References:
    """What must stay. `dvc` is None when some kept run's DVC references could not be read: then no
    DVC object is provably unreferenced."""

    kept_runs: frozenset[str]
    store: frozenset[str]  # `<stage>/<key>` of every store entry a kept run records
    dvc: frozenset[str] | None
    newest_run_start: float | None  # start of the newest recorded parent run (None: no run recorded)


@dataclass(frozen=True)
class Decision:
    candidate: Candidate
    remove: bool
    reason: str


@dataclass
class Plan:
    decisions: list[Decision] = field(default_factory=list)

    @property
    def removals(self) -> list[Decision]:
        return [d for d in self.decisions if d.remove]

    def bytes_to_free(self, area: str | None = None) -> int:
        return sum(d.candidate.size for d in self.removals if area is None or d.candidate.area == area)


FINISHED = "FINISHED"


def kept_runs(runs: list[ParentRun], keep: int) -> list[ParentRun]:
    """Per experiment: its `keep` most recent finished parent runs, and every unfinished one (failed, killed
    or running) newer than its newest finished run, which a resume may still need. An unfinished run older
    than a finished one is not counted: that finished run resumed it or replaced it. So the latest finished
    run, the one `curate audit verify`, `export` and `report` default to, is always kept."""
    if keep < 1:
        raise ValueError(f"--keep-runs must be at least 1 (got {keep}): the latest finished run is always kept")
    by_experiment: dict[str, list[ParentRun]] = {}
    for run in runs:
        by_experiment.setdefault(run.experiment_id, []).append(run)
    kept = []
    for exp_runs in by_experiment.values():
        finished = sorted((r for r in exp_runs if r.status == FINISHED), key=lambda r: r.start_time, reverse=True)
        newest = finished[0].start_time if finished else float("-inf")
        kept += finished[:keep] + [r for r in exp_runs if r.status != FINISHED and r.start_time > newest]
    return sorted(kept, key=lambda r: r.start_time, reverse=True)


def decide(candidate: Candidate, refs: References) -> Decision:
    c = candidate
    if c.area == STORE:
        if c.name in refs.store:
            return Decision(c, False, "recorded by a kept run")
        if c.in_workspace:
            return Decision(c, False, "published in data/ (the workspace dvc.lock tracks it)")
    if c.area in (STORE, PARTIAL):
        if refs.newest_run_start is None:
            return Decision(c, False, "no run is recorded in MLflow yet")
        if c.written is None or c.written >= refs.newest_run_start:
            return Decision(c, False, "written after the newest recorded run started: a run not yet recorded "
                                      "(in progress or killed) may need it to resume")
        if c.area == PARTIAL:
            return Decision(c, True, "unfinished round that no later run resumed")
        return Decision(c, True, "recorded by no kept run")
    if c.area in (DVC_CACHE, DVC_REMOTE):
        if refs.dvc is None:
            return Decision(c, False, "the DVC references of a kept run could not be read")
        if c.name in refs.dvc:
            return Decision(c, False, "in the dvc.lock of a kept run or of the workspace")
        return Decision(c, True, "in no kept dvc.lock")
    if c.area == MLFLOW_MODEL:
        if c.run_id is None:
            return Decision(c, False, "the run that logged it is unknown")
        if c.run_id in refs.kept_runs:
            return Decision(c, False, "logged by a kept run")
        return Decision(c, True, "logged by a run that is not kept")
    return Decision(c, False, f"unknown kind {c.area!r}")


def plan(candidates: list[Candidate], refs: References) -> Plan:
    return Plan([decide(c, refs) for c in candidates])


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def render(p: Plan, kept: list[ParentRun], dry_run: bool, freed: int | None = None) -> str:
    lines = [f"kept runs ({len(kept)}): " + ", ".join(f"{r.run_id} ({r.status.lower()})" for r in kept)]
    verb = "would remove" if dry_run else "removed"
    for d in sorted(p.removals, key=lambda d: (AREAS.index(d.candidate.area), d.candidate.name)):
        c = d.candidate
        lines.append(f"  {verb}  {c.area:<12} {human_bytes(c.size):>9}  {c.name}  ({d.reason})")
    kept_reasons: dict[tuple[str, str], int] = {}
    for d in p.decisions:
        if not d.remove:
            kept_reasons[(d.candidate.area, d.reason)] = kept_reasons.get((d.candidate.area, d.reason), 0) + 1
    for (area, reason), n in sorted(kept_reasons.items(), key=lambda x: (AREAS.index(x[0][0]), x[0][1])):
        lines.append(f"  kept    {area:<12} {n:>5} x  {reason}")
    totals = ", ".join(f"{area} {human_bytes(p.bytes_to_free(area))}" for area in AREAS if p.bytes_to_free(area))
    total = human_bytes(p.bytes_to_free())
    if dry_run:
        lines.append(f"dry run: would remove {len(p.removals)} item(s), {total}" + (f" ({totals})" if totals else "")
                     + "; nothing was removed")
    else:
        lines.append(f"removed {len(p.removals)} item(s)" + (f" ({totals})" if totals else "")
                     + f": {human_bytes(freed if freed is not None else p.bytes_to_free())} freed")
    return "\n".join(lines)
