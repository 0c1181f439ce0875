"""Round-level selection for every strategy (curate/selection/rounds.py)."""
import math

import pytest

from curate.config import SelectionParams
from curate.selection.rounds import (STRATEGIES, NothingToSelect, eligibility, nothing_to_select, select_round,
                                     trained_before)

RESP = [f"answer {w} about topic {i % 5} and word{i}" for i, w in enumerate("abcdefghijklmnopqrst")]
SCORES = [0.5, 0.9, 1.2, 0.7, float("nan"), 0.95, 0.3, 1.0, 0.8, 0.6, 0.55, 0.85, 0.65, 0.75, 0.45, 0.99, 1.5, 0.2, 0.4, 0.88]


def _sel(strategy, mode="clean", round_index=0, order=None, window=None, previous=None, scores=SCORES, k=3, **kw):
    return select_round(strategy, mode, round_index, order, scores, RESP, k, 2, 0.1, 7, window=window, previous=previous, **kw)


def test_iterit_round0_picks_k_eligible_and_explains_them():
    r = _sel("iterit")
    assert len(r.selected) == 3
    assert all(SCORES[s.position] < 1 for s in r.selected)
    assert all(s.diversity is not None and math.isclose(s.score, s.ifd * s.diversity) for s in r.selected)
    assert [s.rank for s in r.selected] == [0, 1, 2] and "greedy pick" in r.selected[0].reason
    assert 4 not in r.order  # NaN never enters the ranking


def test_round0_picks_by_hand():
    """Single-word responses: each TF-IDF row is one n-gram of weight 1, so diversity starts at 1 and a pick
    multiplies its word's weight by the decay (0.1). IFD 0.9, 0.8, 0.5 (eligible), 1.2 (parked), K = 2:
    iterit takes row 0 (0.9 x 1), then row 2 (0.5 x 1 beats row 1's 0.8 x 0.1); ifd-only takes rows 0 and 1;
    diversity-only (every complexity 1) ties at 1 and takes the lowest index, row 0, then row 2 (1 beats 0.1)."""
    responses, scores = ["alpha", "alpha", "beta", "gamma"], [0.9, 0.8, 0.5, 1.2]
    r = select_round("iterit", "clean", 0, None, scores, responses, 2, 2, 0.1, 7)
    assert [(s.position, s.rank, s.ifd, s.diversity, s.score) for s in r.selected] == [(0, 0, 0.9, 1.0, 0.9),
                                                                                        (2, 1, 0.5, 1.0, 0.5)]
    assert [s.reason for s in r.selected] == ["greedy pick 0: ifd 0.9000 x diversity 1.0000 = 0.9000",
                                              "greedy pick 1: ifd 0.5000 x diversity 1.0000 = 0.5000"]
    assert r.order == [0, 2, 3, 1]  # picks, the parked row, the other candidates by IFD
    assert r.next_window == [0, 2, 1]  # clean: the eligible rows of the order, up to update_ratio * K = 4
    ifd_only = select_round("ifd-only", "clean", 0, None, scores, responses, 2, 2, 0.1, 7)
    assert [(s.position, s.reason) for s in ifd_only.selected] == [(0, "rank 0 by ifd 0.9000"), (1, "rank 1 by ifd 0.8000")]
    diversity = select_round("diversity-only", "clean", 0, None, scores, responses, 2, 2, 0.1, 7)
    assert [(s.position, s.diversity) for s in diversity.selected] == [(0, 1.0), (2, 1.0)]


def test_clean_window_holds_only_eligible_rows_faithful_may_hold_parked():
    clean = _sel("iterit", "clean")
    faithful = _sel("iterit", "faithful")
    assert len(clean.next_window) == len(faithful.next_window) == 6
    assert all(SCORES[p] < 1 for p in clean.next_window)
    assert any(SCORES[p] >= 1 for p in faithful.next_window)  # reference layout: picked + parked + next best


def test_later_round_uses_rescored_window_only():
    r0 = _sel("iterit")
    rescored = list(SCORES)
    for p in r0.next_window:
        rescored[p] = 0.99 if p == r0.selected[0].position else rescored[p] * 0.5
    r1 = _sel("iterit", round_index=1, order=r0.order, window=r0.next_window, scores=rescored)
    assert {s.position for s in r1.selected} <= set(r0.next_window)


def test_ifd_only_ranks_by_complexity():
    r = _sel("ifd-only")
    eligible = sorted((s, p) for p, s in enumerate(SCORES) if s < 1)
    assert [s.position for s in r.selected] == [p for _, p in sorted(eligible, key=lambda t: -t[0])][:3]


def test_static_strategies_reuse_round0():
    for strategy in ("static-ifd", "diversity-only"):
        r0 = _sel(strategy)
        r1 = _sel(strategy, round_index=1, order=r0.order, previous=r0.selected)
        assert [s.position for s in r1.selected] == [s.position for s in r0.selected]
        assert r0.next_window == []


def test_static_strategies_take_fresh_rows_with_revisit_off():
    """With revisit off the caller marks round 0's rows ineligible: static-ifd takes the next rows of its IFD
    ranking, diversity-only and random pick among the rows left."""
    r0 = {s: _sel(s) for s in ("static-ifd", "diversity-only", "random")}
    for strategy, first in r0.items():
        picked = {s.position for s in first.selected}
        eligible = [not math.isnan(x) and p not in picked and (x < 1 or strategy != "static-ifd")
                    for p, x in enumerate(SCORES)]
        second = _sel(strategy, round_index=1, order=first.order, previous=first.selected, eligible=eligible,
                      revisit=False)
        assert len(second.selected) == 3 and not {s.position for s in second.selected} & picked, strategy
    ranked = sorted((p for p, x in enumerate(SCORES) if x < 1), key=lambda p: -SCORES[p])
    assert [s.position for s in r0["static-ifd"].selected] == ranked[:3]
    second = _sel("static-ifd", round_index=1, order=r0["static-ifd"].order, previous=r0["static-ifd"].selected,
                  eligible=[not math.isnan(x) and x < 1 and p not in ranked[:3] for p, x in enumerate(SCORES)],
                  revisit=False)
    assert [s.position for s in second.selected] == ranked[3:6]


def test_random_redraws_each_round_and_full_takes_every_finite_row():
    a, b = _sel("random"), _sel("random", round_index=1)
    assert len(a.selected) == 3 and [s.position for s in a.selected] != [s.position for s in b.selected]
    assert [s.position for s in _sel("random").selected] == [s.position for s in a.selected]
    full = _sel("full")
    # every row with a finite score, in pool order, whatever its IFD (rows 2, 7 and 16 have IFD >= 1); not row 4 (NaN)
    assert [s.position for s in full.selected] == [p for p in range(len(SCORES)) if p != 4]
    assert [s.rank for s in full.selected] == list(range(len(SCORES) - 1))
    assert all(s.reason == "full data: every row" and s.ifd == SCORES[s.position] for s in full.selected)


def test_unknown_strategy_fails_fast():
    with pytest.raises(ValueError, match="unknown strategy"):
        _sel("best")
    assert "iterit" in STRATEGIES


def test_gates_park_rows_even_with_ifd_below_one():
    gated = [s < 0.8 for s in SCORES]  # e.g. ifd_max 0.8, or a failed misalignment check
    r = select_round("iterit", "clean", 0, None, SCORES, RESP, 3, 2, 0.1, 7, eligible=gated)
    assert all(SCORES[s.position] < 0.8 for s in r.selected)
    assert all(gated[p] for p in r.next_window)


def test_eligibility_reasons():
    from curate.selection.rounds import eligibility

    ok, why = eligibility([0.5, 1.0, 0.9, 0.95], [1.0, 1.0, 0.1, float("nan")], ifd_max=0.99, gate=True, margin_min=0.3)
    assert ok.tolist() == [True, False, False, False]
    assert "ifd" in why[1] and "mismatch" in why[2] and "mismatch" in why[3] and why[0] is None
    ok, _ = eligibility([0.5, 0.9], [0.0, 0.0], gate=False)
    assert ok.tolist() == [True, True]


def test_a_score_equal_to_ifd_max_is_not_eligible():
    """The bound is strict, as the reference's `score < 1`: bf16 scores round 0.999.. to exactly 1.0 (many ties)."""
    ok, why = eligibility([1.0, math.nextafter(1.0, 0.0), 0.8, 0.7], [1.0] * 4, ifd_max=1.0)
    assert ok.tolist() == [False, True, True, True] and why[0].startswith("ifd 1.0000 >= 1.0")
    ok, _ = eligibility([0.8, 0.7], [1.0, 1.0], ifd_max=0.8)
    assert ok.tolist() == [False, True]


def test_mismatch_gate_auto_is_on_in_clean_mode_only():
    gate_on = lambda gate, mode: SelectionParams(mismatch_gate=gate, mode=mode).gate_on  # noqa: E731
    assert gate_on("auto", "clean") and not gate_on("auto", "faithful")
    assert gate_on("on", "faithful") and not gate_on("off", "clean")


@pytest.mark.parametrize("mode", ["clean", "faithful"])
def test_without_revisit_the_next_window_leaves_out_this_rounds_picks(mode):
    again, fresh = _sel("iterit", mode), _sel("iterit", mode, revisit=False)
    assert [s.position for s in fresh.selected] == [s.position for s in again.selected]
    picked = {s.position for s in fresh.selected}
    assert picked <= set(again.next_window)  # the reference re-scores its picks
    assert not picked & set(fresh.next_window) and len(fresh.next_window) == len(again.next_window)


def test_trained_before_names_the_round_and_ignores_this_and_later_rounds():
    assert trained_before([None, 0, 2, 1], 2) == [None, "trained in round 0 (selection.revisit: off)", None,
                                                   "trained in round 1 (selection.revisit: off)"]


def test_revisit_auto_is_the_reference_in_faithful_mode_only():
    revisit_on = lambda revisit, mode: SelectionParams(revisit=revisit, mode=mode).revisit_on  # noqa: E731
    assert revisit_on("auto", "faithful") and not revisit_on("auto", "clean")
    assert revisit_on("on", "clean") and not revisit_on("off", "faithful")


def test_a_round_with_nothing_eligible_says_why_and_what_to_change():
    trained = trained_before([0, 1, None], 2)
    _, gated = eligibility([1.2, 0.5], [1.0, 0.1], gate=True)
    error = nothing_to_select(2, trained[:2] + gated)
    assert isinstance(error, NothingToSelect)
    assert str(error).startswith("round 2: no eligible row left to select (2 trained in an earlier round")
    assert "1 IFD >= selection.ifd_max, 1 failed the mismatch gate" in str(error) and "selection.revisit: on" in str(error)
    exhausted = _sel("iterit", eligible=[False] * len(SCORES))
    assert exhausted.selected == []  # select_round returns nothing; the select stage raises the error above


def test_a_round_with_nothing_eligible_names_only_the_fixes_for_its_reasons():
    _, above = eligibility([1.2, 1.5], [1.0, 1.0])
    message = str(nothing_to_select(0, above))
    listed, fix = message.split("To fix:")
    assert "2 IFD >= selection.ifd_max" in listed and fix == " set a higher selection.ifd_max."  # not the ratio: no help
    assert "no row" in str(nothing_to_select(0, []))
