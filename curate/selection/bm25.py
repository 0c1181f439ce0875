"""BM25 similarity of every training row to an anchor set: ADAPT's BM25 signal (docs/online-selection.md
§4, (7)), s_i = mean over anchors v of BM25(query = v, document = x_i).

Okapi BM25 over the training rows as the collection: idf_t = ln(1 + (N − n_t + 0.5)/(n_t + 0.5)),
term weight idf_t · tf(k1 + 1)/(tf + k1(1 − b + b·len/avglen)); a query term counts as often as it
occurs in the anchor. Lower-cased word tokens (`\\w+`). BM25 is linear in the query's term counts, so
the mean over anchors is BM25 against the anchors' mean term counts: one sparse product.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np
from scipy import sparse

TOKEN = re.compile(r"\w+")


def _counts(texts: Sequence[str], vocab: dict[str, int], grow: bool) -> sparse.csr_matrix:
    rows, cols = [], []
    for i, text in enumerate(texts):
        for tok in TOKEN.findall(text.lower()):
            j = vocab.get(tok)
            if j is None and grow:
                j = vocab[tok] = len(vocab)
            if j is not None:
                rows.append(i)
                cols.append(j)
    data = np.ones(len(rows), dtype=np.float64)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(texts), len(vocab)))


def bm25_scores(documents: Sequence[str], anchors: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    """Mean BM25 score of each document against the anchors (as queries); zeros when there are none."""
    if k1 < 0 or not 0 <= b <= 1:
        raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
    if not anchors or not documents:
        return np.zeros(len(documents))
    vocab: dict[str, int] = {}
    tf = _counts(documents, vocab, grow=True)
    queries = _counts(anchors, vocab, grow=False)
    tf.sum_duplicates()
    n_docs = tf.shape[0]
    doc_len = np.asarray(tf.sum(axis=1)).ravel()
    avg_len = max(doc_len.mean(), 1e-9)
    df = np.bincount(tf.indices, minlength=tf.shape[1])
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    norm = k1 * (1 - b + b * doc_len / avg_len)
    sat = tf.copy()
    row_of = np.repeat(np.arange(n_docs), np.diff(tf.indptr))
    sat.data = tf.data * (k1 + 1) / (tf.data + norm[row_of])
    # mean_v Σ_t q_vt·idf_t·sat_it = Σ_t sat_it·idf_t·mean_v q_vt: one sparse matrix-vector product
    mean_query = np.asarray(queries.mean(axis=0)).ravel()
    return sat @ (idf * mean_query)
