"""Score stage: IFD complexity of rows, computed by the model being trained (docs/iterit.md §2; re-scoring: §6).

`score_pool` scores every kept row with the base model (round 0). `rescore_window` re-scores the
rows the previous selection put in the next round's window, with the latest checkpoint.
Rows whose score is NaN (empty response span) are quarantined with a reason, never silently dropped.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.artifacts import Ref, atomic_path, write_json, write_parquet
from curate.models.loading import load_causal_lm, model_path
from curate.env import state_dir
from curate.progress import Progress
from curate.schema import QUARANTINE, SCORES
from curate.scoring.cache import RowScoreCache
from curate.scoring.ifd import score_rows
from tasks.caching import Stage

POOL = Stage("score")
WINDOW = Stage("rescore")
NAN_REASON = "score is NaN (empty response span: the response renders to no tokens)"


def _score(project: str, rows: list[dict], model_ref: dict, params: dict, label: str) -> tuple[pa.Table, pa.Table, dict]:
    s, bm = params["scoring"], params["base_model"]
    cache = RowScoreCache(state_dir(Path(project)) / "score-cache", model_ref["digest"], {**s, "chat_template": bm["chat_template"]})
    known = cache.lookup(r["row_id"] for r in rows)
    todo = [r for r in rows if r["row_id"] not in known]
    if todo:
        model, tokenizer = load_causal_lm(model_path(model_ref), dtype=bm["dtype"], trust_remote_code=bm["trust_remote_code"],
                                          chat_template=bm["chat_template"])
        res = score_rows(
            model, tokenizer, todo, system_prompt=s["system_prompt"], max_length=s["max_length"],
            batch_tokens=s["batch_tokens"], variant=s["variant"], precision=s["precision"],
            contrast_seed=s["contrast_seed"] if s["contrast"] else None, contrast_partners=s["contrast_partners"],
            progress=Progress(label, "rows"), response_share=s["response_share"],
        )
        res.setdefault("loss_swapped", np.full(len(todo), np.nan))
        fresh = [{"row_id": r["row_id"], **{k: v[i].item() for k, v in res.items()}} for i, r in enumerate(todo)]
        cache.add(fresh)
        known.update({f["row_id"]: f for f in fresh})
    records = [known[r["row_id"]] for r in rows]
    scores = pa.Table.from_pylist(
        [{**{k: rec[k] for k in SCORES.names if k in rec}, "scorer_digest": model_ref["digest"]} for rec in records],
        schema=SCORES,
    )
    nan = [i for i, rec in enumerate(records) if math.isnan(rec["ifd"])]
    quarantine = pa.Table.from_pylist(
        [{"source": rows[i]["source"], "position": rows[i]["position"], "stage": "score", "reason": NAN_REASON,
          "row_id": rows[i]["row_id"], "raw": None} for i in nan],
        schema=QUARANTINE,
    )
    stats = {**fit_report(scores, rows), "rows_scored": len(todo), "rows_from_cache": len(rows) - len(todo),
             "rows_truncated": sum(bool(rec.get("truncated")) for rec in records)}
    return scores, quarantine, stats


def fit_report(scores: pa.Table, rows: list[dict]) -> dict:
    """Scorer-fit check: share of eligible rows (IFD < 1) and median IFD, overall and per source.

    Fewer than half eligible means the scorer does not fit the chat template and IFD measures the
    template rather than the instruction.
    """
    ifd = np.asarray(scores["ifd"].to_pylist(), dtype=np.float64)
    sources = np.asarray([r["source"] for r in rows])

    def summary(mask):
        vals = ifd[mask & ~np.isnan(ifd)]
        return {"rows": int(mask.sum()), "eligible_share": float((vals < 1).mean()) if len(vals) else 0.0,
                "median_ifd": float(np.median(vals)) if len(vals) else float("nan")}

    overall = summary(np.ones(len(ifd), bool))
    report = {**overall, "nan": int(np.isnan(ifd).sum()),
              "per_source": {s: summary(sources == s) for s in sorted(set(sources.tolist()))}}
    if overall["eligible_share"] < 0.5:
        report["warning"] = (
            f"only {overall['eligible_share']:.0%} of rows have IFD < 1: the scorer does not fit the chat "
            f"template, so IFD measures the template rather than the instruction"
        )
    return report


def _write(out: Path, scores: pa.Table, quarantine: pa.Table, stats: dict) -> None:
    with atomic_path(out) as tmp:
        write_parquet(scores, tmp / "scores.parquet")
        write_parquet(quarantine, tmp / "quarantine.parquet")
        write_json(stats, tmp / "stats.json")


@POOL.task()
def score_pool(project: str, pool: dict, model: dict, params: dict) -> dict:
    out = POOL.out(project, locals())
    if not out.exists():
        rows = pq.read_table(Path(pool["path"]) / "rows.parquet").to_pylist()
        _write(out, *_score(project, rows, model, params, "score pool"))
    return Ref.of(out).to_dict()


@WINDOW.task()
def rescore_window(project: str, pool: dict, model: dict, state: dict, params: dict, round_index: int) -> dict:
    out = WINDOW.out(project, locals())
    if not out.exists():
        window = set(
            pq.read_table(Path(state["path"]) / "state.parquet", filters=[("in_next_window", "=", True)], columns=["row_id"])
            .column("row_id").to_pylist()
        )
        rows = [r for r in pq.read_table(Path(pool["path"]) / "rows.parquet").to_pylist() if r["row_id"] in window]
        scores, quarantine, stats = _score(project, rows, model, params, f"rescore round {round_index}")
        _write(out, scores, quarantine, {**stats, "round": round_index})
    return Ref.of(out).to_dict()
