"""Score stage: IFD complexity of rows, computed by the model being trained (IterIT note §1).

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
from curate.models.loading import load_causal_lm
from curate.progress import Progress
from curate.schema import QUARANTINE, SCORES
from curate.scoring.ifd import score_rows
from tasks.base_model import model_path
from tasks.caching import Stage

CODE = ("curate/scoring", "curate/models/chat.py", "curate/models/loading.py", "curate/schema.py")
POOL = Stage("score", code=CODE)
WINDOW = Stage("rescore", code=CODE)
NAN_REASON = "score is NaN (empty response span: prompt fills max_length, or the template altered the response)"


def _score(rows: list[dict], model_ref: dict, params: dict, label: str) -> tuple[pa.Table, pa.Table, dict]:
    s, bm = params["scoring"], params["base_model"]
    model, tokenizer = load_causal_lm(model_path(model_ref), dtype=bm["dtype"], trust_remote_code=bm["trust_remote_code"])
    res = score_rows(
        model, tokenizer, rows, system_prompt=s["system_prompt"], max_length=s["max_length"],
        batch_tokens=s["batch_tokens"], variant=s["variant"], precision=s["precision"],
        contrast_seed=s["contrast_seed"] if s["contrast"] else None, progress=Progress(label, "rows"),
    )
    ids = [r["row_id"] for r in rows]
    scores = pa.table(
        {
            "row_id": ids,
            "loss_cond": np.asarray(res["loss_cond"], dtype=np.float64),
            "loss_prior": np.asarray(res["loss_prior"], dtype=np.float64),
            "ifd": np.asarray(res["ifd"], dtype=np.float64),
            "n_response_tokens": np.asarray(res["n_response_tokens"], dtype=np.int64),
            "loss_swapped": np.asarray(res.get("loss_swapped", np.full(len(ids), np.nan)), dtype=np.float64),
            "scorer_digest": [model_ref["digest"]] * len(ids),
        },
        schema=SCORES,
    )
    nan = [i for i, v in enumerate(res["ifd"]) if math.isnan(v)]
    quarantine = pa.Table.from_pylist(
        [{"source": rows[i]["source"], "position": rows[i]["position"], "stage": "score", "reason": NAN_REASON,
          "row_id": rows[i]["row_id"], "raw": None} for i in nan],
        schema=QUARANTINE,
    )
    return scores, quarantine, fit_report(scores, rows)


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
        _write(out, *_score(rows, model, params, "score pool"))
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
        scores, quarantine, stats = _score(rows, model, params, f"rescore round {round_index}")
        _write(out, scores, quarantine, {**stats, "round": round_index})
    return Ref.of(out).to_dict()
