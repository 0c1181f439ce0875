"""TF-IDF representation of responses for IterIT's diversity term (Jia et al. 2024, §3.2, S_DIV;
docs/iterit.md §4, (8)-(9)).

The reference fits `TfidfVectorizer(ngram_range=(1, 3))` with every other argument at its sklearn
default (lowercase, tokens of 2+ word characters, smooth idf, L2-normalised rows) on the candidate
responses of one selection round only. Documents are used exactly as given: appending the EOS string
is the caller's choice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

NGRAM_RANGE = (1, 3)


@dataclass(frozen=True)
class Tfidf:
    """A fitted TF-IDF matrix: `matrix[d, g]` is the L2-normalised weight of n-gram `features[g]` in doc d."""

    matrix: sp.csr_matrix  # float64, sorted column indices per row
    features: list[str]
    idf: np.ndarray


def fit_tfidf(documents: Sequence[str]) -> Tfidf:
    """Fit the reference vectorizer on `documents`.

    A corpus without a single token (every document empty or made of 1-character words) has an empty
    vocabulary, on which sklearn raises; it is returned as an n x 0 matrix (all informativeness 0).
    """
    docs = list(documents)
    vectorizer = TfidfVectorizer(ngram_range=NGRAM_RANGE)
    try:
        matrix = vectorizer.fit_transform(docs)
    except ValueError as e:
        if "empty vocabulary" not in str(e):
            raise
        return Tfidf(sp.csr_matrix((len(docs), 0), dtype=np.float64), [], np.zeros(0))
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    matrix.sort_indices()
    return Tfidf(matrix, vectorizer.get_feature_names_out().tolist(), vectorizer.idf_.copy())
