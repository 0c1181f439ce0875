"""Filter-then-Weight: optimizer-aware online selection (docs/online-selection.md §7, (15)-(19)).

With per-sample gradients g_i, target gradient g_T and Adam preconditioner D, the update-matching
objective is F(S, w) = ‖D^½(Σ_{i∈S} w_i g_i − λ g_T)‖² = wᵀK_SSw − 2λ b_Sᵀw + const, where
K_ij = g_iᵀ D g_j (redundancy kernel) and b_i = g_iᵀ D g_T (alignment).

1. Filter (greedy): from S = ∅, repeatedly add argmax_j gain(j|S) = η b_j − η² Σ_{s∈S} K_sj
   (optionally − ½η² K_jj, and only rows with b_j > 0).
2. Weight (NNLS): w* = argmin_{w ≥ 0} F(S, w) on the filtered set (Lawson–Hanson,
   `scipy.optimize.nnls`, solved in the |S|×|S| kernel form so the gradient dimension never
   enters); if more than k weights are non-zero, keep the k largest and refit.
3. Loss weights: rows with w = 0 are dropped; how the rest are scaled is unconfirmed [U], hence
   `normalized_loss_weights(mode=...)`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.optimize import nnls


def _array(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def greedy_filter(b: np.ndarray, K: np.ndarray, m: int, lr: float, *, require_positive: bool = False,
                  self_term: bool = False) -> list[int]:
    """Up to m picks, in order, maximising η b_j − η² Σ_{s∈S} K_sj (− ½η² K_jj with `self_term`)."""
    gain = lr * b - (0.5 * lr**2 * np.diag(K) if self_term else 0.0)
    available = b > 0 if require_positive else np.ones(len(b), dtype=bool)
    picks: list[int] = []
    while len(picks) < m and available.any():
        j = int(np.argmax(np.where(available, gain, -np.inf)))
        picks.append(j)
        available[j] = False
        gain = gain - lr**2 * K[j]
    return picks


def nnls_kernel(K: np.ndarray, c: np.ndarray) -> np.ndarray:
    """argmin_{w ≥ 0} wᵀKw − 2cᵀw for a PSD K, with c in K's range (c = λ b_S is).

    K = QΛQᵀ gives wᵀKw − 2cᵀw = ‖Λ^½Qᵀw − Λ^−½Qᵀc‖² − const over the non-null eigenvectors, an
    ordinary NNLS problem of size |S|."""
    if len(c) == 0:
        return np.zeros(0)
    lam, Q = np.linalg.eigh((K + K.T) / 2)
    keep = lam > max(lam.max(), 0.0) * 1e-12
    if not keep.any():
        return np.zeros(len(c))
    root = np.sqrt(lam[keep])
    A = root[:, None] * Q[:, keep].T
    y = (Q[:, keep].T @ c) / root
    w, _ = nnls(A, y, maxiter=50 * len(c))
    return w


def filter_then_weight_features(features, target_feature, k: int, lr: float, **options) -> tuple[list[int], np.ndarray]:
    """Filter-then-Weight on preconditioned (optionally projected) features u_i = D^½ g_i and
    u_T = D^½ g_T: K = UUᵀ, b = U u_T. Returns the filter's picks in pick order and their raw NNLS
    weights in the same order (zeros included); the filter keeps `candidates` (default k) rows."""
    U, u = _array(features), _array(target_feature)
    if U.ndim != 2 or u.shape != (U.shape[1],):
        raise ValueError(f"features must be N×P and the target P, got {U.shape} and {u.shape}")
    return filter_then_weight_kernel(U @ U.T, U @ u, k, lr, **options)


def filter_then_weight_kernel(K, b, k: int, lr: float, *, lam: float = 1.0, candidates: int | None = None,
                              require_positive: bool = False, self_term: bool = False) -> tuple[list[int], np.ndarray]:
    """Filter-then-Weight from the kernel K (N×N) and the alignments b (N) alone."""
    K, b = _array(K), _array(b)
    if b.ndim != 1 or K.shape != (len(b), len(b)):
        raise ValueError(f"K must be N×N and b N, got {K.shape} and {b.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if candidates is not None and candidates < 1:
        raise ValueError(f"candidates must be >= 1 (or None for k), got {candidates}")
    if lr < 0 or lam <= 0:
        raise ValueError(f"lr must be >= 0 and lam > 0, got lr={lr}, lam={lam}")
    selected = greedy_filter(b, K, min(candidates or k, len(b)), lr, require_positive=require_positive, self_term=self_term)
    idx = np.array(selected, dtype=int)
    weights = nnls_kernel(K[np.ix_(idx, idx)], lam * b[idx])
    if np.count_nonzero(weights) > k:  # keep the k largest, refit on them
        top = np.sort(np.argsort(-weights, kind="stable")[:k])
        refit = np.zeros_like(weights)
        refit[top] = nnls_kernel(K[np.ix_(idx[top], idx[top])], lam * b[idx[top]])
        weights = refit
    return selected, weights


def filter_then_weight(cand_grads, target_grad, precond, k: int, lr: float, **options) -> tuple[list[int], np.ndarray]:
    """Filter-then-Weight on raw gradients: `cand_grads` N×P, `target_grad` P, `precond` P (the
    diagonal D). Returns (selected in pick order, raw NNLS weights in the same order, zeros included)."""
    precond = _array(precond)
    if (precond < 0).any():
        raise ValueError("the preconditioner diagonal must be non-negative")
    root = np.sqrt(precond)
    return filter_then_weight_features(_array(cand_grads) * root, _array(target_grad) * root, k, lr, **options)


def objective(features, target_feature, selected: Sequence[int], weights, lam: float = 1.0) -> float:
    """F(S, w) = ‖Σ_{i∈S} w_i u_i − λ u_T‖² (in the preconditioned metric)."""
    U, u = _array(features), _array(target_feature)
    residual = U[list(selected)].T @ _array(weights) - lam * u if len(selected) else -lam * u
    return float(residual @ residual)


WEIGHT_MODES = ("mean", "sum", "k")


def normalized_loss_weights(weights, mode: str = "mean", *, count: int | None = None) -> np.ndarray:
    """Loss weights from raw NNLS weights (same order; zeros stay zero, i.e. dropped rows).

    - "mean": scaled so the non-zero weights average 1 (the step keeps plain training's loss scale);
    - "sum": the raw weights (λ sets the scale);
    - "k": scaled so Σw = `count` (default: len(weights), the filtered rows, zeros included).
    All-zero weights stay zero (nothing to train on this step)."""
    w = _array(weights)
    if mode not in WEIGHT_MODES:
        raise ValueError(f"mode must be one of {WEIGHT_MODES}, got {mode!r}")
    if (w < 0).any():
        raise ValueError("NNLS weights must be non-negative")
    total = w.sum()
    if mode == "sum" or total == 0:
        return w.copy()
    target = np.count_nonzero(w) if mode == "mean" else (len(w) if count is None else count)
    return w * (target / total)
