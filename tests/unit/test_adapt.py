"""ADAPT pooling, scores and weights; BM25 against a hand computation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from curate.selection.adapt import adapt_scores, adapt_scores_from_centroid, adapt_weights, anchor_centroid, pooled_embeddings
from curate.selection.bm25 import bm25_scores


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
    torch.testing.assert_close(w, torch.sigmoid(s.double()))
    assert adapt_weights(s, tau=0.5)[1] == pytest.approx(1 / (1 + math.exp(-4)))
    assert adapt_weights(s, w_min=0.3, w_max=0.6).tolist() == pytest.approx([0.5, 0.6, 0.3])
    shifted = torch.tensor([0.90, 0.91, 0.92])  # anisotropic cosines: all gates alike unless standardised
    assert float(adapt_weights(shifted).max() - adapt_weights(shifted).min()) < 0.01
    st = adapt_weights(shifted, standardize=True)
    assert st[0] == pytest.approx(1 / (1 + math.e)) and st[1] == pytest.approx(0.5) and st[2] == pytest.approx(1 / (1 + math.exp(-1)))
    assert adapt_weights(torch.tensor([0.7, 0.7]), standardize=True).tolist() == pytest.approx([0.5, 0.5])  # std 0 guarded


def test_bm25_matches_a_hand_computation():
    docs = ["the cat sat", "the dog", "cat cat dog bird"]
    anchors = ["cat", "dog dog"]
    k1, b = 1.5, 0.75
    lens = [3, 2, 4]
    avg = sum(lens) / 3
    idf = {t: math.log(1 + (3 - n + 0.5) / (n + 0.5)) for t, n in {"cat": 2, "dog": 2}.items()}

    def term(tf, dl, t):
        return idf[t] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avg)) if tf else 0.0

    tfs = [{"cat": 1, "dog": 0}, {"cat": 0, "dog": 1}, {"cat": 2, "dog": 1}]
    expected = [(term(tf["cat"], dl, "cat") + 2 * term(tf["dog"], dl, "dog")) / 2 for tf, dl in zip(tfs, lens)]
    np.testing.assert_allclose(bm25_scores(docs, anchors, k1=k1, b=b), expected)
    assert bm25_scores(docs, []).tolist() == [0.0, 0.0, 0.0]
    assert bm25_scores(docs, ["zebra"]).tolist() == [0.0, 0.0, 0.0]  # no shared term
