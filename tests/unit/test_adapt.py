"""ADAPT pooling, scores and weights against hand computations."""
from __future__ import annotations

import math

import pytest
import torch

from curate.selection.adapt import adapt_scores, adapt_scores_from_centroid, adapt_weights, anchor_centroid, pooled_embeddings


def test_position_weighted_pooling_excludes_padding_either_side():
    h = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])  # 2 real tokens then padding
    right = pooled_embeddings(h, torch.tensor([[1, 1, 0]]))
    # weights 1/3, 2/3 -> (1/3, 2/3), normalised
    expected = torch.tensor([[1.0, 2.0]]) / math.sqrt(5)
    torch.testing.assert_close(right, expected)
    left = pooled_embeddings(torch.tensor([[[5.0, 5.0], [1.0, 0.0], [0.0, 1.0]]]), torch.tensor([[0, 1, 1]]))
    torch.testing.assert_close(left, expected)


def test_scores_are_mean_cosines_to_the_anchors():
    torch.manual_seed(0)
    hidden, mask = torch.randn(3, 4, 8), torch.ones(3, 4, dtype=torch.long)
    anchors, a_mask = torch.randn(5, 6, 8), torch.ones(5, 6, dtype=torch.long)
    a_mask[0, 4:] = 0
    scores = adapt_scores(hidden, mask, anchors, a_mask)
    rows, anchor_vecs = pooled_embeddings(hidden, mask), pooled_embeddings(anchors, a_mask)
    cosines = torch.stack([torch.nn.functional.cosine_similarity(rows, a.unsqueeze(0)) for a in anchor_vecs], dim=1)
    torch.testing.assert_close(scores, cosines.mean(dim=1))
    torch.testing.assert_close(adapt_scores_from_centroid(hidden, mask, anchor_centroid(anchors, a_mask)), scores)
    assert anchor_centroid(anchors, a_mask).norm() < 1.0  # the centroid is not re-normalised


def test_weights_gate_clip_and_standardise():
    s = torch.tensor([0.0, 2.0, -2.0])
    w = adapt_weights(s, tau=1.0)
    torch.testing.assert_close(w, torch.sigmoid(s))
    assert adapt_weights(s, tau=0.5)[1] == pytest.approx(1 / (1 + math.exp(-4)))
    assert adapt_weights(s, w_min=0.3, w_max=0.6).tolist() == pytest.approx([0.5, 0.6, 0.3])
    shifted = torch.tensor([0.90, 0.91, 0.92], dtype=torch.float64)  # anisotropic cosines: all gates alike unless standardised
    assert float(adapt_weights(shifted).max() - adapt_weights(shifted).min()) < 0.01
    st = adapt_weights(shifted, standardize=True)
    assert st[0] == pytest.approx(1 / (1 + math.e)) and st[1] == pytest.approx(0.5) and st[2] == pytest.approx(1 / (1 + math.exp(-1)))
    assert adapt_weights(torch.tensor([0.7, 0.7]), standardize=True).tolist() == pytest.approx([0.5, 0.5])  # std 0 guarded


def test_pooling_a_mixed_batch_by_hand():
    # row 0: three real tokens, right-padded; row 1: one real token, left-padded
    h = torch.tensor([[[3.0, 0.0], [0.0, 3.0], [0.0, 0.0], [9.0, 9.0]],
                      [[9.0, 9.0], [9.0, -9.0], [9.0, 0.0], [0.0, -2.0]]])
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 0, 1]])
    pooled = pooled_embeddings(h, mask)
    # row 0: weights 1/6, 2/6, 3/6 -> (0.5, 1.0, ·) = (0.5, 1.0) -> /sqrt(1.25); row 1: (0, -2) -> (0, -1)
    torch.testing.assert_close(pooled, torch.tensor([[0.5, 1.0], [0.0, -2.0]]) / torch.tensor([[1.25**0.5], [2.0]]))
    # anchors: the same two rows; centroid = mean of the unit vectors, scores = mean cosines
    centroid = anchor_centroid(h, mask)
    torch.testing.assert_close(centroid, pooled.mean(dim=0))
    cos01 = float(pooled[0] @ pooled[1])  # = -1/sqrt(1.25)
    assert cos01 == pytest.approx(-1 / 1.25**0.5)
    torch.testing.assert_close(adapt_scores(h, mask, h, mask), torch.tensor([(1 + cos01) / 2, (cos01 + 1) / 2]))


def test_weights_keep_dtype_and_reject_bad_clip():
    assert adapt_weights(torch.tensor([0.1, 0.2])).dtype == torch.float32
    assert adapt_weights(torch.tensor([0.1, 0.2], dtype=torch.float64)).dtype == torch.float64
    assert adapt_weights([1, 2]).dtype == torch.float32
    assert adapt_weights(torch.tensor([0.5]), standardize=True).tolist() == pytest.approx([1 / (1 + math.exp(-0.5))])
    assert adapt_weights(torch.tensor([1.0]), tau=0.0).item() == pytest.approx(1.0)  # τ guarded by ε: σ(1e8)
    with pytest.raises(ValueError, match="w_min"):
        adapt_weights(torch.tensor([0.0]), w_min=2.0, w_max=1.0)
