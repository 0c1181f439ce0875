"""Filter-then-Weight, GREATS, the Adam preconditioner (TV5, TV7), NNLS KKT conditions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.selection.filter_weight import filter_then_weight, filter_then_weight_features, greedy_filter, nnls_kernel, objective
from curate.selection.greats import greats_select
from curate.training.adam_precond import (
    adam_preconditioner,
    data_dependent_update,
    exact_adam_step,
    linearized_adam_step,
)

# --- GREATS (TV5) -------------------------------------------------------------------------------

CANDS = np.array([[1, 0, 0.5], [0.9, 0.1, 0.4], [0, 1, 0], [-0.5, 0.2, 0], [0.3, 0.3, 0.3]])
VALS = np.array([[1, 0.5, 0], [0.8, 0.3, 0.2]])


def test_tv5_greats_greedy():
    tracin = (CANDS @ VALS.T).mean(axis=1)
    np.testing.assert_allclose(tracin, [0.95, 0.89, 0.40, -0.37, 0.42])
    kernel = CANDS @ CANDS.T
    assert greats_select(tracin, kernel, 3, 0.5) == [0, 2, 1]
    # the trace: after picking 0, sample 1 (second-best raw score) is delayed by its redundancy with 0
    scores = 0.5 * tracin - 0.25 * kernel[0]
    np.testing.assert_allclose(scores[1:], [0.17, 0.2, -0.06, 0.0975])


def test_filter_with_identity_preconditioner_is_greats():
    g_t = VALS.mean(axis=0)
    selected, _ = filter_then_weight(CANDS, g_t, np.ones(3), k=3, lr=0.5)
    assert selected == [0, 2, 1]


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


# --- Adam (TV7) ---------------------------------------------------------------------------------

TV7 = dict(lr=1e-3, step=3, beta1=0.9, beta2=0.999, eps=1e-8)
M, V, G = (torch.tensor(x, dtype=torch.float64) for x in ([0.01, -0.02], [1e-4, 2e-4], [0.05, 0.01]))


def test_tv7_adam_steps():
    torch.testing.assert_close(exact_adam_step(M, V, G, **TV7), torch.tensor([-0.000279480935, 0.000242893929], dtype=torch.float64), rtol=1e-8, atol=0)
    torch.testing.assert_close(linearized_adam_step(M, V, G, variant="A", **TV7), torch.tensor([-0.000230975078, 0.000198322056], dtype=torch.float64), rtol=1e-8, atol=0)
    torch.testing.assert_close(linearized_adam_step(M, V, G, variant="B", **TV7), torch.tensor([-0.000282956334, 0.000242954706], dtype=torch.float64), rtol=1e-8, atol=0)
    torch.testing.assert_close(data_dependent_update(G, V, variant="A", step=3, beta1=0.9, beta2=0.999, eps=1e-8),
                               torch.tensor([0.082491099286, 0.011666003291], dtype=torch.float64), rtol=1e-8, atol=0)


def test_preconditioner_reads_torch_adam_state():
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    assert torch.equal(adam_preconditioner(opt, [p])[0], torch.ones(2))  # before the first step: identity
    for g in ([0.3, -0.1], [0.2, 0.4]):
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    v = opt.state[p]["exp_avg_sq"]
    torch.testing.assert_close(adam_preconditioner(opt, [p], variant="A")[0].double(), 1 / ((v / (1 - 0.999**2)).sqrt() + 1e-8))
    torch.testing.assert_close(adam_preconditioner(opt, [p], variant="B")[0].double(), 1 / ((0.999 * v / (1 - 0.999**3)).sqrt() + 1e-8))
    # the linearised step with the preconditioner equals the exact next step up to the dropped (1-β2)g² term
    m, g = opt.state[p]["exp_avg"], torch.tensor([0.01, 0.02], dtype=torch.float64)
    exact = exact_adam_step(m, v, g, lr=1e-3, step=3, beta1=0.9, beta2=0.999, eps=1e-8)
    lin = linearized_adam_step(m, v, g, lr=1e-3, step=3, beta1=0.9, beta2=0.999, eps=1e-8, variant="B")
    torch.testing.assert_close(lin, exact, rtol=1e-2, atol=0)
    with pytest.raises(ValueError, match="not managed"):
        adam_preconditioner(opt, [torch.nn.Parameter(torch.zeros(1))])
