"""Filter-then-Weight: greedy filter against brute force, redundancy, NNLS KKT conditions, loss-weight modes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.selection.filter_weight import (
    filter_then_weight,
    filter_then_weight_features,
    filter_then_weight_kernel,
    greedy_filter,
    nnls_kernel,
    normalized_loss_weights,
    objective,
)


def test_greedy_filter_matches_brute_force_marginal_gains():
    rng = np.random.default_rng(0)
    U = rng.normal(size=(12, 5))
    b, K = U @ rng.normal(size=5), U @ U.T
    picks = greedy_filter(b, K, 6, lr=0.3)
    chosen: list[int] = []
    for _ in range(6):
        gains = {j: 0.3 * b[j] - 0.09 * sum(K[s, j] for s in chosen) for j in range(12) if j not in chosen}
        chosen.append(max(gains, key=gains.get))
    assert picks == chosen
    positive = greedy_filter(b, K, 12, lr=0.3, require_positive=True)
    assert set(positive) == {j for j in range(12) if b[j] > 0}


def test_redundant_duplicate_is_delayed_and_gets_no_weight():
    # candidate 1 duplicates candidate 0; candidate 2 covers the rest of the target
    target = np.array([1.0, 1.0, 0.0])
    cands = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    selected, weights = filter_then_weight_features(cands, target, k=3, lr=1.0)
    assert selected[:2] in ([0, 2], [2, 0])  # the copy is not picked second
    w = dict(zip(selected, weights))
    assert w[0] + w.get(1, 0.0) == pytest.approx(1.0) and w[2] == pytest.approx(1.0)
    assert w.get(3, 0.0) == 0.0  # orthogonal to the target: weight 0 (dropped from the step)


def kkt_violation(U, u, lam, selected, weights):
    """max violation of w >= 0, grad >= 0 at zeros, grad = 0 on the support, for min ||U_S^T w - lam u||^2."""
    A = U[selected].T
    grad = 2 * A.T @ (A @ weights - lam * u)
    scale = max(np.abs(2 * A.T @ (lam * u)).max(), 1e-12)
    on = weights > 1e-12
    return max(-weights.min(initial=0.0), -(grad[~on].min(initial=0.0)) / scale, np.abs(grad[on]).max(initial=0.0) / scale)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 9), st.integers(1, 6))
def test_nnls_weights_satisfy_kkt(seed, n, k):
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(n, 7))
    if n > 3:
        U[3] = U[1] * 2  # a redundant candidate
    u = rng.normal(size=7)
    selected, weights = filter_then_weight_features(U, u, k=min(k, n), lr=0.1, lam=1.5, candidates=min(k, n))
    assert len(selected) == len(weights) == min(k, n)
    assert kkt_violation(U, u, 1.5, selected, weights) < 1e-6
    assert objective(U, u, selected, weights, 1.5) <= objective(U, u, [], [], 1.5) + 1e-9


def test_more_candidates_than_budget_keeps_at_most_k_weights():
    rng = np.random.default_rng(3)
    U = np.abs(rng.normal(size=(10, 4)))  # all aligned: NNLS would use many
    u = U.sum(axis=0)
    selected, weights = filter_then_weight_features(U, u, k=2, lr=0.1, candidates=8)
    assert len(selected) == 8 and np.count_nonzero(weights) <= 2
    assert kkt_violation(U[[s for s, w in zip(selected, weights) if w > 0]], u, 1.0,
                         list(range(np.count_nonzero(weights))), weights[weights > 0]) < 1e-6


def test_nnls_kernel_matches_scipy_nnls_on_the_stacked_problem():
    from scipy.optimize import nnls

    rng = np.random.default_rng(7)
    A = rng.normal(size=(30, 5))
    y = rng.normal(size=30)
    np.testing.assert_allclose(nnls_kernel(A.T @ A, A.T @ y), nnls(A, y)[0], atol=1e-8)


def test_preconditioner_scales_features():
    g = np.array([[1.0, 2.0], [3.0, -1.0]])
    sel_a, w_a = filter_then_weight(g, np.array([1.0, 0.5]), np.array([4.0, 1.0]), k=2, lr=0.1)
    sel_b, w_b = filter_then_weight_features(g * [2.0, 1.0], np.array([2.0, 0.5]), k=2, lr=0.1)
    assert sel_a == sel_b and np.allclose(w_a, w_b)
    with pytest.raises(ValueError, match="N×P"):
        filter_then_weight_features(g, np.ones(3), k=1, lr=0.1)


def test_greedy_self_term_and_positive_filter():
    b = np.array([1.0, 0.9, -0.2])
    K = np.diag([10.0, 0.1, 1.0])  # sample 0: best alignment but a large own norm
    assert greedy_filter(b, K, 1, lr=0.5) == [0]
    assert greedy_filter(b, K, 1, lr=0.5, self_term=True) == [1]  # 0.5 − 1.25 < 0.45 − 0.0125
    assert greedy_filter(b, K, 3, lr=0.5, require_positive=True) == [0, 1]  # never a row with b <= 0


def test_torch_inputs_and_kernel_form_agree():
    rng = np.random.default_rng(11)
    U, u = rng.normal(size=(6, 9)), rng.normal(size=9)
    sel_np, w_np = filter_then_weight_features(U, u, k=3, lr=0.2, candidates=5)
    sel_t, w_t = filter_then_weight_features(torch.tensor(U, dtype=torch.float32), torch.tensor(u, dtype=torch.float32), k=3, lr=0.2, candidates=5)
    sel_k, w_k = filter_then_weight_kernel(U @ U.T, U @ u, k=3, lr=0.2, candidates=5)
    assert sel_np == sel_t == sel_k and len(sel_np) == 5
    # float32 inputs: the weights solve a least-squares problem over the selected rows, so they carry
    # the inputs' relative rounding (~n * eps, n = 9 features) times the selected Gram matrix's condition
    kappa = np.linalg.cond((U @ U.T)[np.ix_(sel_np, sel_np)])
    np.testing.assert_allclose(w_t, w_np, rtol=0, atol=kappa * U.shape[1] * np.finfo(np.float32).eps * np.abs(w_np).max())
    np.testing.assert_allclose(w_k, w_np, atol=1e-10)
    with pytest.raises(ValueError, match="k must be"):
        filter_then_weight_kernel(U @ U.T, U @ u, k=0, lr=0.2)
    with pytest.raises(ValueError, match="non-negative"):
        filter_then_weight(U, u, -np.ones(9), k=1, lr=0.2)


def test_normalized_loss_weights():
    w = np.array([0.0, 0.5, 1.5, 0.0])
    np.testing.assert_allclose(normalized_loss_weights(w), [0, 0.5, 1.5, 0])  # already mean 1 over kept rows
    np.testing.assert_allclose(normalized_loss_weights(w * 3, "mean"), [0, 0.5, 1.5, 0])
    np.testing.assert_allclose(normalized_loss_weights(w * 3, "sum"), w * 3)
    np.testing.assert_allclose(normalized_loss_weights(w, "k"), [0, 1, 3, 0])  # Σw = 4 rows
    np.testing.assert_allclose(normalized_loss_weights(w, "k", count=3), [0, 0.75, 2.25, 0])
    assert normalized_loss_weights(np.zeros(3)).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="mode"):
        normalized_loss_weights(w, "max")
    with pytest.raises(ValueError, match="non-negative"):
        normalized_loss_weights([-1.0, 2.0])


def test_weights_equal_scipy_nnls_on_the_preconditioned_gradients():
    from scipy.optimize import nnls

    rng = np.random.default_rng(5)
    G, g_t, D = rng.normal(size=(8, 20)), rng.normal(size=20), rng.uniform(0.1, 3.0, size=20)
    selected, weights = filter_then_weight(G, g_t, D, k=5, lr=0.05, lam=2.0)
    A = (np.sqrt(D) * G[selected]).T
    np.testing.assert_allclose(weights, nnls(A, 2.0 * np.sqrt(D) * g_t)[0], atol=1e-9)
    assert kkt_violation(G * np.sqrt(D), g_t * np.sqrt(D), 2.0, selected, weights) < 1e-8
