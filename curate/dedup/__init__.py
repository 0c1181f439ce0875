"""Deduplication of the normalised pool (design §1, step 2): exact, then near-duplicate.

    result = dedup_rows(rows)          # rows: a `curate.schema.ROWS` table
    result.kept, result.removed, result.stats

1. Every row's dedup text (`normalize.dedup_text`: context turns, instruction, input, response;
   NFKC, optional case folding, whitespace collapsed).
2. Exact: rows with identical dedup texts form a group (`exact.py`).
3. Near: one row per exact group gets a MinHash signature (`minhash.py`); banded LSH proposes
   candidate pairs, pairs whose signatures agree on at least `threshold` of their positions are
   edges, and the connected components of the edges are the clusters (`lsh.py`). Components are
   transitive: A~B and B~C put A and C in one cluster even when A and C are less similar.
4. Every cluster (exact groups joined through near edges) keeps one row by the keep policy
   (`exact.choose_kept`: the first in input order, or the longest response, ties first); every
   other row is removed, with the kept row's id, the reason and the similarity:
   `exact` (similarity 1.0) when its dedup text equals the kept row's, else `near` with the
   estimated Jaccard similarity of the two signatures (for a row joined transitively it can be
   below `threshold`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curate.dedup.exact import KeepPolicy, choose_kept, exact_groups
from curate.dedup.lsh import LSHIndex, verify
from curate.dedup.minhash import MinHasher, estimated_jaccard
from curate.dedup.normalize import dedup_texts
from curate.schema import REMOVED

__all__ = ["DedupResult", "dedup_rows"]


@dataclass
class DedupResult:
    kept: pa.Table  # the input rows that stay, same schema, input order
    removed: pa.Table  # curate.schema.REMOVED, one row per removed input row, input order
    stats: dict = field(default_factory=dict)


def dedup_rows(
    rows: pa.Table,
    *,
    exact: bool = True,
    casefold: bool = True,
    keep: KeepPolicy = "first",
    near: bool = True,
    num_perm: int = 128,
    ngram: int = 3,
    threshold: float = 0.7,
    seed: int = 1,
) -> DedupResult:
    """Remove exact and near duplicates from a `curate.schema.ROWS` table (see the module docstring)."""
    n = rows.num_rows
    texts = dedup_texts(rows, casefold=casefold)
    lengths = pc.fill_null(pc.utf8_length(rows["response"]), 0).to_numpy()
    groups = exact_groups(texts) if exact else np.arange(n)
    group_kept = choose_kept(groups, keep=keep, lengths=lengths)
    representatives = np.flatnonzero(group_kept == np.arange(n))  # one row per exact group
    signature_row = np.searchsorted(representatives, group_kept)  # every row's group's signature

    stats: dict = {"rows_in": n}
    clusters = group_kept
    signatures = np.empty((0, num_perm), dtype=np.uint32)
    if near and len(representatives) > 1:
        hasher = MinHasher(num_perm=num_perm, ngram=ngram, seed=seed)
        signatures = hasher.signatures([texts[i] for i in representatives])
        index = LSHIndex(threshold, num_perm, hasher_params=hasher.params)
        index.add(representatives, signatures)
        left, right = index.candidate_pairs()
        _, is_edge = verify(signatures, signatures, left, right, threshold)
        clusters = _components(len(representatives), left[is_edge], right[is_edge])[signature_row]
        stats |= {
            "lsh_bands": index.bands,
            "lsh_rows": index.rows,
            "candidate_pairs": len(left),
            "verified_pairs": int(is_edge.sum()),
        }
    kept_of = choose_kept(clusters, keep=keep, lengths=lengths)

    is_removed = kept_of != np.arange(n)
    removed = np.flatnonzero(is_removed)
    is_exact = groups[removed] == groups[kept_of[removed]]  # never with exact=False: groups are the rows
    similarity = np.ones(len(removed))
    near_removed = removed[~is_exact]
    similarity[~is_exact] = estimated_jaccard(
        signatures[signature_row[near_removed]], signatures[signature_row[kept_of[near_removed]]]
    )

    row_ids = rows["row_id"].combine_chunks()
    removed_table = pa.table(
        {
            "row_id": row_ids.take(removed),
            "source": rows["source"].combine_chunks().take(removed),
            "position": rows["position"].combine_chunks().take(removed),
            "reason": pa.array(np.where(is_exact, "exact", "near").tolist(), pa.string()),
            "duplicate_of": row_ids.take(kept_of[removed]),
            "similarity": pa.array(similarity, pa.float64()),
        },
        schema=REMOVED,
    )
    cluster_sizes = np.bincount(kept_of, minlength=n)
    stats |= {
        "kept": n - len(removed),
        "removed_exact": int(is_exact.sum()),
        "removed_near": int((~is_exact).sum()),
        "clusters": int((cluster_sizes > 1).sum()),
        "largest_cluster": int(cluster_sizes.max(initial=0)),
    }
    return DedupResult(kept=rows.filter(pa.array(~is_removed)), removed=removed_table, stats=stats)


def _components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected-component label of each of n nodes under the undirected edges (left[i], right[i])."""
    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(n, n))
    return connected_components(graph, directed=False)[1]
