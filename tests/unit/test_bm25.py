"""ADAPT's BM25 signal: a hand computation on three tiny documents and a loop-by-loop reference."""
from __future__ import annotations

import math
import random
import re
from collections import Counter

import numpy as np
import pytest

from curate.selection.bm25 import bm25_scores


def test_bm25_matches_a_hand_computation():
    docs = ["The cat sat.", "the dog", "cat, CAT dog bird"]
    anchors = ["cat", "dog dog"]  # a query term counts as often as it occurs
    k1, b = 1.5, 0.75
    lens = [3, 2, 4]
    avg = sum(lens) / 3
    idf = {"cat": math.log(1 + (3 - 2 + 0.5) / (2 + 0.5)), "dog": math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))}

    def term(tf, dl, t):
        return idf[t] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avg)) if tf else 0.0

    tfs = [{"cat": 1, "dog": 0}, {"cat": 0, "dog": 1}, {"cat": 2, "dog": 1}]
    expected = [(term(tf["cat"], dl, "cat") + 2 * term(tf["dog"], dl, "dog")) / 2 for tf, dl in zip(tfs, lens)]
    # by hand: idf = ln 1.6 = 0.470004 for both terms; avglen 3
    # doc 1: cat 0.470004·2.5/(1 + 1.5) = 0.470004        -> (0.470004 + 0)/2           = 0.235002
    # doc 2: dog 0.470004·2.5/(1 + 1.125) = 0.552946       -> (0 + 2·0.552946)/2         = 0.552946
    # doc 3: cat 0.470004·5/(2 + 1.875) = 0.606457, dog 0.470004·2.5/(1 + 1.875) = 0.408699
    #                                                      -> (0.606457 + 2·0.408699)/2 = 0.711928
    np.testing.assert_allclose(expected, [0.235002, 0.552946, 0.711928], atol=2e-6)
    np.testing.assert_allclose(bm25_scores(docs, anchors, k1=k1, b=b), expected)
    assert bm25_scores(docs, []).tolist() == [0.0, 0.0, 0.0]
    assert bm25_scores(docs, ["zebra"]).tolist() == [0.0, 0.0, 0.0]  # no shared term
    assert bm25_scores([], anchors).shape == (0,)


def reference_bm25(documents, anchors, k1, b):
    tok = [Counter(re.findall(r"\w+", d.lower())) for d in documents]
    lens = [sum(c.values()) for c in tok]
    avg = sum(lens) / len(lens)
    n = len(documents)
    scores = []
    for counts, dl in zip(tok, lens):
        total = 0.0
        for anchor in anchors:
            for term in re.findall(r"\w+", anchor.lower()):
                df = sum(1 for c in tok if term in c)
                tf = counts.get(term, 0)
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                total += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avg))
        scores.append(total / len(anchors))
    return scores


@pytest.mark.parametrize("k1,b", [(1.5, 0.75), (0.9, 0.4), (2.0, 1.0)])
def test_bm25_equals_a_loop_reference(k1, b):
    rng = random.Random(k1 * 10 + b)
    words = [f"w{i}" for i in range(15)]
    docs = [" ".join(rng.choices(words, k=rng.randint(1, 12))) for _ in range(25)]
    anchors = [" ".join(rng.choices(words + ["unseen"], k=rng.randint(1, 6))) for _ in range(7)]
    np.testing.assert_allclose(bm25_scores(docs, anchors, k1=k1, b=b), reference_bm25(docs, anchors, k1, b), rtol=1e-12)


def test_bad_parameters_fail():
    with pytest.raises(ValueError, match="k1"):
        bm25_scores(["a"], ["a"], b=1.5)
