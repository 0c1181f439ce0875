"""Select stage: the rows that train round r, with the reason each was chosen."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.artifacts import Ref, atomic_path, read_json, write_json, write_parquet
from curate.schema import SELECTION, STATE
from curate.scoring.misalignment import mismatch_margin
from curate.selection.iterit import selection_budget
from curate.selection.rounds import (RESCORING, Selected, eligibility, ineligible_counts, mismatch_gate_on, nothing_to_select,
                                     revisit_on, select_round, trained_before)
from curate.models.loading import model_path
from tasks.caching import Stage

STAGE = Stage("select")


def eos_string(model: dict) -> str:
    config = Path(model_path(model)) / "tokenizer_config.json"
    eos = read_json(config).get("eos_token") if config.exists() else None
    return eos.get("content", "") if isinstance(eos, dict) else (eos or "")


def current_scores(row_ids: list[str], base_scores: dict, previous: dict | None,
                   window_scores: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """IFD and mismatch margin by pool position: the previous round's state, updated with the re-scored window."""
    if previous:
        table = pq.read_table(Path(previous["path"]) / "state.parquet", columns=["row_id", "ifd", "margin"])
        by_id = {r: (i, m) for r, i, m in zip(*(table[c].to_pylist() for c in ("row_id", "ifd", "margin")))}
    else:
        by_id = _score_table(Path(base_scores["path"]) / "scores.parquet")
    if window_scores:
        by_id.update(_score_table(Path(window_scores["path"]) / "scores.parquet"))
    pairs = [by_id.get(r, (float("nan"), float("nan"))) for r in row_ids]
    return np.asarray([p[0] for p in pairs], dtype=np.float64), np.asarray([p[1] for p in pairs], dtype=np.float64)


def _score_table(path: Path) -> dict[str, tuple[float, float]]:
    t = pq.read_table(path, columns=["row_id", "ifd", "loss_cond", "loss_swapped"])
    margin = mismatch_margin(t["loss_swapped"].to_numpy(), t["loss_cond"].to_numpy())
    return dict(zip(t["row_id"].to_pylist(), zip(t["ifd"].to_pylist(), margin.tolist())))


@STAGE.task()
def select(project: str, pool: dict, base_scores: dict, previous: dict | None, window_scores: dict | None,
           model: dict, params: dict, round_index: int) -> dict:
    out = STAGE.out(project, locals())
    if not out.exists():
        s = params["selection"]
        rows = pq.read_table(Path(pool["path"]) / "rows.parquet", columns=["row_id", "response"]).to_pylist()
        row_ids = [r["row_id"] for r in rows]
        eos = eos_string(model) if s["append_eos"] else ""
        responses = [r["response"] + eos for r in rows]
        scores, margin = current_scores(row_ids, base_scores, previous, window_scores)
        gate = mismatch_gate_on(s["mismatch_gate"], s["mode"])
        eligible, why_not = eligibility(scores, margin, s["ifd_max"], gate, s["mismatch_margin"])
        k = selection_budget(len(rows), s["ratio"])
        prev_state = pq.read_table(Path(previous["path"]) / "state.parquet") if previous else None
        trained = dict(zip(prev_state["row_id"].to_pylist(), prev_state["trained_round"].to_pylist())) if prev_state else {}
        trained_round = [trained.get(r) for r in row_ids]
        revisit = revisit_on(s["revisit"], s["mode"])
        if not revisit and s["strategy"] in RESCORING:
            for p, reason in enumerate(trained_before(trained_round, round_index)):
                if reason and eligible[p]:
                    eligible[p], why_not[p] = False, reason
        order = window = prev_sel = None
        if prev_state is not None:
            pos = {r: i for i, r in enumerate(row_ids)}
            order = [pos[r] for r in prev_state["row_id"].to_pylist()]
            window = [pos[r] for r, w in zip(prev_state["row_id"].to_pylist(), prev_state["in_next_window"].to_pylist()) if w]
            prev_sel = [Selected(pos[d["row_id"]], d["rank"], d["ifd"], d["diversity"], d["score"], d["reason"])
                        for d in pq.read_table(Path(previous["path"]) / "selection.parquet").to_pylist()]
        result = select_round(
            s["strategy"], s["mode"], round_index, order, scores, responses, k, s["update_ratio"], s["decay"],
            params["project"]["seed"], window=window, previous=prev_sel, eligible=eligible, revisit=revisit,
        )
        if not result.selected:
            raise nothing_to_select(round_index, why_not)
        for x in result.selected:
            if trained_round[x.position] is None:
                trained_round[x.position] = round_index
        selection = pa.Table.from_pylist(
            [{"row_id": row_ids[x.position], "round": round_index, "rank": x.rank, "ifd": x.ifd, "diversity": x.diversity,
              "score": x.score, "strategy": s["strategy"], "reason": x.reason} for x in result.selected],
            schema=SELECTION,
        )
        next_window = set(result.next_window)
        state = pa.table({
            "row_id": [row_ids[p] for p in result.order],
            "ifd": [float(scores[p]) for p in result.order],
            "margin": [float(margin[p]) for p in result.order],
            "eligible": [bool(eligible[p]) for p in result.order],
            "ineligible_reason": [why_not[p] for p in result.order],
            "in_next_window": [p in next_window for p in result.order],
            "trained_round": [trained_round[p] for p in result.order],
        }, schema=STATE)
        with atomic_path(out) as tmp:
            write_parquet(selection, tmp / "selection.parquet")
            write_parquet(state, tmp / "state.parquet")
            write_json({"round": round_index, "k": k, "selected": len(result.selected), "strategy": s["strategy"],
                        "mode": s["mode"], "next_window": len(next_window),
                        "eligible": int(eligible.sum()), **ineligible_counts(why_not)}, tmp / "stats.json")
    return Ref.of(out).to_dict()
