"""Exact Jaccard verification of LSH candidates (curate/dedup/jaccard.py, `dedup.near.verify`)."""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest

from curate.dedup import TEXT_COLUMNS, DedupSettings, dedup_batches, dedup_rows
from curate.dedup.jaccard import exact_jaccard, shingle_sets
from curate.dedup.minhash import MinHasher
from curate.dedup.normalize import dedup_texts
from curate.schema import ROWS


def table_of(texts: list[str]) -> pa.Table:
    n = len(texts)
    return pa.table({"row_id": [hashlib.sha256(t.encode()).hexdigest()[:32] for t in texts], "source": ["p"] * n,
                     "position": list(range(n)), "system": [""] * n, "context": [[] for _ in texts],
                     "instruction": ["q"] * n, "input": [""] * n, "response": texts, "skill": [None] * n,
                     "truth": [None] * n}, schema=ROWS)


def python_jaccard(a: str, b: str, n: int = 3) -> float:
    sa = {tuple(a.split()[i : i + n]) for i in range(len(a.split()) - n + 1)}
    sb = {tuple(b.split()[i : i + n]) for i in range(len(b.split()) - n + 1)}
    return len(sa & sb) / len(sa | sb)


def test_exact_jaccard_equals_the_set_definition():
    rng = np.random.default_rng(0)
    docs = [" ".join(f"w{x}" for x in rng.integers(0, 30, 40)) for _ in range(30)]
    sets = dict(enumerate(shingle_sets(MinHasher(), docs)))
    left, right = np.triu_indices(len(docs), 1)
    got = exact_jaccard(sets, left, right)
    want = [python_jaccard(docs[i], docs[j]) for i, j in zip(left.tolist(), right.tolist())]
    np.testing.assert_allclose(got, want)
    assert exact_jaccard({0: np.empty(0, np.uint32), 1: np.empty(0, np.uint32)}, np.array([0]), np.array([1]))[0] == 1.0


def pairs_near_threshold(rng, n_pairs: int, changed: int, words: int = 100) -> list[str]:
    """Documents and a copy of each with `changed` words replaced at spread positions."""
    docs = []
    for k in range(n_pairs):
        doc = [f"d{k}w{i}" for i in range(words)]
        copy = list(doc)
        for pos in rng.choice(words, changed, replace=False):
            copy[pos] = f"x{k}_{pos}"
        docs += [" ".join(doc), " ".join(copy)]
    return docs


def test_exact_verification_never_merges_a_pair_below_the_threshold_signatures_do():
    rng = np.random.default_rng(1)
    docs = pairs_near_threshold(rng, 60, changed=7)  # J a little under 0.7 for most pairs
    table = table_of(docs)
    texts = dedup_texts(table.select(TEXT_COLUMNS), casefold=True)
    sets = dict(enumerate(shingle_sets(MinHasher(), texts)))
    truth = exact_jaccard(sets, np.arange(0, 120, 2), np.arange(1, 120, 2))
    assert (truth < 0.7).sum() >= 40
    exact = dedup_rows(table, num_perm=32, threshold=0.7, verify="exact")
    signature = dedup_rows(table, num_perm=32, threshold=0.7, verify="signature")
    removed_exact = {p // 2 for p in exact.removed["position"].to_pylist()}
    assert all(truth[k] >= 0.7 for k in removed_exact)  # only pairs that really reach it
    np.testing.assert_allclose(sorted(exact.removed["similarity"].to_pylist()), sorted(truth[list(removed_exact)]))
    assert any(truth[p // 2] < 0.7 for p in signature.removed["position"].to_pylist())  # estimator noise
    assert exact.stats["verify"] == "exact" and signature.stats["verify"] == "signature"


def test_exact_verification_reads_the_texts_again_or_says_so():
    table = table_of(["a b c d e f", "a b c d e g"])
    settings = DedupSettings(threshold=0.5, verify="exact")
    ids = table.select(["row_id", "source", "position"])
    with pytest.raises(ValueError, match="pass `reread`"):
        dedup_batches(ids, table.select(TEXT_COLUMNS).to_batches(), settings)
    batches = table.select(TEXT_COLUMNS).to_batches(1)
    result = dedup_batches(ids, iter(batches), settings, reread=lambda: iter(batches))
    assert result.removed["position"].to_pylist() == [1]
