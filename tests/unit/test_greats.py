"""GREATS greedy selection with its code's semantics: a hand-checked example (docs/online-selection.md (20)),
picks and score trace."""
from __future__ import annotations

import numpy as np
import pytest

from curate.selection.filter_weight import filter_then_weight
from curate.selection.greats import greats_select

CANDS = np.array([[1, 0, 0.5], [0.9, 0.1, 0.4], [0, 1, 0], [-0.5, 0.2, 0], [0.3, 0.3, 0.3]])
VALS = np.array([[1, 0.5, 0], [0.8, 0.3, 0.2]])
KERNEL = [[1.25, 1.1, 0, -0.5, 0.45], [1.1, 0.98, 0.1, -0.43, 0.42], [0, 0.1, 1, 0.2, 0.3],
          [-0.5, -0.43, 0.2, 0.29, -0.09], [0.45, 0.42, 0.3, -0.09, 0.27]]


def test_example_intermediates():
    np.testing.assert_allclose((CANDS @ VALS.T).mean(axis=1), [0.95, 0.89, 0.40, -0.37, 0.42])
    np.testing.assert_allclose(CANDS @ CANDS.T, KERNEL)


def test_example_picks_and_score_trace():
    tracin = (CANDS @ VALS.T).mean(axis=1)
    picks, trace = greats_select(tracin, CANDS @ CANDS.T, 3, 0.5, return_scores=True)
    assert picks == [0, 2, 1]  # sample 1 (second-best raw score) is delayed: redundant with sample 0
    inf = -np.inf
    np.testing.assert_allclose(trace, [[0.475, 0.445, 0.2, -0.185, 0.21],
                                       [inf, 0.17, 0.2, -0.06, 0.0975],
                                       [inf, 0.145, inf, -0.11, 0.0225]], atol=1e-12)
    assert greats_select(tracin, CANDS @ CANDS.T, 3, 0.5) == picks


def test_without_interactions_greats_is_a_top_k():
    tracin = np.array([0.3, -0.1, 0.9, 0.5])
    assert greats_select(tracin, np.zeros((4, 4)), 3, 1.0) == [2, 3, 0]
    assert greats_select(tracin, np.zeros((4, 4)), 10, 1.0) == [2, 3, 0, 1]  # k > N: every sample once


def test_filter_with_identity_preconditioner_is_greats():
    selected, _ = filter_then_weight(CANDS, VALS.mean(axis=0), np.ones(3), k=3, lr=0.5)
    assert selected == [0, 2, 1]


def test_shape_errors():
    with pytest.raises(ValueError, match="N×N"):
        greats_select(np.ones(3), np.ones((3, 2)), 1, 0.1)
