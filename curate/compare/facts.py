"""What a comparison (and a run's report) says about a pool and its rounds: pool facts, per-round
metrics, and the step-matched `full` strategy. Pure reads of stage artifacts; the runs themselves are
app/compare.py."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from curate.artifacts import TIMINGS, read_json
from curate.compare.metrics import composition, ifd_histogram, overlap
from curate.compare.spec import merge, validated
from curate.config import Params
from curate.selection.iterit import selection_budget
from curate.training.schedule import steps_per_round


def match_full_steps(p: Params, pool_rows: int) -> Params:
    """`full` with the K-row strategies' optimizer steps per round: one pass over the whole pool per
    round, gradient accumulation raised to ceil(batches of the pool / steps of a K-row round)."""
    t = p.training
    target = steps_per_round(selection_budget(pool_rows, p.selection.ratio), t.batch_size, t.grad_accum, t.epochs_per_round)
    grad_accum = math.ceil(math.ceil(pool_rows / t.batch_size) / target)
    return validated(merge(p.model_dump(mode="json"), {"training": {"grad_accum": grad_accum, "epochs_per_round": 1}}),
                     "full (step-matched)")


def _eval_summary(ref: dict) -> dict[str, Any]:
    m = read_json(Path(ref["path"]) / "metrics.json")
    return {"mean_loss": m["mean_loss"], "mean_exact_match": m["mean_exact_match"],
            "sets": {k: {"loss": v["loss"], "exact_match": v["exact_match"]} for k, v in m["sets"].items()}}


def final_rows(evaluation: dict) -> dict[str, list]:
    """The per-row losses of an evaluation (its rows.parquet): set, row_id, loss, tokens, as lists."""
    t = pq.read_table(Path(evaluation["path"]) / "rows.parquet")
    return {c: t[c].to_pylist() for c in ("set", "row_id", "loss", "tokens")}


def pool_labels(pool: dict) -> dict[str, tuple[str | None, str | None]]:
    t = pq.read_table(Path(pool["path"]) / "rows.parquet", columns=["row_id", "skill", "truth"])
    return {r: (s, g) for r, s, g in zip(*(t[c].to_pylist() for c in ("row_id", "skill", "truth")))}


def _response_tokens(ref: dict) -> int:
    t = pq.read_table(Path(ref["path"]) / "scores.parquet", columns=["n_response_tokens"])
    return int(sum(x or 0 for x in t["n_response_tokens"].to_pylist()))


def pool_facts(pool: dict, scores: dict, base_eval: dict, labels: dict, contrast: bool, score_seconds: float) -> dict:
    """What the report says about a pool: size, skill and noise composition, scoring cost, base metrics, IFD histogram."""
    score_table = pq.read_table(Path(scores["path"]) / "scores.parquet", columns=["row_id", "ifd"])
    truth = [labels.get(r, (None, None))[1] for r in score_table["row_id"].to_pylist()]
    ifd = score_table["ifd"].to_pylist()
    return {
        "rows_after_dedup": len(labels), "rows_scorable": sum(1 for x in ifd if x is not None and math.isfinite(x)),
        "skill": composition(s for s, _ in labels.values()), "truth": composition(g for _, g in labels.values()),
        "score": {"rows": score_table.num_rows, "response_tokens": _response_tokens(scores), "seconds": score_seconds,
                  "texts_per_row": 3 if contrast else 2},
        "base_eval": _eval_summary(base_eval), "ifd_hist_base": ifd_histogram(ifd, truth),
    }


def round_metrics(rounds: list[dict], evaluations: list[dict], labels: dict, wall: Any = None) -> list[dict]:
    """Per round: held-out metrics (None for a round not evaluated), subset composition by noise kind and skill, overlap with the previous
    round, IFD histogram of the scores the round selected on, training and re-scoring cost. `wall`: the
    stage caller that ran them (its `seconds(stage, round)`), for wall times."""
    out, previous = [], None
    for r, (rd, ev) in enumerate(zip(rounds, evaluations)):
        chosen = pq.read_table(Path(rd["select"]["path"]) / "selection.parquet", columns=["row_id"])["row_id"].to_pylist()
        state = pq.read_table(Path(rd["select"]["path"]) / "state.parquet", columns=["row_id", "ifd"])
        train_log = pq.read_table(Path(rd["train"]["path"]) / "train_log.parquet").to_pylist()
        entry = {
            "round": r, "selected": len(chosen), "eval": _eval_summary(ev) if ev else None,
            "truth": composition(labels[x][1] for x in chosen), "skill": composition(labels[x][0] for x in chosen),
            "overlap_prev": overlap(previous, chosen) if previous is not None else None,
            "ifd_hist": ifd_histogram(state["ifd"].to_pylist(), [labels[x][1] for x in state["row_id"].to_pylist()]),
            "train": {"steps": len(train_log), "tokens": sum(x["tokens"] for x in train_log),
                      "response_tokens": sum(x["response_tokens"] for x in train_log),
                      "seconds": read_json(Path(rd["train"]["path"]) / TIMINGS)["seconds"],
                      "wall_seconds": wall.seconds("train", r) if wall else None},
            "rescore": None,
        }
        if rd.get("rescore"):
            stats = read_json(Path(rd["rescore"]["path"]) / "stats.json")
            entry["rescore"] = {"rows": stats["rows_scored"] + stats["rows_from_cache"], "rows_scored": stats["rows_scored"],
                                "response_tokens": _response_tokens(rd["rescore"]),
                                "wall_seconds": wall.seconds("rescore_window", r) if wall else 0.0}
        out.append(entry)
        previous = chosen
    return out


