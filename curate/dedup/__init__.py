"""Deduplication of the normalised pool (docs/architecture.md §2, §4): exact, then near-duplicate, incremental
across runs.

    result = dedup_rows(rows)                       # rows: a `curate.schema.ROWS` table
    result.kept, result.removed, result.stats, result.index
    result = dedup_rows(rows, previous=Previous(index, removed))   # tonight against the rows kept before

1. Every row's dedup text (`normalize.dedup_text`: context turns, instruction, input, response;
   NFKC, optional case folding, whitespace collapsed).
2. Exact: rows with identical dedup texts (equal `exact.text_digest`) form a group (`exact.py`).
3. Near: one row per exact group gets a MinHash signature (`minhash.py`; or the one a shard computed
   ahead, looked up by the text's digest: `presign.py`); banded LSH proposes
   candidate pairs; pairs whose exact shingle Jaccard reaches `threshold` (`jaccard.py`, from a
   second pass that reads only the candidates' texts; `verify="signature"`: whose signatures agree
   on at least `threshold` of their positions, one pass, noisier) are edges, and the connected components of the edges are the clusters (`lsh.py`). Components are
   transitive: A~B and B~C put A and C in one cluster even when A and C are less similar.
4. Every cluster (exact groups joined through near edges) keeps one row by the keep policy
   (`exact.choose_kept`: the first in input order, or the longest response, ties first); every
   other row is removed, with the kept row's id, the reason and the similarity:
   `exact` (similarity 1.0) when its dedup text equals the kept row's, else `near` with the
   Jaccard similarity of the two rows (exact, or estimated from the signatures) (for a row joined transitively it can be
   below `threshold`).

Incremental (`previous` given, see `incremental.py`): the rows kept before are graph nodes with their
stored digests and signatures, never re-examined; only the new rows are hashed, signed and queried
against them (and LSH-paired among themselves). A cluster that holds an old kept row keeps it (the
earliest indexed one when a new row bridges several: the others stay kept too) and removes its new
rows; a cluster of new rows only keeps one by the keep policy. The result's `index` holds the kept
rows (old first, then new, in pool order) for the next run. Without `previous` every row is new,
which is the full pass.

Streaming: `dedup_batches` reads the text columns as record batches and keeps only per-row
fingerprints (a 16-byte digest, a signature per distinct new text), never the pool's texts; exact
verification reads them a second time and keeps the shingle sets of the candidate pairs' rows only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curate.dedup.exact import KeepPolicy, choose_kept, text_digests
from curate.dedup.incremental import ID_COLUMNS, TEXT_COLUMNS, Previous, split_pool
from curate.dedup.index import DIGEST_TYPE, DedupIndex, DedupSettings, VerifyMode
from curate.dedup.jaccard import exact_jaccard, shingle_sets
from curate.dedup.minhash import MinHasher, estimated_jaccard
from curate.dedup.normalize import dedup_texts
from curate.dedup.presign import Presigned
from curate.schema import REMOVED

__all__ = ["DedupResult", "DedupSettings", "Previous", "dedup_batches", "dedup_rows",
           "ID_COLUMNS", "TEXT_COLUMNS"]

BATCH_ROWS = 65_536
_PAIR_CHUNK = 65_536  # pairs compared at once with signature verification


@dataclass
class DedupResult:
    removed: pa.Table  # curate.schema.REMOVED, one row per removed input row, input order
    keep: np.ndarray  # bool per input row
    index: DedupIndex  # the kept rows, for the next run
    stats: dict = field(default_factory=dict)
    cluster_sizes: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # rows per cluster of >= 2
    kept: pa.Table | None = None  # the input rows that stay, same schema, input order (`dedup_rows` only)


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
    verify: VerifyMode = "exact",
    previous: Previous | None = None,
    batch_rows: int = BATCH_ROWS,
) -> DedupResult:
    """Remove exact and near duplicates from a `curate.schema.ROWS` table (see the module docstring)."""
    settings = DedupSettings(exact, casefold, keep, near, num_perm, ngram, threshold, seed, verify)
    batches = rows.select(TEXT_COLUMNS).to_batches(batch_rows)
    result = dedup_batches(rows.select(ID_COLUMNS), batches, settings, previous, reread=lambda: batches)
    result.kept = rows.filter(pa.array(result.keep))
    return result


def dedup_batches(
    ids: pa.Table, batches: Iterable[pa.RecordBatch], settings: DedupSettings, previous: Previous | None = None,
    reread: Callable[[], Iterable[pa.RecordBatch]] | None = None, presigned: Presigned | None = None,
) -> DedupResult:
    """Dedup of a pool given as its ids (row_id, source, position) and its text columns as record
    batches (`TEXT_COLUMNS`, same rows, same order); see the module docstring. `reread()` yields the
    same batches again (needed by `settings.verify == "exact"`: a second pass reads only the texts
    of the candidate pairs' rows). `presigned`: text digests and signatures computed ahead by shards
    (`presign.py`), used instead of normalising, hashing and signing those rows here; the result is the same."""
    n = ids.num_rows
    mode = "full" if previous is None else "incremental"
    if previous is None:
        previous = Previous(DedupIndex.empty(settings), REMOVED.empty_table())
    split = split_pool(ids["row_id"].combine_chunks(), ids["source"].combine_chunks(),
                       ids["position"].to_numpy().astype(np.int64), previous)
    if not (settings.exact or settings.near):  # nothing is a duplicate, not even a copy
        split.new[split.copy_rows] = True
        split.copy_rows = split.copy_of = np.empty(0, dtype=np.int64)
    prints = _fingerprints(n, batches, split, settings, presigned)
    stats: dict = {"rows_in": n, "mode": mode, "previous_kept": len(split.index), "copies_of_kept": len(split.copy_rows),
                   "carried_removed": len(split.carried_rows),
                   "new_rows": int(split.new.sum()), "rows_signed": len(prints.signatures), "rows_queried": 0}
    components, shingles = _near_components(prints, split.index, settings, reread, stats)
    kept_of = _kept_of(n, prints, split, components, settings)
    removed_table, removed_rows, examined = _removed(ids, prints, split, kept_of, shingles, settings)
    keep = np.ones(n, dtype=bool)
    keep[removed_rows] = False
    new_rows = np.flatnonzero(split.new)
    kept_new = new_rows[kept_of[new_rows] == new_rows]
    kept_nodes = prints.node[kept_new] - len(split.index)
    index = split.index.extend(DedupIndex.of(
        settings,
        ids.take(pa.array(kept_new, pa.int64())),
        pa.array([prints.digests[i] for i in kept_nodes], DIGEST_TYPE),
        prints.signatures[kept_nodes] if settings.near else np.empty((len(kept_new), 0), np.uint32),
    ))
    reasons = removed_table["reason"].to_numpy(zero_copy_only=False)
    cluster_sizes = pc.value_counts(removed_table["duplicate_of"]).field("counts").to_numpy() + 1
    stats |= {
        "kept": n - len(removed_rows),
        "removed_exact": int((reasons == "exact").sum()),
        "removed_near": int((reasons == "near").sum()),
        "removed_new": len(examined),
        "clusters": len(cluster_sizes),
        "largest_cluster": int(cluster_sizes.max(initial=1 if n else 0)),
    }
    return DedupResult(removed=removed_table, keep=keep, index=index, stats=stats,
                       cluster_sizes=np.sort(cluster_sizes.astype(np.int64)))


@dataclass
class _Fingerprints:
    node: np.ndarray  # per pool row: its exact group (old kept rows are nodes 0..n_old-1), -1 for rows not examined
    lengths: np.ndarray  # per pool row: its response's length in characters
    digests: list[bytes]  # per new node: its text digest
    signatures: np.ndarray  # per new node: its MinHash signature (near dedup on)


def _fingerprints(n: int, batches: Iterable[pa.RecordBatch], split, settings: DedupSettings,
                  presigned: Presigned | None) -> _Fingerprints:
    """Fingerprints of the new rows, batch by batch: node = exact group."""
    old = split.index
    n_old = len(old)
    node = np.full(n, -1, dtype=np.int64)
    node[split.old_rows] = np.arange(n_old)
    lengths = np.zeros(n, dtype=np.int64)
    node_of_digest = dict(zip(old.digests.to_pylist(), range(n_old))) if settings.exact else {}
    new_digests: list[bytes] = []
    signature_parts = []
    hasher = settings.hasher() if settings.near else None
    offset = 0
    for batch in batches:
        size = batch.num_rows
        lengths[offset : offset + size] = pc.fill_null(pc.utf8_length(batch.column("response")), 0).to_numpy()
        local = np.flatnonzero(split.new[offset : offset + size])
        if len(local):
            rows = local + offset
            digests = presigned.row_digests_of(rows) if presigned is not None else None
            texts = None
            if digests is None:  # not every row's digest came from a shard: normalise and hash them here
                texts = dedup_texts(batch.take(pa.array(local)), casefold=settings.casefold)
                digests = text_digests(texts)
            first = []  # positions in `local` of the rows that start a new exact group
            for i, (row, digest) in enumerate(zip(rows, digests)):
                group = node_of_digest.get(digest) if settings.exact else None
                if group is None:
                    group = n_old + len(new_digests)
                    new_digests.append(digest)
                    first.append(i)
                    if settings.exact:
                        node_of_digest[digest] = group
                node[row] = group
            if hasher is not None and first:
                def texts_of(positions: list[int]) -> list[str]:  # called right away, in this iteration
                    if texts is not None:
                        return [texts[first[j]] for j in positions]
                    taken = batch.take(pa.array(local[[first[j] for j in positions]]))
                    return dedup_texts(taken, casefold=settings.casefold)

                signature_parts.append(_signatures([digests[i] for i in first], texts_of, hasher, presigned))
        offset += size
    if offset != n:
        raise ValueError(f"the batches hold {offset} rows, the ids {n}")
    signatures = np.concatenate(signature_parts) if signature_parts else np.empty((0, settings.width), np.uint32)
    return _Fingerprints(node, lengths, new_digests, signatures)


def _near_components(prints: _Fingerprints, old: DedupIndex, settings: DedupSettings,
                     reread: Callable[[], Iterable[pa.RecordBatch]] | None,
                     stats: dict) -> tuple[np.ndarray, dict[int, np.ndarray] | None]:
    """(the cluster of every node: LSH candidates among the new nodes and against the old kept rows, kept when
    similar enough; exact verification's shingle sets of the candidate nodes, or None). Adds to `stats`."""
    n_old, m = len(old), len(prints.digests)
    components = np.arange(n_old + m)
    if not (settings.near and m):
        return components, None
    lsh = settings.lsh()
    lsh.add(np.arange(m), prints.signatures)
    left, right = lsh.candidate_pairs()
    pair_left, pair_right = [n_old + left], [n_old + right]  # node ids
    if n_old:
        queries, hits = old.lsh().query(prints.signatures)
        pair_left.append(n_old + queries)
        pair_right.append(hits)
        stats["rows_queried"] = m
    pair_left, pair_right = np.concatenate(pair_left), np.concatenate(pair_right)
    shingles = None
    if settings.verify == "exact":
        if reread is None:
            raise ValueError("exact verification reads the candidates' texts again: pass `reread`")
        shingles = _candidate_shingles(np.union1d(pair_left, pair_right), prints.node, reread, settings)
    similarity = _similarity(pair_left, pair_right, old.signatures, prints.signatures, shingles)
    is_edge = similarity >= settings.threshold
    components = _components(n_old + m, pair_left[is_edge], pair_right[is_edge])
    stats |= {"lsh_bands": lsh.bands, "lsh_rows": lsh.rows, "candidate_pairs": len(pair_left),
              "verified_pairs": int(is_edge.sum()), "verify": settings.verify}
    return components, shingles


def _kept_of(n: int, prints: _Fingerprints, split, components: np.ndarray, settings: DedupSettings) -> np.ndarray:
    """The kept row of every new row: the earliest old kept row of its cluster, else the keep policy."""
    n_old = len(split.index)
    kept_of = np.arange(n)
    earliest_old = np.full(n_old + len(prints.digests), n_old)
    np.minimum.at(earliest_old, components[:n_old], np.arange(n_old))
    new_rows = np.flatnonzero(split.new)
    cluster = components[prints.node[new_rows]]
    anchor = earliest_old[cluster]
    anchored = anchor < n_old
    kept_of[new_rows[anchored]] = split.old_rows[anchor[anchored]]
    free = new_rows[~anchored]
    kept_of[free] = free[choose_kept(cluster[~anchored], keep=settings.keep, lengths=prints.lengths[free])]
    return kept_of


def _removed(ids: pa.Table, prints: _Fingerprints, split, kept_of: np.ndarray, shingles, settings: DedupSettings):
    """(the REMOVED records in pool order, the removed rows, the new rows examined and removed). Copies of old kept
    rows get their kept row (`kept_of` is completed) and similarity 1 ("near" when exact dedup is off, as a full
    pass says)."""
    row_ids, node = ids["row_id"].combine_chunks(), prints.node
    new_rows = np.flatnonzero(split.new)
    examined = new_rows[kept_of[new_rows] != new_rows]
    is_exact = node[examined] == node[kept_of[examined]]  # never with exact off: every row is its own node
    similarity = np.ones(len(examined))
    near_removed = examined[~is_exact]
    if len(near_removed):
        similarity[~is_exact] = _similarity(node[near_removed], node[kept_of[near_removed]], split.index.signatures,
                                            prints.signatures, shingles)
    kept_of[split.copy_rows] = split.copy_of
    removed = np.concatenate((examined, split.copy_rows))
    is_exact = np.concatenate((is_exact, np.full(len(split.copy_rows), settings.exact)))
    similarity = np.concatenate((similarity, np.ones(len(split.copy_rows))))
    new_removed = pa.table(
        {
            "row_id": row_ids.take(pa.array(removed, pa.int64())),
            "source": ids["source"].combine_chunks().take(pa.array(removed, pa.int64())),
            "position": pa.array(ids["position"].to_numpy().astype(np.int64)[removed], pa.int64()),
            "reason": pa.array(np.where(is_exact, "exact", "near").tolist(), pa.string()),
            "duplicate_of": row_ids.take(pa.array(kept_of[removed], pa.int64())),
            "similarity": pa.array(similarity, pa.float64()),
        },
        schema=REMOVED,
    )
    removed_table, removed_rows = _in_pool_order(new_removed, removed, split.carried, split.carried_rows)
    return removed_table, removed_rows, examined


def _signatures(digests: list[bytes], texts_of: Callable[[list[int]], list[str]], hasher: MinHasher,
                presigned: Presigned | None) -> np.ndarray:
    """MinHash signatures of the texts with `digests`: those in `presigned` looked up, the others computed here
    from `texts_of(positions)` (the dedup texts at those positions of `digests`)."""
    if presigned is None or not len(presigned):
        return hasher.signatures(texts_of(list(range(len(digests)))))
    if presigned.signatures.shape[1] != hasher.num_perm:
        raise ValueError(f"presigned signatures hold {presigned.signatures.shape[1]} values, the settings {hasher.num_perm}")
    found = presigned.lookup(digests)
    out = presigned.signatures[np.maximum(found, 0)]
    missing = np.flatnonzero(found < 0)
    if len(missing):
        out[missing] = hasher.signatures(texts_of(missing.tolist()))
    return out


def _similarity(a: np.ndarray, b: np.ndarray, old: np.ndarray, new: np.ndarray,
                shingles: dict[int, np.ndarray] | None) -> np.ndarray:
    """Jaccard similarity of node pairs (a[i], b[i]): exact from the shingle sets when given, else the
    MinHash estimate from the signatures, in chunks (bounded memory)."""
    if shingles is not None:
        return exact_jaccard(shingles, a, b)
    out = np.empty(len(a), dtype=np.float64)
    for lo in range(0, len(a), _PAIR_CHUNK):
        hi = lo + _PAIR_CHUNK
        out[lo:hi] = estimated_jaccard(_signatures_of(a[lo:hi], old, new), _signatures_of(b[lo:hi], old, new))
    return out


def _candidate_shingles(nodes: np.ndarray, node: np.ndarray, reread: Callable[[], Iterable[pa.RecordBatch]],
                        settings: DedupSettings) -> dict[int, np.ndarray]:
    """Shingle sets of `nodes`, from the text of each node's first row, in a second pass over the pool."""
    wanted = np.zeros(len(node), dtype=bool)
    has_node = node >= 0
    node_ids, first_rows = np.unique(node[has_node], return_index=True)
    first_rows = np.flatnonzero(has_node)[first_rows]
    wanted[first_rows[np.isin(node_ids, nodes)]] = True
    hasher, sets, offset = settings.hasher(), {}, 0
    for batch in reread():
        local = np.flatnonzero(wanted[offset : offset + batch.num_rows])
        if len(local):
            texts = dedup_texts(batch.take(pa.array(local)), casefold=settings.casefold)
            sets.update(zip(node[local + offset].tolist(), shingle_sets(hasher, texts)))
        offset += batch.num_rows
    return sets


def _signatures_of(nodes: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Signature of each node: nodes below len(old) are old kept rows, the others new exact groups."""
    is_old = nodes < len(old)
    out = np.empty((len(nodes), old.shape[1]), dtype=np.uint32)
    out[is_old] = old[nodes[is_old]]
    out[~is_old] = new[nodes[~is_old] - len(old)]
    return out


def _in_pool_order(a: pa.Table, a_rows: np.ndarray, b: pa.Table, b_rows: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """Two removal tables merged by pool row, and the merged pool rows."""
    rows = np.concatenate((a_rows, b_rows))
    order = np.argsort(rows, kind="stable")
    return pa.concat_tables([a, b]).take(pa.array(order, pa.int64())), rows[order]


def _components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected-component label of each of n nodes under the undirected edges (left[i], right[i])."""
    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(n, n))
    return connected_components(graph, directed=False)[1]
