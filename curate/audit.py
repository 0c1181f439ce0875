"""Audit from MLflow (+ the artifacts it holds) alone (docs/architecture.md §7, "Audit"):

- checkpoint -> every row that trained it (all rounds up to it), with round, rank, score components, reason;
- row -> every checkpoint it trained, or the stage that removed it and why.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from curate import integrity
from curate.artifacts import digest
from curate.errors import UsageError
from curate.tracking import mlflow_tracking as mt

PARENT_REMOVALS = {  # parent-run artifact -> stage that removed the row
    "quarantine/quarantine.parquet": "ingest",
    "quarantine-score/quarantine.parquet": "score",
    "dedup/removed.parquet": "dedup",
    "semdedup/removed.parquet": "semantic dedup",
    "holdout-overlap/removed.parquet": "holdout (decontamination: overlaps a held-out row)",
}


def _parquet(run_id: str, artifact: str, tmp: Path) -> list[dict]:
    path = mt.download(run_id, artifact, tmp / run_id)
    return pq.read_table(path).to_pylist() if path else []


def checkpoint(ref: str) -> dict[str, Any]:
    run_id = mt.resolve_run(ref)
    info = mt.run_info(run_id)
    tags = info["tags"]
    kind = tags.get(mt.TAG_KIND)
    if kind == "round":
        parent_id, upto = tags["mlflow.parentRunId"], int(tags[mt.TAG_ROUND])
    elif kind == "parent":
        parent_id, upto = run_id, None
    else:
        raise UsageError(f"{ref} is not a checkpoint of `curate run` (its run's kind is {kind!r}): use a models:/ URI "
                         f"that `curate run` printed, or a round or parent run id")
    subsets = mt.round_subsets(parent_id, info["experiment_id"], upto)
    rows = [s for _, subset in subsets for s in subset]
    last = subsets[-1][0] if subsets else {}
    weighted = [r for r in rows if "total_weight" in r]
    out = {"kind": "checkpoint", "ref": ref, "run_id": last.get("run_id", run_id), "parent_run_id": parent_id,
           "round": last.get("round"), "model_uri": last.get("model_uri"),
           "distinct_rows": len({r["row_id"] for r in rows}), "rows": rows}
    if weighted:  # online weights recorded: which selected rows actually contributed, with what total weight
        out["contributing_rows"] = len({r["row_id"] for r in weighted if r["total_weight"] > 0})
        out["total_weight"] = sum(r["total_weight"] for r in weighted)
    return out


def row(row_id: str) -> dict[str, Any]:
    trained: list[dict] = []
    removed: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in mt.all_runs("round"):
            for sel in _parquet(run["run_id"], mt.SUBSET_ARTIFACT, Path(tmp)):
                if sel["row_id"] == row_id:
                    trained.append({"round_run_id": run["run_id"], "parent_run_id": run["tags"].get("mlflow.parentRunId"),
                                    "round": sel["round"], "rank": sel["rank"], "reason": sel["reason"],
                                    "model_uri": run["tags"].get(mt.TAG_MODEL_URI)})
        for run in mt.all_runs("parent"):
            for artifact, stage in PARENT_REMOVALS.items():
                for rec in _parquet(run["run_id"], artifact, Path(tmp)):
                    if rec.get("row_id") == row_id:
                        removed.append({"parent_run_id": run["run_id"], "stage": stage, "reason": rec["reason"],
                                        "duplicate_of": rec.get("duplicate_of"), "source": rec.get("source"),
                                        "position": rec.get("position")})
    pooled = [] if trained or removed else _pools_holding(row_id)
    if not (trained or removed or pooled):
        raise UsageError(f"row {row_id} is in no recorded run (no selection, removal or pool of the runs in "
                         f"{mt.tracking_uri()} holds it): copy a row_id from `curate audit checkpoint` or `curate export`")
    return {"kind": "row", "row_id": row_id, "trained": trained, "removed": removed, "pooled": pooled}


def _pools_holding(row_id: str) -> list[dict]:
    """The finished parent runs whose deduplicated pool holds `row_id`, and whether they held it out for
    evaluation: a row that trained nothing and was removed nowhere."""
    out, seen = [], {}
    for run in mt.all_runs("parent"):
        pool, split = artifact_path(run["tags"], "semdedup"), artifact_path(run["tags"], "holdout")
        if str(pool) not in seen:
            seen[str(pool)] = _holds(pool / "rows.parquet", row_id) and (
                "held out" if _holds(split / "heldout" / "rows.parquet", row_id) else "selectable")
        if seen[str(pool)]:
            out.append({"parent_run_id": run["run_id"], "as": seen[str(pool)]})
    return out


def _holds(rows: Path, row_id: str) -> bool:
    return rows.is_file() and pq.read_table(rows, columns=["row_id"], filters=[("row_id", "==", row_id)]).num_rows > 0


def artifact_path(tags: dict[str, str], name: str) -> Path:
    """Where a run's artifact is: its store entry, or (when that is gone) its published workspace copy,
    which `dvc pull` restores."""
    store = Path(tags.get(f"curate.path.{name}", ""))
    workspace = tags.get(f"curate.workspace.{name}")
    if not store.exists() and workspace and tags.get("curate.project"):
        return Path(tags["curate.project"]) / workspace
    return store


NEW = "new"  # a raw file added since the last run: the next run versions it (not a problem)
STORE_GONE = ("store entry removed (curate gc): checked its published copy; the optimizer state it held is gone "
              "with it, so this round cannot be resumed or continued")


def _artifact_check(tags: dict[str, str], name: str, recorded: str) -> dict[str, Any]:
    """One recorded artifact of a run: its store entry against its seal and the digest the run recorded, or
    (the entry gone) its published copy against the recorded workspace digest."""
    from curate.seal import checked_ref, CorruptArtifact

    path = artifact_path(tags, name)
    row = {"area": "run", "artifact": name, "path": str(path), "recorded": recorded, "actual": None, "note": ""}
    if not path.exists():
        return {**row, "status": "missing", "note": "neither the store entry nor its published copy exists: "
                                                    "`dvc pull` restores a published copy"}
    if path != Path(tags.get(f"curate.path.{name}", "")):  # artifact_path fell back to the published copy
        recorded = tags.get(f"curate.workspace_digest.{name}", recorded)
        actual = digest(path)
        return {**row, "recorded": recorded, "actual": actual, "status": "ok" if actual == recorded else "MISMATCH",
                "note": STORE_GONE}
    try:
        actual = checked_ref(path, seal_unsealed=False).digest  # an audit writes nothing
    except CorruptArtifact as e:
        return {**row, "status": "MISMATCH", "note": "; ".join(e.problems)}
    return {**row, "actual": actual, "status": "ok" if actual == recorded else "MISMATCH"}


def _project_checks(project: Path, params: dict[str, str], run_id: str) -> list[dict[str, Any]]:
    """The project's other copies: published `data/` against the store, the raw pool against `data.dvc`, and
    the DVC objects the run's `dvc.lock` and `data.dvc` name, in the cache and each local remote."""
    from curate.training.state import TRAINER_STATE
    from curate.versioning.dvc import cache_dir, is_repo, local_remotes

    if not is_repo(project):
        return [{"area": "dvc", "artifact": "", "path": str(project), "status": "missing", "note": "not a DVC repo"}]
    cache, remotes = cache_dir(project), local_remotes(project)
    checks = integrity.published_checks(project, (TRAINER_STATE,))
    checks += integrity.raw_checks(project, params.get("raw.dir", "data/raw"), "data.dvc", [cache, *remotes])
    texts = []
    with tempfile.TemporaryDirectory() as tmp:
        for artifact in ("dvc/dvc.lock", "dvc/raw/data.dvc"):
            path = mt.download(run_id, artifact, Path(tmp) / artifact.replace("/", "_"))
            texts += [path.read_text()] if path else []
    checks += integrity.lock_object_checks(texts, cache, remotes)
    return [{"area": c.area, "artifact": c.detail if c.area.startswith("dvc") else "", "path": c.path,
             "status": NEW if c.status == "unexpected" and c.area == "raw" else c.status, "note": c.detail}
            for c in checks]


def verify(run_ref: str | None = None) -> dict[str, Any]:
    """Re-hash every artifact a run references and compare with the digests recorded in MLflow and in each
    store entry's seal; then the project's other copies (`data/`, the raw pool, the DVC cache and remote)."""
    info = mt.parent_info(run_ref)
    tags = info["tags"]
    checks = [_artifact_check(tags, k[len("curate.digest."):], v) for k, v in sorted(tags.items())
              if k.startswith("curate.digest.")]
    project = Path(tags.get("curate.project", ""))
    if tags.get("curate.project") and project.is_dir():
        checks += _project_checks(project, info["params"], info["run_id"])
    bad = [c for c in checks if c["status"] not in ("ok", NEW, integrity.GONE)]
    gone = sum(1 for c in checks if c.get("note") == STORE_GONE)
    return {"kind": "verify", "run_id": info["run_id"], "checked": len(checks), "problems": bad, "checks": checks,
            "store_entries_gone": gone}


def _trained(parent_id: str) -> dict[str, dict]:
    """row_id -> its selection record in the latest round of a parent run that trained on it."""
    subsets = mt.round_subsets(parent_id, mt.run_info(parent_id)["experiment_id"])
    return {s["row_id"]: s for _, subset in subsets for s in subset}


def diff(run_a: str, run_b: str) -> dict[str, Any]:
    """Rows that entered or left the training set between two runs, and why."""
    a, b = _trained(run_a), _trained(run_b)
    removed_in_b = {}
    with tempfile.TemporaryDirectory() as tmp:
        for artifact, stage in PARENT_REMOVALS.items():
            for rec in _parquet(run_b, artifact, Path(tmp)):
                if rec.get("row_id"):
                    removed_in_b[rec["row_id"]] = f"removed at {stage}: {rec['reason']}"
    pool_path = Path(mt.run_info(run_b)["tags"].get("curate.path.semdedup", "")) / "rows.parquet"
    pool = set(pq.read_table(pool_path, columns=["row_id"])["row_id"].to_pylist()) if pool_path.exists() else None

    def why_left(row_id: str) -> str:
        if row_id in removed_in_b:
            return removed_in_b[row_id]
        if pool is None:
            return "not selected (run B's pool artifact is gone: cannot tell whether it was in the pool)"
        return "in the pool but not selected" if row_id in pool else "not in the pool"

    entered = [{"row_id": r, "round": b[r]["round"], "reason": b[r]["reason"]} for r in sorted(set(b) - set(a))]
    left = [{"row_id": r, "reason": why_left(r)} for r in sorted(set(a) - set(b))]
    return {"kind": "diff", "run_a": run_a, "run_b": run_b, "kept": len(set(a) & set(b)), "entered": entered, "left": left}


def export(run_ref: str | None, round_index: int | None, fmt: str, out: Path, merged: bool = False) -> dict[str, Any]:
    """Write the rows that trained the checkpoint of `round_index` (default: the last) of a run; with
    `merged`, also that checkpoint as a full model (a LoRA adapter merged into its base) in `out/model`."""
    from curate.export import read_pool, training_records, write_export, write_merged_model

    info = mt.parent_info(run_ref)
    subsets = mt.round_subsets(info["run_id"], info["experiment_id"], round_index)
    upto = subsets[-1][0]["round"] if subsets else round_index
    if not subsets or (round_index is not None and upto != round_index):
        rounds = ", ".join(str(rr["round"]) for rr, _ in mt.round_subsets(info["run_id"], info["experiment_id"])) or "none"
        raise UsageError(f"run {info['run_id']} has no round {round_index} (its finished rounds: {rounds}): pass one of "
                         f"them to --round, or leave --round out for the last")
    chosen, selections = [rr for rr, _ in subsets], [subset for _, subset in subsets]
    pool = artifact_path(info["tags"], "semdedup")
    if not (pool / "rows.parquet").exists():
        raise SystemExit(f"error: the pool artifact {pool} is gone; restore it (`dvc pull`) or re-run `curate run`")
    # the system prompt the rounds trained with, so the exported messages are what the model saw
    records = training_records(selections, read_pool(pool / "rows.parquet"), info["params"].get("scoring.system_prompt"))
    manifest = {"parent_run_id": info["run_id"], "round": upto, "model_uri": chosen[-1]["model_uri"],
                "pool_digest": info["tags"].get("curate.digest.semdedup"),
                "subset_digests": {f"round-{r['round']}": r["subset_digest"] for r in chosen}}
    if merged:
        checkpoint = artifact_path(info["tags"], f"round{upto}.train") / "model"
        if not checkpoint.is_dir():
            raise SystemExit(f"error: the checkpoint of round {upto} ({checkpoint}) is gone; restore it (`dvc pull`) "
                             f"or re-run `curate run`")
        manifest["model"] = write_merged_model(checkpoint, out)
    return {"kind": "export", "out": str(out), **write_export(records, out, fmt, manifest)}


def render(result: dict[str, Any]) -> str:
    if result["kind"] == "diff":
        lines = [f"{result['run_a']} -> {result['run_b']}: {result['kept']} rows trained both, "
                 f"{len(result['entered'])} entered, {len(result['left'])} left"]
        lines += [f"  + {e['row_id']} (round {e['round']}): {e['reason']}" for e in result["entered"]]
        lines += [f"  - {x['row_id']}: {x['reason']}" for x in result["left"]]
        return "\n".join(lines)
    if result["kind"] == "export":
        merged = f"; the checkpoint as a full model in {result['out']}/{result['model']['dir']}" if "model" in result else ""
        return (f"wrote {result['rows']} training records (rounds 0..{result['round']} of run {result['parent_run_id']}) "
                f"to {result['out']}/{result['file']} (sha256 {result['digest'][:16]}…), manifest.json beside it{merged}")
    if result["kind"] == "verify":
        gone = f"; {result['store_entries_gone']} store entries gone (published copies checked)" \
            if result.get("store_entries_gone") else ""
        lines = [f"verified {result['checked']} copies of run {result['run_id']}'s artifacts: "
                 f"{'all match' if not result['problems'] else str(len(result['problems'])) + ' problem(s)'}{gone}"]
        fine: dict[str, int] = {}
        for c in result["checks"]:
            if c["status"] == "ok" and c["area"] != "run":
                fine[c["area"]] = fine.get(c["area"], 0) + 1
                continue
            note = f"  ({c['note']})" if c.get("note") else ""
            lines.append(f"  {c['status']:>10}  {c['area']:<10} {c.get('artifact') or '':<18} {c['path']}{note}")
        lines += [f"  {'ok':>10}  {area:<10} {n} checked" for area, n in fine.items()]
        if result["problems"]:
            lines.append("repair with `curate repair` (see `curate repair --dry-run` first)")
        return "\n".join(lines)
    if result["kind"] == "checkpoint":
        lines = [f"checkpoint {result['ref']}: round {result['round']} of parent run {result['parent_run_id']}",
                 f"{result['distinct_rows']} distinct rows selected for it ({len(result['rows'])} row-rounds)"]
        if "contributing_rows" in result:
            lines.append(f"{result['contributing_rows']} of them contributed to a step (online policy), "
                         f"total loss weight {result['total_weight']:.2f}")
        lines += ["", f"{'round':>5} {'rank':>5} {'ifd':>7} {'diversity':>9} {'steps':>5} {'weight':>7}  row_id{' ' * 28}reason"]
        for r in result["rows"]:
            div = f"{r['diversity']:.3f}" if r.get("diversity") is not None else "-"
            ifd = f"{r['ifd']:.3f}" if r.get("ifd") is not None else "-"
            steps = str(r["steps"]) if "steps" in r else "-"
            weight = f"{r['total_weight']:.3f}" if "total_weight" in r else "-"
            lines.append(f"{r['round']:>5} {r['rank']:>5} {ifd:>7} {div:>9} {steps:>5} {weight:>7}  {r['row_id']}  {r['reason']}")
        return "\n".join(lines)
    lines = [f"row {result['row_id']}"]
    if result["trained"]:
        lines.append(f"trained {len(result['trained'])} checkpoint round(s):")
        for t in result["trained"]:
            lines.append(f"  round {t['round']} (rank {t['rank']}) run {t['round_run_id']} model {t['model_uri'] or '-'}: {t['reason']}")
    else:
        lines.append("trained no recorded checkpoint")
    for r in result.get("pooled", []):
        lines.append(f"  in the pool of run {r['parent_run_id']}, removed by no stage, "
                     + ("held out for evaluation" if r["as"] == "held out" else "never selected"))
    for r in result["removed"]:
        dup = f", duplicate of {r['duplicate_of']}" if r.get("duplicate_of") else ""
        lines.append(f"  removed at {r['stage']} (run {r['parent_run_id']}, {r['source']}#{r['position']}): {r['reason']}{dup}")
    return "\n".join(lines)
