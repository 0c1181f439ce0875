"""Semantic deduplication (SemDeDup): spherical k-means, within-cluster cosine edges, components, keep policies."""
from __future__ import annotations


import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curate.dedup import semantic
from curate.dedup.semantic import default_n_clusters, semantic_duplicates, spherical_kmeans


def cosine_atol(d: int) -> float:
    """How far a float32 cosine of unit d-vectors can be from the exact value: the dot product's
    rounding (<= d * eps / 2) plus each vector's rounding to float32 (<= eps each), doubled."""
    return float(2 * (d + 2) * np.finfo(np.float32).eps)


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def at_cosine(rng: np.random.Generator, vectors: np.ndarray, cosine: float) -> np.ndarray:
    """For every unit row v, a unit row at exactly `cosine` to it, in a random direction."""
    noise = rng.standard_normal(vectors.shape)
    noise -= (noise * vectors).sum(axis=1, keepdims=True) * vectors
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return (cosine * vectors + np.sqrt(1 - cosine**2) * noise).astype(np.float32)


def all_pairs_kept(vectors: np.ndarray, epsilon: float) -> np.ndarray:
    """Reference: lowest index of each component of the all-pairs graph cosine > 1 - epsilon."""
    n = len(vectors)
    left, right = np.nonzero(np.triu(vectors @ vectors.T > np.float32(1 - epsilon), 1))
    labels = connected_components(coo_matrix((np.ones(len(left)), (left, right)), shape=(n, n)), directed=False)[1]
    _, lowest = np.unique(labels, return_index=True)
    return lowest[labels]


# --- duplicates --------------------------------------------------------------------------------


def test_identical_vectors_collapse_to_the_first():
    rng = np.random.default_rng(0)
    x = unit_rows(rng, 50, 32)
    x[[7, 19, 33, 48]] = x[3]
    result = semantic_duplicates(x, n_clusters=5)
    removed = np.flatnonzero(result.kept_index != np.arange(50))
    assert removed.tolist() == [7, 19, 33, 48]
    assert (result.kept_index[removed] == 3).all()
    np.testing.assert_allclose(result.similarity, 1.0, rtol=0, atol=cosine_atol(32))
    assert result.kept_index.dtype == np.int64 and result.similarity.dtype == np.float32


def test_epsilon_decides_whether_near_identical_vectors_merge():
    rng = np.random.default_rng(1)
    originals = unit_rows(rng, 20, 64)
    x = np.concatenate([originals, at_cosine(rng, originals, 0.99)])
    loose = semantic_duplicates(x, epsilon=0.05, n_clusters=4)
    assert loose.kept_index.tolist() == list(range(20)) * 2
    np.testing.assert_allclose(loose.similarity[20:], 0.99, rtol=0, atol=cosine_atol(64))
    np.testing.assert_array_equal(loose.similarity[:20], 1.0)
    strict = semantic_duplicates(x, epsilon=0.005, n_clusters=4)
    assert strict.kept_index.tolist() == list(range(40))
    np.testing.assert_array_equal(strict.similarity, 1.0)


@pytest.mark.parametrize("n_clusters", [1, 3, None])
def test_orthogonal_vectors_are_never_merged(n_clusters):
    x = np.eye(24, dtype=np.float32)
    result = semantic_duplicates(x, epsilon=0.9, n_clusters=n_clusters)
    assert result.kept_index.tolist() == list(range(24))


def test_components_are_transitive_within_a_cluster():
    """a~b and b~c at cosine 0.96 join a and c (cosine 0.843) at epsilon 0.05."""
    angle = np.arccos(0.96)
    chain = np.array([[np.cos(t * angle), np.sin(t * angle), 0, 0] for t in range(3)], dtype=np.float32)
    far = np.array([[0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float32)
    x = np.concatenate([chain[[2]], far[[0]], chain[[0]], far[[1]], chain[[1]]])  # c, far, a, far, b
    result = semantic_duplicates(x, epsilon=0.05, n_clusters=1)
    assert result.kept_index.tolist() == [0, 1, 0, 3, 0]
    np.testing.assert_allclose(result.similarity[[2, 4]], [np.cos(2 * angle), 0.96], rtol=0, atol=cosine_atol(4))
    assert result.similarity[2] < 0.95  # joined only through b


def test_blocked_similarities_match_all_pairs(monkeypatch):
    """One cluster holding every row: the components equal those of the all-pairs graph, whether the
    cluster's similarities are computed at once or in blocks of a few rows."""
    rng = np.random.default_rng(2)
    base = unit_rows(rng, 150, 16)
    x = np.repeat(base, 3, axis=0) + 0.035 * rng.standard_normal((450, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    expected = all_pairs_kept(x, 0.03)
    removed = np.flatnonzero(expected != np.arange(450))
    assert 200 < len(removed) < 300  # most triples merge, some only partly
    whole = semantic_duplicates(x, epsilon=0.03, n_clusters=1)
    assert (whole.similarity[removed] <= 0.97).any()  # some rows joined only transitively
    monkeypatch.setattr(semantic, "_BLOCK_ENTRIES", 1000)  # blocks of 2 rows
    blocked = semantic_duplicates(x, epsilon=0.03, n_clusters=1)
    np.testing.assert_array_equal(whole.kept_index, expected)
    np.testing.assert_array_equal(blocked.kept_index, expected)
    np.testing.assert_array_equal(blocked.similarity, whole.similarity)


def test_probes_find_duplicates_split_across_clusters():
    """Two groups around e1 and e2, and a pair at cosine 0.985 straddling their border: k-means puts
    the pair in different clusters, so only probes=2 compares it."""
    rng = np.random.default_rng(9)
    groups = np.eye(8, dtype=np.float32)[[0] * 20 + [1] * 20] + 0.02 * rng.standard_normal((40, 8)).astype(np.float32)
    angles = np.radians([40, 50])
    pair = np.zeros((2, 8), dtype=np.float32)
    pair[:, 0], pair[:, 1] = np.cos(angles), np.sin(angles)
    x = np.concatenate([groups, pair])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels, _ = spherical_kmeans(x, 2, seed=0)
    assert labels[40] == labels[0] != labels[41] == labels[20]  # the pair is split
    one = semantic_duplicates(x, epsilon=0.05, n_clusters=2, probes=1)
    assert one.kept_index[40:].tolist() == [40, 41]
    two = semantic_duplicates(x, epsilon=0.05, n_clusters=2, probes=2)
    assert two.kept_index[40:].tolist() == [40, 40]
    np.testing.assert_allclose(two.similarity[41], np.cos(np.radians(10)), rtol=0, atol=cosine_atol(8))
    assert two.kept_index[:40].tolist() == one.kept_index[:40].tolist()


def test_probes_over_all_clusters_compare_all_pairs(monkeypatch):
    rng = np.random.default_rng(10)
    base = unit_rows(rng, 100, 16)
    x = np.repeat(base, 3, axis=0) + 0.035 * rng.standard_normal((300, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    monkeypatch.setattr(semantic, "_BLOCK_ENTRIES", 500)  # blocks of a few rows
    result = semantic_duplicates(x, epsilon=0.03, n_clusters=6, probes=6)
    np.testing.assert_array_equal(result.kept_index, all_pairs_kept(x, 0.03))


# --- keep policies -----------------------------------------------------------------------------


def test_keep_longest_picks_the_largest_length_ties_to_the_lowest_index():
    rng = np.random.default_rng(3)
    x = unit_rows(rng, 8, 16)
    x[[2, 5, 6]] = x[1]  # group {1, 2, 5, 6}
    x[7] = x[0]  # group {0, 7}
    lengths = np.array([10, 3, 9, 1, 1, 9, 4, 10])
    longest = semantic_duplicates(x, keep="longest", lengths=lengths, n_clusters=2)
    assert longest.kept_index.tolist() == [0, 2, 2, 3, 4, 2, 2, 0]
    first = semantic_duplicates(x, keep="first", lengths=lengths, n_clusters=2)
    assert first.kept_index.tolist() == [0, 1, 1, 3, 4, 1, 1, 0]
    with pytest.raises(ValueError, match="lengths"):
        semantic_duplicates(x, keep="longest")
    with pytest.raises(ValueError, match="keep policy"):
        semantic_duplicates(x, keep="shortest")


# --- k-means -----------------------------------------------------------------------------------


def test_spherical_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(4)
    truth = np.repeat(np.arange(4), 30)
    x = np.eye(32, dtype=np.float32)[truth * 8] + 0.05 * rng.standard_normal((120, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels, centroids = spherical_kmeans(x, 4, seed=0)
    assert centroids.shape == (4, 32)
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=0, atol=cosine_atol(32))
    # Same partition up to renaming: each true cluster maps to exactly one label.
    pairs = set(zip(truth.tolist(), labels.tolist()))
    assert len(pairs) == 4 and len({label for _, label in pairs}) == 4


def test_kmeans_with_fewer_distinct_rows_than_clusters_keeps_identical_rows_together():
    rng = np.random.default_rng(9)
    # 3 distinct rows, 5 copies each, of norm 1 - 1e-5 (as from float32 rounding): x.x < 1
    x = np.repeat(unit_rows(rng, 3, 16), 5, axis=0) * np.float32(1 - 1e-5)
    for max_iter in (0, 20):  # seeding alone stops at the 3 distinct rows
        labels, centroids = spherical_kmeans(x, 10, seed=0, max_iter=max_iter)
        assert len(centroids) == 3
        assert all(len(set(labels[i * 5 : i * 5 + 5])) == 1 for i in range(3))
    result = semantic_duplicates(x, n_clusters=10)
    assert result.n_clusters == 3
    assert result.kept_index.tolist() == [0] * 5 + [5] * 5 + [10] * 5


def test_results_are_deterministic_for_a_seed():
    rng = np.random.default_rng(5)
    originals = unit_rows(rng, 400, 32)
    x = np.concatenate([originals, at_cosine(rng, originals[:100], 0.97)])
    runs = [semantic_duplicates(x, seed=7) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].kept_index, runs[1].kept_index)
    np.testing.assert_array_equal(runs[0].similarity, runs[1].similarity)
    labels = [spherical_kmeans(x, 10, seed=s)[0] for s in (7, 7, 8)]
    np.testing.assert_array_equal(labels[0], labels[1])
    assert not np.array_equal(labels[0], labels[2])  # the seed matters


def test_sampled_fit_when_rows_exceed_the_points_per_centroid(monkeypatch):
    """With more rows than MAX_POINTS_PER_CENTROID * k, centroids come from a sample; every row is
    still assigned and the planted duplicates are still found."""
    monkeypatch.setattr(semantic, "MAX_POINTS_PER_CENTROID", 8)
    rng = np.random.default_rng(6)
    originals = unit_rows(rng, 300, 32)
    x = np.concatenate([originals, originals[:30]])
    result = semantic_duplicates(x, n_clusters=4)
    assert result.kept_index.tolist() == list(range(300)) + list(range(30))


# --- edge cases --------------------------------------------------------------------------------


def test_empty_single_and_fewer_rows_than_clusters():
    empty = semantic_duplicates(np.empty((0, 8), dtype=np.float32))
    assert empty.kept_index.shape == (0,) and empty.similarity.shape == (0,) and empty.n_clusters == 0
    assert empty.kept_index.dtype == np.int64 and empty.similarity.dtype == np.float32
    one = semantic_duplicates(np.eye(1, 8, dtype=np.float32))
    assert one.kept_index.tolist() == [0] and one.similarity.tolist() == [1.0] and one.n_clusters == 1
    x = np.eye(3, 8, dtype=np.float32)[[0, 1, 0]]
    few = semantic_duplicates(x, n_clusters=10)
    assert few.kept_index.tolist() == [0, 1, 0] and few.n_clusters == 2


def test_default_n_clusters():
    assert [default_n_clusters(n) for n in (0, 1, 2, 8, 20_000)] == [0, 1, 1, 2, 100]


def test_invalid_arguments_raise():
    x = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match="L2-normalised"):
        semantic_duplicates(2 * x)
    with pytest.raises(ValueError, match="epsilon"):
        semantic_duplicates(x, epsilon=0)
    with pytest.raises(ValueError, match="n_clusters"):
        semantic_duplicates(x, n_clusters=0)
    with pytest.raises(ValueError, match="probes"):
        semantic_duplicates(x, probes=0)
    with pytest.raises(ValueError, match="one length per row"):
        semantic_duplicates(x, keep="longest", lengths=np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        semantic_duplicates(np.ones(4, dtype=np.float32))


# --- scale -------------------------------------------------------------------------------------


def test_scale_planted_copies_among_random_vectors():
    """20,000 random 384-d vectors, 200 of them copies at cosine 0.99 of others: every copy points at
    its original and nothing else is merged (random pairs sit near cosine 0 +- 0.05)."""
    rng = np.random.default_rng(7)
    n, copies = 20_000, 200
    x = unit_rows(rng, n, 384)
    sources = rng.choice(n - copies, copies, replace=False)
    x[n - copies :] = at_cosine(rng, x[sources], 0.99)
    result = semantic_duplicates(x, epsilon=0.05)
    assert result.n_clusters == 100
    np.testing.assert_array_equal(result.kept_index[n - copies :], sources)
    np.testing.assert_array_equal(result.kept_index[: n - copies], np.arange(n - copies))
    np.testing.assert_allclose(result.similarity[n - copies :], 0.99, rtol=0, atol=cosine_atol(384))
