"""The paired statistics of `curate compare` (curate/compare/paired.py) against values computed by hand.

Bootstrap checks use cases whose exact bootstrap distribution can be enumerated: two rows resampled
with replacement give the four equally likely index pairs, two seeds likewise; the Monte Carlo
frequencies must then be within 5 binomial standard errors of the enumerated probabilities."""
from __future__ import annotations

import math

import numpy as np
import pytest

from curate.compare.paired import (bootstrap_differences, bootstrap_p, holm, outcome, paired_contrast,
                                   percentile_interval, point_difference, tost_p, win_rate)

B = 20_000


def _within(freq: float, prob: float, n: int = B) -> bool:
    return abs(freq - prob) <= 5 * math.sqrt(prob * (1 - prob) / n) + 1e-12


def test_holm_by_hand():
    p = {"a": 0.01, "b": 0.04, "c": 0.03}
    # sorted a .01, c .03, b .04; m = 3: a 3 x .01 = .03; c max(.03, 2 x .03) = .06; b max(.06, 1 x .04) = .06
    assert holm(p) == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    # one variant tried before counts as a fourth hypothesis: a .04, c max(.04, .09), b max(.09, .08)
    assert holm(p, extra=1) == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09})
    assert holm({"a": 0.6, "b": 0.7}) == {"a": 1.0, "b": 1.0}  # capped at 1
    assert holm({"only": 0.02}) == {"only": 0.02}


def test_point_difference_weights_tokens_within_a_set_and_sets_equally():
    arm = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])  # seed means 2, 2, 2
    base = np.array([[2.0, 2.0, 4.0]])
    tokens = np.array([1, 3, 10])
    sets = np.array(["x", "x", "y"])
    # set x: (1 x (2 - 2) + 3 x (2 - 2)) / 4 = 0; set y: 2 - 4 = -2; mean over sets: -1
    assert point_difference(arm, base, tokens, sets) == pytest.approx(-1.0)
    arm2 = np.array([[1.0, 4.0, 4.0]])
    # set x: (1 x (1 - 2) + 3 x (4 - 2)) / 4 = 5/4; set y: 0 -> 5/8
    assert point_difference(arm2, base, tokens, sets) == pytest.approx(5 / 8)


def test_bootstrap_of_two_rows_has_the_enumerated_distribution():
    arm, base = np.array([[-2.0, 0.0]]), np.zeros((1, 2))  # row differences -2 and 0, equal tokens
    d = bootstrap_differences(arm, base, np.array([1, 1]), np.array(["s", "s"]), samples=B, seed=3)
    # index pairs (0,0) -> -2, (0,1) and (1,0) -> -1, (1,1) -> 0
    assert set(np.round(d, 12).tolist()) == {-2.0, -1.0, 0.0}
    assert _within(np.mean(d == -2.0), 0.25) and _within(np.mean(d == -1.0), 0.5) and _within(np.mean(d == 0.0), 0.25)
    # p = 2 (#{d >= 0} + 1) / (B + 1), #{d >= 0} ~ B / 4
    assert abs(bootstrap_p(d) - 0.5) <= 2 * 5 * math.sqrt(0.25 * 0.75 / B) + 2 / B


def test_bootstrap_resamples_each_arms_seeds():
    arm, base = np.array([[0.0]]), np.array([[0.0], [2.0]])  # one row; the baseline's two seeds differ
    d = bootstrap_differences(arm, base, np.array([5]), np.array(["s"]), samples=B, seed=1)
    # seed pairs (0,0) -> mean 0, (0,1)/(1,0) -> 1, (1,1) -> 2: delta = 0 - mean
    assert _within(np.mean(d == 0.0), 0.25) and _within(np.mean(d == -1.0), 0.5) and _within(np.mean(d == -2.0), 0.25)
    assert percentile_interval(d) == (-2.0, 0.0)


def test_bootstrap_is_deterministic_and_collapses_without_spread():
    arm, base = np.array([[1.0, 1.5]]), np.array([[1.25, 1.75]])  # every row 0.25 better
    d = bootstrap_differences(arm, base, np.array([3, 7]), np.array(["a", "b"]), samples=500, seed=0)
    assert np.allclose(d, -0.25, rtol=0, atol=1e-12)
    rng = np.random.default_rng(9)
    arm, base = rng.normal(size=(3, 40)), rng.normal(size=(3, 40))
    tokens, sets = rng.integers(1, 50, 40), np.array(["a", "b"] * 20)
    first = bootstrap_differences(arm, base, tokens, sets, samples=300, seed=7)
    assert np.array_equal(first, bootstrap_differences(arm, base, tokens, sets, samples=300, seed=7))
    assert not np.array_equal(first, bootstrap_differences(arm, base, tokens, sets, samples=300, seed=8))


def test_p_values_and_equivalence_from_replicates_by_hand():
    r = np.array([-0.5, 0.1, 0.2, 0.6])
    assert bootstrap_p(r) == pytest.approx(2 * (1 + 1) / 5)  # one replicate <= 0, three >= 0
    assert tost_p(r, 0.5) == pytest.approx((1 + 1) / 5)  # one >= 0.5, one <= -0.5
    assert tost_p(r, 1.0) == pytest.approx(1 / 5)
    assert bootstrap_p(np.full(9, -1.0)) == pytest.approx(2 / 10)
    assert percentile_interval(np.arange(101.0)) == pytest.approx((2.5, 97.5), abs=1e-12)  # numpy's linear rule


def test_win_rate_counts_ties_as_half():
    assert win_rate(np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([[2.0, 2.0, 1.0, 5.0]])) == pytest.approx(2.5 / 4)
    # seed means first: arm (1+3)/2 = 2 against 2.5 wins
    assert win_rate(np.array([[1.0], [3.0]]), np.array([[2.5]])) == 1.0


def test_paired_contrast_and_outcome():
    rng = np.random.default_rng(0)
    rows = rng.normal(2.0, 0.3, size=(1, 200))  # rows differ a lot, seeds little: the case pairing is for
    base = rows + rng.normal(0, 0.002, size=(4, 200))
    better = rows - 0.05 + rng.normal(0, 0.002, size=(4, 200))
    c = paired_contrast(better, base, np.full(200, 10), np.array(["s"] * 200), margin=0.01, samples=2000, seed=0)
    assert c["difference"] == pytest.approx(point_difference(better, base, np.full(200, 10), np.array(["s"] * 200)))
    assert c["ci95"][0] < c["difference"] < c["ci95"][1] < 0 and c["win_rate"] > 0.9
    assert c["p"] == pytest.approx(2 / 2001) and c["p_equivalence"] == pytest.approx(1.0)
    assert outcome({**c, "p_holm": c["p"], "p_equivalence_holm": 1.0}) == "better"
    assert outcome({"difference": 0.01, "p_holm": 0.01, "p_equivalence_holm": 1.0}) == "worse"
    assert outcome({"difference": 0.001, "p_holm": 0.5, "p_equivalence_holm": 0.01}) == "equivalent"
    assert outcome({"difference": 0.001, "p_holm": 0.5, "p_equivalence_holm": 0.2}) == "inconclusive"
