"""Holdout stage: the pool the rounds select from, and the held-out rows evaluation reads when the user
gave no held-out files (curate/evaluation/split.py). It runs on every pool; with held-out files in
raw.eval_dir its share is 0 and nothing is split off. Then decontamination (`decontamination.enabled`,
curate/evaluation/decontaminate.py): pool rows that overlap a held-out row (of the split, of the
held-out files, or of a `decontamination.benchmarks` set) leave the pool with reason `heldout_overlap`.

    pool/rows.parquet       the rows selection and training see (ROWS schema)
    heldout/rows.parquet    the rows held out (never selected nor trained), evaluated as the set `holdout`
    removed.parquet         the pool rows removed as overlapping a held-out row (REMOVED schema: the held-out
                            row they overlap in `duplicate_of`, their shingle Jaccard in `similarity`)
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.artifacts import Ref, digest, write_json, write_parquet
from curate.config import DecontaminationParams, declared
from curate.evaluation.decontaminate import REASON, heldout_overlaps
from curate.evaluation.sets import read_heldout
from curate.evaluation.split import KIND, holdout_mask
from curate.ingest import ingest_path
from curate.pool_checks import check_pool_artifacts
from curate.schema import REMOVED, ROWS
from curate.scoring.fit import pool_warnings
from curate.seal import checked_ref, sealed_entry
from tasks.caching import Stage

STAGE = Stage("holdout")


def decontamination_references(project: str, benchmarks: list[str], eval_dir: dict | None = None) -> dict:
    """The held-out files and benchmark sets the stage decontaminates against, as Refs (their content keys
    the stage): `eval_dir` (the Ref of a directory of held-out files, None when the split holds them) and
    every `decontamination.benchmarks` path."""
    missing = [b for b in benchmarks if not (Path(project) / b).exists()]
    if missing:
        raise FileNotFoundError(f"decontamination.benchmarks: {', '.join(missing)} not found in {project} "
                                f"(paths are relative to the project)")
    return {"heldout": eval_dir, "benchmarks": [Ref.of(Path(project) / b).to_dict() for b in benchmarks]}


def _reference_rows(held: pa.Table, refs: dict | None) -> pa.Table:
    """Every row the pool must not overlap: the split's held-out rows, the held-out files', the benchmarks'."""
    tables = [held]
    if refs and refs.get("heldout"):
        tables += [pa.Table.from_pylist(rows, schema=ROWS) for rows in read_heldout(Path(refs["heldout"]["path"])).values()]
    for ref in (refs or {}).get("benchmarks", []):
        tables.append(ingest_path(Path(ref["path"])).rows.select(ROWS.names).cast(ROWS))
    return pa.concat_tables([t.select(ROWS.names).cast(ROWS) for t in tables])


def decontaminate(kept: pa.Table, reference: pa.Table, d: DecontaminationParams) -> tuple[pa.Table, pa.Table]:
    """(the pool without the rows overlapping a reference row, those rows as REMOVED records)."""
    found = heldout_overlaps(kept, reference, d.threshold, d.num_perm, d.ngram, d.seed,
                             d.min_prompt_words) if d.enabled else []
    dropped = {o.position for o in found}
    drop = pa.array([i in dropped for i in range(kept.num_rows)], pa.bool_())
    removed = pa.Table.from_pylist(
        [{"row_id": kept["row_id"][o.position].as_py(), "source": kept["source"][o.position].as_py(),
          "position": kept["position"][o.position].as_py(), "reason": REASON, "duplicate_of": o.reference,
          "similarity": o.similarity} for o in found], schema=REMOVED)
    return kept.filter(pc.invert(drop)), removed


@STAGE.task()
def holdout(project: str, pool: dict, params: dict, eval_files: bool, references: dict | None = None) -> dict:
    """`eval_files`: does raw.eval_dir hold the held-out sets? Then nothing is split off (share 0).
    `references`: the held-out files and benchmark sets to decontaminate against (`decontamination_references`)."""
    out = STAGE.out(project, locals())
    if not out.exists():
        v = declared(params)
        share = 0.0 if eval_files else v.evaluation.holdout
        table = pq.read_table(Path(pool["path"]) / "rows.parquet")
        mask = pa.array(holdout_mask(table["row_id"].to_pylist(), share))
        held = table.filter(mask)
        kept, removed = decontaminate(table.filter(pc.invert(mask)), _reference_rows(held, references),
                                      v.decontamination)
        with sealed_entry(out) as tmp:
            write_parquet(kept, tmp / "pool" / "rows.parquet")
            write_parquet(held, tmp / "heldout" / "rows.parquet")
            write_parquet(removed, tmp / "removed.parquet")
            write_json({"kind": KIND, "rows": held.num_rows, "share": share,
                        "digest": digest(tmp / "heldout" / "rows.parquet")}, tmp / "heldout" / "stats.json")
            stats = {"rows_in": table.num_rows, "kept": kept.num_rows, "heldout": held.num_rows, "share": share,
                     "eval_files": eval_files, "removed_heldout_overlap": removed.num_rows}
            write_json(stats, tmp / "pool" / "stats.json")
            write_json(stats, tmp / "stats.json")
    return STAGE.ref(out)


def split_refs(ref: dict) -> tuple[dict, dict]:
    """(pool, held-out rows) of a holdout artifact, as Refs of its two parts."""
    return checked_ref(Path(ref["path"]) / "pool").to_dict(), checked_ref(Path(ref["path"]) / "heldout").to_dict()


def eval_files(arguments: dict) -> dict:
    """`eval_files`: the held-out files' Ref (None without any) -> whether there are any; and the sets the pool is
    decontaminated against (those files, or the split's rows, and `decontamination.benchmarks`)."""
    benchmarks = arguments["params"]["decontamination"]["benchmarks"]
    return {**arguments, "eval_files": arguments["eval_files"] is not None,
            "references": decontamination_references(arguments["project"], benchmarks, arguments["eval_files"])}


def check(p, value) -> list[str]:
    """Stop before the base model is built when no row is left, or when selection.ratio gives no row per round
    (curate/pool_checks.py); warn when the base model does not know this pool."""
    pool = value("holdout/pool")
    artifacts = {"ingest": value("ingest"), "dedup": value("dedup"), "semdedup": value("semdedup"), "holdout": pool}
    check_pool_artifacts(p.raw.dir, artifacts, p.selection.ratio if p.selection.strategy != "full" else None)
    return pool_warnings(pool["path"], p.base_model.source)
