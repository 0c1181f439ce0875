"""A round's rules in one place (curate/selection/round_state.py): budget, eligibility, revisit, the
carried order and window, and the transition of each row's first trained round."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from curate.config import Params
from curate.schema import SELECTION, STATE
from curate.selection.round_state import advance
from curate.selection.rounds import NothingToSelect

ROW_IDS = [f"r{i}" for i in range(8)]
RESPONSES = ["alpha beta", "gamma delta", "epsilon zeta", "eta theta", "iota kappa", "lambda mu", "nu xi", "omicron pi"]
SCORES = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 0.55, 0.65, 1.5])  # r7 has IFD >= 1: never eligible
MARGIN = np.full(8, np.nan)


def _params(**over) -> dict:
    return {**Params().selection.model_dump(mode="json"), "ratio": 2, "mismatch_gate": "off", **over}


def test_two_rounds_carry_state_and_never_revisit_in_clean_mode():
    s = _params(strategy="ifd-only")
    first = advance(s, 0, 0, ROW_IDS, RESPONSES, SCORES, MARGIN)
    assert first.selection.schema == SELECTION and first.state.schema == STATE
    picked0 = set(first.selection["row_id"].to_pylist())
    assert len(picked0) == first.stats["k"] == 2 and "r7" not in picked0
    trained = dict(zip(first.state["row_id"].to_pylist(), first.state["trained_round"].to_pylist()))
    assert {r for r, t in trained.items() if t == 0} == picked0 and all(
        t is None for r, t in trained.items() if r not in picked0)
    reasons = dict(zip(first.state["row_id"].to_pylist(), first.state["ineligible_reason"].to_pylist()))
    assert reasons["r7"] and all(reasons[r] is None for r in ROW_IDS if r != "r7")

    second = advance(s, 0, 1, ROW_IDS, RESPONSES, SCORES, MARGIN, first.state, first.selection)
    picked1 = set(second.selection["row_id"].to_pylist())
    assert len(picked1) == 2 and not picked1 & picked0  # revisit is off in clean mode
    trained = dict(zip(second.state["row_id"].to_pylist(), second.state["trained_round"].to_pylist()))
    assert all(trained[r] == 0 for r in picked0) and all(trained[r] == 1 for r in picked1)
    assert second.stats["trained_before"] == 2 and second.stats["eligible"] == 8 - 1 - 2


def test_a_static_strategy_reuses_round_zero_only_with_revisit_on():
    s = _params(strategy="static-ifd", revisit="on")
    first = advance(s, 0, 0, ROW_IDS, RESPONSES, SCORES, MARGIN)
    second = advance(s, 0, 1, ROW_IDS, RESPONSES, SCORES, MARGIN, first.state, first.selection)
    assert second.selection["row_id"].to_pylist() == first.selection["row_id"].to_pylist()


def test_with_revisit_off_static_ifd_takes_the_next_rows_of_its_ranking():
    """IFD by row: r4 0.9, r3 0.8, r2 0.7, r6 0.65, r1 0.6, ... (r7 >= 1 never): round 0 takes r4, r3;
    round 1 the next two, r2 and r6 (revisit is off in clean mode), so both rounds see fresh rows."""
    s = _params(strategy="static-ifd")
    first = advance(s, 0, 0, ROW_IDS, RESPONSES, SCORES, MARGIN)
    second = advance(s, 0, 1, ROW_IDS, RESPONSES, SCORES, MARGIN, first.state, first.selection)
    assert first.selection["row_id"].to_pylist() == ["r4", "r3"]
    assert second.selection["row_id"].to_pylist() == ["r2", "r6"] and second.stats["trained_before"] == 2


@pytest.mark.parametrize("strategy", ["random", "diversity-only"])
def test_with_revisit_off_every_round_takes_rows_not_trained_before(strategy):
    """Three rounds of 2 of the 8 rows: 6 distinct rows, as many as iterit with revisit off sees; IFD >= 1 (r7)
    does not exclude a row from these baselines."""
    s = _params(strategy=strategy, ratio=2)
    state, selection, seen = None, None, []
    for r in range(4):
        out = advance(s, 5, r, ROW_IDS, RESPONSES, SCORES, MARGIN, state, selection)
        state, selection = out.state, out.selection
        seen += out.selection["row_id"].to_pylist()
    assert len(seen) == len(set(seen)) == 8


def test_no_eligible_row_names_the_reasons():
    with pytest.raises(NothingToSelect, match="round 0"):
        advance(_params(strategy="ifd-only"), 0, 0, ROW_IDS, RESPONSES, np.full(8, 1.2), MARGIN)


def test_the_mismatch_gate_excludes_misaligned_rows():
    margin = np.array([0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # r0's response fits any prompt as well as its own
    out = advance(_params(strategy="ifd-only", mismatch_gate="on"), 0, 0, ROW_IDS, RESPONSES, SCORES, margin)
    assert "r0" not in out.selection["row_id"].to_pylist() and out.stats["gated_mismatch"] == 1
    assert isinstance(out.state, pa.Table)


@pytest.mark.parametrize("strategy", ["longest", "rds"])
def test_ranked_baselines_follow_their_key_ignore_ifd_and_take_fresh_rows(strategy):
    """r7 (IFD >= 1) has the largest key: the baselines pick it (IFD does not gate them); ties by row_id
    (r2 before r5); round 1 takes the next rows of the ranking when revisit is off."""
    key = np.array([1.0, 2.0, 5.0, 3.0, 0.5, 5.0, 4.0, 9.0])
    s = _params(strategy=strategy, ratio=3)
    first = advance(s, 0, 0, ROW_IDS, RESPONSES, SCORES, MARGIN, ranking_key=key)
    assert first.selection["row_id"].to_pylist() == ["r7", "r2", "r5"]
    assert first.selection["score"].to_pylist() == [9.0, 5.0, 5.0]
    second = advance(s, 0, 1, ROW_IDS, RESPONSES, SCORES, MARGIN, first.state, first.selection, ranking_key=key)
    assert second.selection["row_id"].to_pylist() == ["r6", "r3", "r1"]
    again = advance(_params(strategy=strategy, ratio=3, revisit="on"), 0, 1, ROW_IDS, RESPONSES, SCORES, MARGIN,
                    first.state, first.selection, ranking_key=key)
    assert again.selection["row_id"].to_pylist() == ["r7", "r2", "r5"]


def test_a_ranked_baseline_without_its_ranking_is_an_error():
    with pytest.raises(ValueError, match="needs its ranking"):
        advance(_params(strategy="longest"), 0, 0, ROW_IDS, RESPONSES, SCORES, MARGIN)


def test_a_ratio_giving_no_row_is_refused_as_a_budget_not_as_nothing_eligible():
    from curate.selection.iterit import BudgetTooSmall

    with pytest.raises(BudgetTooSmall, match="at least 0.13"):
        advance(_params(strategy="ifd-only", ratio=0.1), 0, 0, ROW_IDS, RESPONSES, SCORES, MARGIN)
