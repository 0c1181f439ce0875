"""IterIT greedy selection and per-round reordering, against hand-checked examples
(docs/iterit.md §4-§6) and property tests (incremental == naive, decay 1 == static ranking, bookkeeping)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.selection.iterit import (
    greedy_picks,
    greedy_select,
    greedy_select_detailed,
    greedy_select_naive,
    reorder,
    rescore_window,
    row_informativeness,
    selection_budget,
)
from curate.selection.tfidf import fit_tfidf

WORDS = ["red", "blue", "green", "the", "of", "cat", "x"]  # "x" is too short to be a token
COMPLEXITIES = [0.0, 0.25, 0.5, 0.5, 0.75, 0.98828125, 0.3, -0.5]

documents = st.lists(st.lists(st.sampled_from(WORDS), max_size=7).map(" ".join), max_size=25)
decays = st.one_of(st.sampled_from([0.0, 0.1, 0.5, 1.0]), st.floats(0.0, 1.0))


@st.composite
def selection_problem(draw):
    docs = draw(documents)
    c = draw(st.lists(st.one_of(st.sampled_from(COMPLEXITIES), st.floats(0.0, 1.0)), min_size=len(docs), max_size=len(docs)))
    return docs, c, draw(st.integers(0, len(docs) + 2)), draw(decays)


# --- two-document TF-IDF example (docs/iterit.md (8)-(11)) ----------------------------------------

def test_two_documents_tfidf_features_idf_and_rows():
    t = fit_tfidf(["red blue", "red green"])
    assert t.features == ["blue", "green", "red", "red blue", "red green"]
    np.testing.assert_allclose(t.idf, [1.405465, 1.405465, 1.0, 1.405465, 1.405465], atol=1e-6)
    np.testing.assert_allclose(t.matrix.toarray()[0], [0.631667, 0, 0.449436, 0.631667, 0], atol=1e-6)
    sums = row_informativeness(t.matrix, np.ones(len(t.features)))
    np.testing.assert_allclose(sums, [1.712771, 1.712771], atol=1e-6)
    np.testing.assert_allclose(np.array([0.5, 0.75]) * sums, [0.856385, 1.284578], atol=1e-6)


@pytest.mark.parametrize("naive", [False, True])
def test_two_documents_greedy_order_and_scores(naive):
    picks = greedy_select_detailed(["red blue", "red green"], [0.5, 0.75], 2, 0.1, naive=naive)
    assert [p.index for p in picks] == [1, 0]
    assert picks[0].score == pytest.approx(1.284578, abs=1e-6)
    assert picks[1].informativeness == pytest.approx(1.308278, abs=1e-6)  # column "red" x 0.1
    assert picks[1].score == pytest.approx(0.654139, abs=1e-6)


def test_eos_string_is_part_of_the_document():
    # The caller appends EOS; it is tokenised (end_of_text) and flips this pick (docs/iterit.md §4).
    eos = "<|end_of_text|>"
    assert fit_tfidf(["blue" + eos]).features == ["blue", "blue end_of_text", "end_of_text"]
    assert greedy_select(["blue", "sky blue"], [0.65, 0.42], 1, 0.1) == [1]
    assert greedy_select(["blue" + eos, "sky blue" + eos], [0.65, 0.42], 1, 0.1) == [0]


# --- the reference loop, literally (dense): column-wise in-place decay, picked row zeroed ---------

def _reference_dense_greedy(docs, c, k, decay):
    x = fit_tfidf(docs).matrix.toarray()
    out = []
    for _ in range(k):
        s = np.asarray(c) * x.sum(axis=1)
        j = int(np.argmax(s))
        out.append(j)
        cols = np.flatnonzero(x[j])
        x[:, cols] *= decay
        x[j, cols] = 0.0
    return out


def test_matches_the_reference_loop_when_scores_stay_positive():
    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(40)]
    docs = [" ".join(rng.choice(vocab, size=rng.integers(3, 12))) for _ in range(60)]
    c = rng.uniform(0.05, 0.99, size=60)
    for decay in (0.1, 0.5, 0.9):
        assert greedy_select(docs, c, 20, decay) == _reference_dense_greedy(docs, c, 20, decay)


# --- edge cases -----------------------------------------------------------------------------------

def test_edge_cases():
    assert greedy_select([], [], 5, 0.1) == []
    assert greedy_select(["red blue", "green"], [0.5, 0.4], 0, 0.1) == []
    # all documents empty of tokens: sklearn's empty vocabulary -> informativeness 0 -> by complexity
    assert greedy_select(["", "a b", "!"], [0.2, 0.7, 0.7], 5, 0.1) == [1, 2, 0]
    with pytest.raises(ValueError, match="NaN"):
        greedy_select(["red", "blue"], [0.5, math.nan], 1, 0.1)
    with pytest.raises(ValueError):
        greedy_select(["red", "blue"], [0.5], 1, 0.1)
    with pytest.raises(ValueError):
        greedy_select(["red", "blue"], [0.5, 0.4], 1, 1.5)


def test_exhausted_scores_fill_by_complexity_without_duplicates():
    # decay 0: after "red blue" is picked its duplicate scores 0; the reference would re-pick index 0.
    docs = ["red blue", "red blue", "green cat", "red blue"]
    c = [0.9, 0.8, 0.1, 0.85]
    assert greedy_select(docs, c, 4, 0.0) == [0, 2, 3, 1]
    picks = greedy_select_detailed(docs, c, 4, 0.0)
    assert [p.score for p in picks[2:]] == [0.0, 0.0]


def test_ties_go_to_the_lowest_index():
    assert greedy_select(["red blue", "green cat", "red blue"], [0.5, 0.5, 0.5], 3, 0.5) == [0, 1, 2]
    assert greedy_select(["green cat", "red blue", "red blue"], [0.5, 0.5, 0.5], 3, 1.0) == [0, 1, 2]


def test_incremental_equals_naive_on_a_larger_pool():
    rng = np.random.default_rng(7)
    vocab = [f"w{i}" for i in range(200)]
    p = 1.0 / np.arange(1, 201)
    p /= p.sum()
    docs = [" ".join(rng.choice(vocab, size=rng.integers(5, 30), p=p)) for _ in range(400)]
    c = np.round(rng.uniform(0, 1, size=400) * 64) / 64  # coarse values: many exact ties
    m = fit_tfidf(docs).matrix
    for decay in (0.0, 0.1, 0.7):
        assert greedy_picks(m, c, 150, decay) == greedy_picks(m, c, 150, decay, naive=True)


# --- properties -----------------------------------------------------------------------------------

@settings(max_examples=250, deadline=None)
@given(selection_problem())
def test_incremental_equals_naive(problem):
    docs, c, k, decay = problem
    fast = greedy_select_detailed(docs, c, k, decay)
    assert fast == greedy_select_detailed(docs, c, k, decay, naive=True)
    assert [p.index for p in fast] == greedy_select_naive(docs, c, k, decay)


@settings(max_examples=100, deadline=None)
@given(selection_problem())
def test_exactly_min_k_n_distinct_picks(problem):
    docs, c, k, decay = problem
    picks = greedy_select(docs, c, k, decay)
    assert len(picks) == min(k, len(docs))
    assert len(set(picks)) == len(picks)
    assert all(0 <= i < len(docs) for i in picks)


@settings(max_examples=100, deadline=None)
@given(selection_problem())
def test_decay_one_is_a_static_stable_ranking(problem):
    docs, c, k, _ = problem
    m = fit_tfidf(docs).matrix
    product = np.asarray(c, dtype=float) * row_informativeness(m, np.ones(m.shape[1]))
    positive = sorted((i for i in range(len(docs)) if product[i] > 0), key=lambda i: -product[i])
    rest = sorted((i for i in range(len(docs)) if not product[i] > 0), key=lambda i: -c[i])
    assert greedy_select(docs, c, k, 1.0) == (positive + rest)[:k]


def test_row_informativeness_is_the_row_sum():
    rng = np.random.default_rng(0)
    m = fit_tfidf([" ".join(rng.choice(WORDS[:-1], size=6)) for _ in range(30)]).matrix
    scale = rng.uniform(0, 1, size=m.shape[1])
    expected = np.asarray(m.multiply(scale).sum(axis=1)).ravel()
    np.testing.assert_allclose(row_informativeness(m, scale), expected, rtol=1e-12)
    rows = np.array([29, 3, 3, 0])
    assert row_informativeness(m, scale, rows).tolist() == row_informativeness(m, scale)[rows].tolist()


# --- budget, window and reorder bookkeeping (docs/iterit.md (13)-(15)) ----------------------------

def test_budget_and_window():
    assert selection_budget(40, 0.05) == 2 and rescore_window(40, 2, 3) == 6
    assert selection_budget(52002, 0.05) == 2600 and rescore_window(52002, 2600, 3) == 7800
    assert rescore_window(40, 2, 1) == 40  # update_ratio <= 1: re-score everything
    assert selection_budget(100, 7) == 7  # ratio > 1: absolute count


def test_reorder_window_layout():
    n, k = 40, 2
    scores = [0.01 * i for i in range(n)]  # higher position -> higher score, all < 1
    for p in (3, 10, 25):
        scores[p] = 1.0 if p != 10 else 1.6484375
    scores[7] = math.nan
    order = reorder(list(range(n)), scores, None, window=n, k=k, mode="ifd", decay=0.1)
    assert order[:6] == [39, 38, 3, 10, 25, 37]  # [s0, s1, o0, o1, o2, r0]
    assert sorted(order) == [p for p in range(n) if p != 7]
    # round 2: re-score the window of 6 only; the rest keeps its order
    window = rescore_window(n, k, 3)
    rescored = list(scores)
    rescored[39], rescored[38], rescored[3], rescored[37] = 0.2, 0.9, 0.5, 0.95
    again = reorder(order, rescored, None, window=window, k=k, mode="ifd", decay=0.1)
    assert again[:window] == [37, 38, 10, 25, 3, 39]
    assert again[window:] == order[window:]


def test_reorder_both_uses_the_diversity_greedy():
    responses = ["red blue", "red blue", "green cat", "sky"]
    scores = [0.9, 0.85, 0.5, 1.0]
    ifd = reorder([0, 1, 2, 3], scores, responses, window=4, k=2, mode="ifd", decay=0.0)
    both = reorder([0, 1, 2, 3], scores, responses, window=4, k=2, mode="both", decay=0.0)
    assert ifd == [0, 1, 3, 2]
    assert both == [0, 2, 3, 1]  # the duplicate loses its informativeness and goes after the parked row


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from([0.5, 0.75, 1.0, 1.5, math.nan, 0.0]), st.floats(0, 2)), max_size=20),
    st.integers(0, 25), st.integers(0, 8), st.sampled_from(["ifd", "both"]), st.randoms(use_true_random=False),
)
def test_reorder_is_a_permutation_without_window_nans(scores, window, k, mode, rnd):
    order = list(range(len(scores)))
    rnd.shuffle(order)
    responses = [" ".join(rnd.choice(WORDS) for _ in range(3)) for _ in scores]
    out = reorder(order, scores, responses, window, k, mode, 0.1)
    head = order[:window]
    kept = [p for p in head if not math.isnan(scores[p])] + order[window:]
    assert sorted(out) == sorted(kept)
    eligible = [p for p in head if scores[p] < 1]
    n_sel = min(k, len(eligible))
    assert set(out[:n_sel]) <= set(eligible)
    parked = [p for p in head if scores[p] >= 1]
    assert out[n_sel: n_sel + len(parked)] == parked
    assert out[len(out) - len(order[window:]):] == order[window:]
    if mode == "ifd":
        chosen = [scores[p] for p in out[:n_sel]]
        assert chosen == sorted(chosen, reverse=True)



def test_a_budget_of_no_row_is_refused_with_the_ratio_that_gives_one():
    from curate.selection.iterit import BudgetTooSmall

    with pytest.raises(BudgetTooSmall, match=r"floor\(0.0001 x 200\) = 0 .* at least 0.005 "):
        selection_budget(200, 0.0001)
    assert selection_budget(200, 0.005) == 1
    with pytest.raises(BudgetTooSmall, match="empty"):
        selection_budget(0, 5)
    for ratio in (float("inf"), float("nan"), 0.0):
        with pytest.raises(BudgetTooSmall, match="must be a finite number > 0"):
            selection_budget(200, ratio)


@given(st.integers(min_value=1, max_value=10**7))
def test_the_suggested_ratio_gives_one_row_and_is_within_a_tenth_of_the_least(n):
    from curate.selection.iterit import smallest_ratio

    share = smallest_ratio(n)
    assert selection_budget(n, share) >= 1 and share <= 1
    assert share * n < 1.1 + 1e-9 or n < 10  # two significant digits, rounded up
