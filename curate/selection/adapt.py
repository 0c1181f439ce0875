"""ADAPT: online per-sample loss weights from similarity to an anchor set (docs/online-selection.md §4).

φ(x) = normalize(Σ_j (j / Σ_k k) h_j(x)): position-weighted mean of the last-layer hidden states
over the n real tokens of x (the j-th real token weighs j/Σk; padding excluded, left or right),
L2-normalised. The anchors' centroid c̄ = mean_v φ(v) (not re-normalised), so a row's score
s = φ(x)·c̄ is its mean cosine to the anchors. Weight w = clip(σ(s/τ), w_min, w_max), optionally on
standardised scores (s − mean)/std: raw cosines of anisotropic hidden states sit well above 0, which
puts every σ(s) near the same value (docs/online-selection.md §4, end).
"""
from __future__ import annotations

import torch


def pooled_embeddings(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """B×d position-weighted, L2-normalised mean of B×T×d hidden states over the real tokens of `mask`."""
    m = mask.to(hidden.dtype)
    rank = torch.cumsum(m, dim=1) * m  # 1, 2, ..., n on real tokens, 0 on padding
    weights = rank / rank.sum(dim=1, keepdim=True).clamp(min=1)
    pooled = (weights.unsqueeze(-1) * hidden).sum(dim=1)
    return torch.nn.functional.normalize(pooled, dim=-1)


def anchor_centroid(anchor_hidden: torch.Tensor, anchor_mask: torch.Tensor) -> torch.Tensor:
    """c̄ = mean of the anchors' pooled embeddings (d), not re-normalised."""
    return pooled_embeddings(anchor_hidden, anchor_mask).mean(dim=0)


def adapt_scores_from_centroid(hidden: torch.Tensor, mask: torch.Tensor, centroid: torch.Tensor) -> torch.Tensor:
    """s_i = φ(x_i)·c̄ (the cached-centroid form)."""
    return pooled_embeddings(hidden, mask) @ centroid.to(hidden.dtype)


def adapt_scores(hidden: torch.Tensor, mask: torch.Tensor, anchor_hidden: torch.Tensor,
                 anchor_mask: torch.Tensor) -> torch.Tensor:
    """B scores: each row's mean cosine to the anchor set."""
    return adapt_scores_from_centroid(hidden, mask, anchor_centroid(anchor_hidden, anchor_mask))


def adapt_weights(scores: torch.Tensor, tau: float = 1.0, w_min: float = 0.0, w_max: float = 10.0,
                  standardize: bool = False, eps: float = 1e-8) -> torch.Tensor:
    """w = clip(σ(s / max(τ, ε)), w_min, w_max), on (s − mean)/std when `standardize` (std clamped
    to ≥ ε; a single score is left as is). Returns the scores' floating dtype (float32 otherwise),
    on their device."""
    if w_min > w_max:
        raise ValueError(f"w_min must be <= w_max, got {w_min} > {w_max}")
    s = torch.as_tensor(scores)
    if not s.is_floating_point():
        s = s.to(torch.get_default_dtype())
    if standardize and s.numel() > 1:
        s = (s - s.mean()) / s.std().clamp(min=eps)
    return torch.sigmoid(s / max(tau, eps)).clamp(w_min, w_max)
