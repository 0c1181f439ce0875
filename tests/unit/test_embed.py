"""Sentence embeddings (all-MiniLM-L6-v2 on plain transformers)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from curate.embed.minilm import embed_texts, load_encoder, model_dir

# Two float32 forward passes of the same text in other batches differ only in rounding: at most
# ~eps per term of the longest dot product (MiniLM-L6: the 1536-wide feed-forward) per layer (6),
# relative to the unit-norm output.
BATCH_ATOL = 6 * 1536 * float(np.finfo(np.float32).eps)
TEXTS = [
    "I love playing the guitar.",
    "Playing guitar is my favourite hobby.",
    "The stock market fell sharply today.",
    "How do I reset my password?",
    "I forgot my password, how can I change it?",
]



@pytest.fixture(scope="module")
def vectors(one_thread):
    return embed_texts(TEXTS, batch_size=2)


def test_shape_dtype_and_unit_norm(vectors):
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=0, atol=2 * 384 * float(np.finfo(np.float32).eps))


def test_similar_sentences_are_closer_than_unrelated(vectors):
    sim = vectors @ vectors.T
    assert sim[0, 1] > 0.6 and sim[3, 4] > 0.6
    assert sim[0, 1] > sim[0, 2] + 0.4 and sim[3, 4] > sim[3, 2] + 0.4


def test_batch_composition_and_order_do_not_matter(vectors):
    alone = embed_texts([TEXTS[2]], batch_size=64)
    np.testing.assert_allclose(alone[0], vectors[2], rtol=0, atol=BATCH_ATOL)
    reversed_ = embed_texts(TEXTS[::-1], batch_size=64)
    np.testing.assert_allclose(reversed_[::-1], vectors, rtol=0, atol=BATCH_ATOL)


def test_empty_input_and_truncation():
    assert embed_texts([]).shape == (0, 384)
    long = "word " * 1000
    a, b = embed_texts([long, long + " tail that is cut off"], max_length=16)
    np.testing.assert_allclose(a, b, rtol=0, atol=BATCH_ATOL)


def test_progress_and_local_dir_and_no_sentence_transformers():
    calls = []
    embed_texts(TEXTS, batch_size=2, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    enc = load_encoder(str(model_dir("minilm")))
    assert enc is load_encoder("minilm")  # loaded once per directory
    assert enc.pooling == "mean" and enc.dim == 384
    with pytest.raises(FileNotFoundError):
        model_dir("/no/such/encoder")
    assert "sentence_transformers" not in sys.modules
