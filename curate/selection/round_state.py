"""One round, from the previous round's state to the next: the home of a round's rules.

`advance` takes plain values (the pool's rows in pool order, their current scores, and the previous
round's `state.parquet` + `selection.parquet` tables) and returns this round's selection, its new
state (`curate.schema.STATE`, the contract between rounds) and its stats. It owns:
- the budget K (`selection_budget`);
- eligibility: IFD below `selection.ifd_max`, and the mismatch gate (`SelectionParams.gate_on`);
- revisit (`SelectionParams.revisit_on`): with it off, rows trained in an earlier round are
  ineligible (`trained_before`);
- the order and re-score window carried from the previous round;
- the transition: which round first trained each row, and the next round's window.

The select stage (tasks/select.py) only reads the artifacts and writes what this returns. The
selection rules themselves are `select_round` (docs/iterit.md §6-§8).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from curate.config import SelectionParams
from curate.schema import SELECTION, STATE
from curate.selection.iterit import selection_budget
from curate.selection.baselines import ranked_by
from curate.selection.rounds import (FRESH_CAPABLE, UNGATED, Selected, eligibility, ineligible_counts,
                                     nothing_to_select, select_round, trained_before)


@dataclass
class RoundOutcome:
    selection: pa.Table  # SELECTION: this round's picks with their reasons
    state: pa.Table  # STATE: every row in the new order, for the next round
    stats: dict[str, Any]


def advance(s: SelectionParams | dict[str, Any], seed: int, round_index: int, row_ids: list[str],
            responses: Sequence[str], scores: np.ndarray, margin: np.ndarray, previous_state: pa.Table | None = None,
            previous_selection: pa.Table | None = None, ranking_key: np.ndarray | None = None) -> RoundOutcome:
    """Round `round_index` under the `selection` parameters `s` (the stage's dict is validated here);
    `scores`/`margin` by pool position (the previous state updated with any re-scored window);
    `ranking_key` by pool position for the RANKED strategies (response tokens, RDS+ similarity).
    Raises NothingToSelect when no row is eligible."""
    s = SelectionParams.model_validate(s)
    if s.strategy in UNGATED:  # baselines: neither IFD nor the gate decides who may be picked
        eligible, why_not = np.isfinite(scores), [None if np.isfinite(x) else "score is NaN" for x in scores]
    else:
        eligible, why_not = eligibility(scores, margin, s.ifd_max, s.gate_on, s.mismatch_margin)
    k = selection_budget(len(row_ids), s.ratio)
    trained = (dict(zip(previous_state["row_id"].to_pylist(), previous_state["trained_round"].to_pylist()))
               if previous_state is not None else {})
    trained_round = [trained.get(r) for r in row_ids]
    if not s.revisit_on and s.strategy in FRESH_CAPABLE:
        for p, reason in enumerate(trained_before(trained_round, round_index)):
            if reason and eligible[p]:
                eligible[p], why_not[p] = False, reason
    order = window = prev_sel = None
    if previous_state is not None:
        pos = {r: i for i, r in enumerate(row_ids)}
        state_ids = previous_state["row_id"].to_pylist()
        order = [pos[r] for r in state_ids]
        window = [pos[r] for r, w in zip(state_ids, previous_state["in_next_window"].to_pylist()) if w]
        prev_sel = [Selected(pos[d["row_id"]], d["rank"], d["ifd"], d["diversity"], d["score"], d["reason"])
                    for d in (previous_selection.to_pylist() if previous_selection is not None else [])]
    result = select_round(
        s.strategy, s.mode, round_index, order, scores, responses, k, s.update_ratio, s.decay,
        seed, window=window, previous=prev_sel, eligible=eligible, revisit=s.revisit_on,
        ranking=ranked_by(ranking_key, row_ids) if ranking_key is not None else None, ranking_key=ranking_key,
    )
    if not result.selected:
        raise nothing_to_select(round_index, why_not)
    for x in result.selected:
        if trained_round[x.position] is None:
            trained_round[x.position] = round_index
    selection = pa.Table.from_pylist(
        [{"row_id": row_ids[x.position], "round": round_index, "rank": x.rank, "ifd": x.ifd, "diversity": x.diversity,
          "score": x.score, "strategy": s.strategy, "reason": x.reason} for x in result.selected],
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
    stats = {"round": round_index, "k": k, "selected": len(result.selected), "strategy": s.strategy,
             "mode": s.mode, "next_window": len(next_window), "eligible": int(eligible.sum()),
             **ineligible_counts(why_not)}
    return RoundOutcome(selection, state, stats)
