"""Deduplication: normalisation, exact dedup, MinHash, LSH and the combined `dedup_rows`."""
from __future__ import annotations

import collections
import hashlib
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHashLSH

from curate.dedup import dedup_rows
from curate.dedup import lsh as lsh_module
from curate.dedup.exact import choose_kept, exact_duplicates
from curate.dedup.lsh import LSHIndex, optimal_bands
from curate.dedup.minhash import MinHasher, estimated_jaccard
from curate.dedup.normalize import FIELD_SEPARATOR, dedup_text, normalize_text
from curate.schema import REMOVED, ROWS


def rows_table(records: list[tuple[str, str, str]], source: str = "pool.jsonl") -> pa.Table:
    """A ROWS table from (instruction, input, response); row_id is a digest of the exact content."""
    n = len(records)
    return pa.table(
        {
            "row_id": [hashlib.sha256(repr(r).encode()).hexdigest()[:32] for r in records],
            "source": [source] * n,
            "position": list(range(n)),
            "system": [""] * n,
            "context": [[] for _ in records],
            "instruction": [r[0] for r in records],
            "input": [r[1] for r in records],
            "response": [r[2] for r in records],
            "skill": [None] * n,
            "truth": [None] * n,
        },
        schema=ROWS,
    )


def word_doc(rng: np.random.Generator, n_words: int, vocab: int = 5000) -> list[str]:
    return [f"w{x}" for x in rng.integers(0, vocab, n_words)]


def shingle_set(words: list[str], n: int = 3) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)} if len(words) >= n else {tuple(words)}


def exact_jaccard(a: list[str], b: list[str]) -> float:
    sa, sb = shingle_set(a), shingle_set(b)
    return len(sa & sb) / len(sa | sb)


# --- normalisation ---------------------------------------------------------------------------


def test_normalize_text_folds_unicode_case_and_whitespace():
    assert normalize_text("  Ｈｅｌｌｏ\u00a0\tWORLD\n\n Straße ") == "hello world strasse"
    assert normalize_text("ﬁne  Day", casefold=False) == "fine Day"


def test_dedup_text_keeps_fields_apart():
    assert dedup_text("ab", "", "c") != dedup_text("a", "", "bc")
    assert dedup_text("q", "", "a") != dedup_text("q", "a", "")
    assert dedup_text("Q ", "", "A", context=["Hi"]) == FIELD_SEPARATOR.join(["hi", "q", "", "a"])


# --- exact -----------------------------------------------------------------------------------


def test_exact_dedup_removes_case_whitespace_and_nfkc_variants_keep_first():
    records = [
        ("Name a colour", "", "Blue is a colour."),
        ("name a COLOUR", "", "blue is a colour."),  # case
        ("Name  a\tcolour ", "", "Blue is a\n colour."),  # whitespace
        ("Ｎａｍｅ a colour", "", "Blue is a colour."),  # full-width (NFKC)
        ("Name a colour", "", "Red is a colour."),  # different response: kept
    ]
    table = rows_table(records)
    result = dedup_rows(table, near=False)
    assert result.removed["position"].to_pylist() == [1, 2, 3]
    assert set(result.removed["reason"].to_pylist()) == {"exact"}
    assert set(result.removed["duplicate_of"].to_pylist()) == {table["row_id"][0].as_py()}
    assert result.removed["similarity"].to_pylist() == [1.0, 1.0, 1.0]
    assert result.kept["position"].to_pylist() == [0, 4]
    assert result.stats["removed_exact"] == 3 and result.stats["removed_near"] == 0
    assert result.stats["clusters"] == 1 and result.stats["largest_cluster"] == 4


def test_casefold_off_keeps_case_variants():
    table = rows_table([("Name a colour", "", "Blue."), ("NAME A COLOUR", "", "BLUE."), ("Name a colour", "", "Blue.")])
    result = dedup_rows(table, casefold=False, near=False)
    assert result.removed["position"].to_pylist() == [2]


def test_keep_longest_keeps_longest_response_ties_first():
    records = [
        ("Say hi", "", "Hello world"),
        ("say hi", "", "hello   world"),  # same normalised text, longer raw response
        ("say HI", "", "HELLO   WORLD"),  # as long: the tie goes to the earlier row
        ("Other", "", "x"),
    ]
    table = rows_table(records)
    result = dedup_rows(table, near=False, keep="longest")
    assert result.kept["position"].to_pylist() == [1, 3]
    assert set(result.removed["duplicate_of"].to_pylist()) == {table["row_id"][1].as_py()}


def test_choose_kept_policies():
    groups = np.array([5, 5, 7, 5, 7, 9])
    lengths = np.array([1, 3, 2, 3, 4, 0])
    assert choose_kept(groups, keep="first").tolist() == [0, 0, 2, 0, 2, 5]
    assert choose_kept(groups, keep="longest", lengths=lengths).tolist() == [1, 1, 4, 1, 4, 5]
    with pytest.raises(ValueError):
        choose_kept(groups, keep="longest")
    assert exact_duplicates(["a", "b", "a"]).tolist() == [0, 1, 0]


def test_exact_off_leaves_identical_rows_to_near():
    table = rows_table([("q", "", "one two three four"), ("Q", "", "one two  three four"), ("z", "", "five six")])
    result = dedup_rows(table, exact=False)
    assert [(r["position"], r["reason"], r["similarity"]) for r in result.removed.to_pylist()] == [(1, "near", 1.0)]
    assert dedup_rows(table, exact=False, near=False).removed.num_rows == 0


def test_byte_identical_copies_each_listed_once():
    table = rows_table([("q", "", "a")] * 3 + [("other", "", "b")])
    result = dedup_rows(table)
    removed = result.removed.to_pylist()
    assert [r["position"] for r in removed] == [1, 2]
    assert all(r["duplicate_of"] == r["row_id"] == table["row_id"][0].as_py() for r in removed)


# --- MinHash -------------------------------------------------------------------------------


def _reference_signature(hasher: MinHasher, text: str) -> np.ndarray:
    """The signature computed one value at a time, straight from the definitions in minhash.py."""
    mask = (1 << 64) - 1

    def fmix(h: int) -> int:
        h ^= h >> 33
        h = (h * 0xFF51AFD7ED558CCD) & mask
        h ^= h >> 33
        h = (h * 0xC4CEB9FE1A85EC53) & mask
        return h ^ (h >> 33)

    def word_hash(word: str) -> int:
        data = word.encode()
        h = (len(data) * 0x2545F4914F6CDD1D) & mask
        for i in range(0, len(data), 8):
            h = fmix(h ^ int.from_bytes(data[i : i + 8], "little"))
        return h

    words = text.split()
    n = hasher.ngram
    shingles = [words[i : i + n] for i in range(len(words) - n + 1)] if len(words) >= n else [words]
    values = []
    for shingle in shingles:
        h = 0
        for w in shingle:
            h = (h * 0x9E3779B97F4A7C15 + word_hash(w)) & mask
        values.append(h >> 32)
    return np.array([min((int(a) * x + int(b)) % 2**32 for x in values) for a, b in zip(hasher.a, hasher.b)])


def test_signatures_match_the_definition():
    hasher = MinHasher(num_perm=16, ngram=3, seed=3)
    rng = np.random.default_rng(0)
    texts = [
        "one two three four five",
        "two words",
        "",
        " padded  text\twith\nspaces ",
        "unicode ñandú 😀 and a-very-long-hyphenated-word-over-eight-bytes",
        "x\x1fy z\x01w",  # \x1f splits (as in str.split), \x01 does not
        " ".join(word_doc(rng, 9000)),  # spans several shingle chunks
    ]
    signatures = hasher.signatures(texts)
    assert signatures.shape == (len(texts), 16) and signatures.dtype == np.uint32
    for text, signature in zip(texts, signatures):
        assert np.array_equal(signature, _reference_signature(hasher, text)), text[:40]


def test_signatures_independent_of_batching(monkeypatch):
    from curate.dedup import minhash

    texts = ["a b c d", "x y", "", None, "p q r s t u v"] * 5
    hasher = MinHasher(num_perm=32)
    whole = hasher.signatures(texts)
    monkeypatch.setattr(minhash, "_DOCS_PER_BATCH", 3)
    assert np.array_equal(hasher.signatures(texts), whole)
    assert np.array_equal(hasher.signatures(pa.chunked_array([pa.array(texts[:4]), pa.array(texts[4:])])), whole)


def test_short_documents_are_one_shingle():
    sig = MinHasher(num_perm=64).signatures(["a b", "a  b", "b a", "", "  ", "a b c"])
    assert np.array_equal(sig[0], sig[1]) and np.array_equal(sig[3], sig[4])
    assert estimated_jaccard(sig[0], sig[2]) < 0.2 and estimated_jaccard(sig[0], sig[5]) < 0.2


def test_estimate_close_to_exact_jaccard():
    rng = np.random.default_rng(1)
    hasher = MinHasher(num_perm=256, seed=5)
    for replace_fraction in (0.0, 0.03, 0.08, 0.15, 0.3):
        base = word_doc(rng, 200)
        other = [w if rng.random() >= replace_fraction else f"new{i}" for i, w in enumerate(base)]
        sig = hasher.signatures([" ".join(base), " ".join(other)])
        assert abs(estimated_jaccard(sig[0], sig[1]) - exact_jaccard(base, other)) <= 0.1


def test_signatures_identical_across_processes():
    texts = ["the same text in two processes", "Ünïcode wörds 😀", "a b"]
    here = hashlib.sha256(MinHasher(num_perm=64, seed=9).signatures(texts).tobytes()).hexdigest()
    code = (
        "import hashlib, sys; from curate.dedup.minhash import MinHasher; "
        f"print(hashlib.sha256(MinHasher(num_perm=64, seed=9).signatures({texts!r}).tobytes()).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    there = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert there.stdout.strip() == here
    assert MinHasher(num_perm=64, seed=10).signatures(texts).tobytes() != bytes.fromhex(here)


# --- LSH -----------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
def test_optimal_bands_match_datasketch(threshold):
    reference = MinHashLSH(threshold=threshold, num_perm=128)
    assert optimal_bands(threshold, 128) == (reference.b, reference.r)
    candidate = lambda s, b, r: 1 - (1 - s**r) ** b  # noqa: E731
    bands, rows = optimal_bands(threshold, 128, 0.9)  # recall-leaning, as LSHIndex uses
    assert bands * rows <= 128
    assert candidate(threshold, bands, rows) > candidate(threshold, reference.b, reference.r) + 0.1


def test_band_keys_depend_on_every_row_of_their_band():
    index = LSHIndex(0.7, 128)
    signatures = np.tile(np.arange(128, dtype=np.uint32), (index.rows + 1, 1))
    for row in range(index.rows):
        signatures[row + 1, row] += 1  # signature row+1 differs from signature 0 in band 0, row `row`
    keys = index.band_keys(signatures)
    assert len(set(keys[:, 0].tolist())) == index.rows + 1
    assert (keys[:, 1:] == keys[0, 1:]).all()


def test_lsh_index_query_and_add():
    rng = np.random.default_rng(2)
    hasher = MinHasher()
    docs = [word_doc(rng, 80) for _ in range(30)]
    index = LSHIndex(0.7, hasher.num_perm, hasher_params=hasher.params)
    index.add([f"id{i}" for i in range(30)], hasher.signatures([" ".join(d) for d in docs]))
    near = docs[7][:-2] + ["changed", "words"]
    query = hasher.signatures([" ".join(near), " ".join(word_doc(rng, 80))])
    q, hit = index.query(query)
    assert list(zip(q.tolist(), hit.tolist())) == [(0, 7)]

    index.add(["id30"], query[1:], keys=index.band_keys(query[1:]))  # the new keeper is found by later queries
    q, hit = index.query(query[1:])
    assert list(zip(q.tolist(), hit.tolist())) == [(0, 30)] and index.ids[30] == "id30"
    with pytest.raises(ValueError, match="band keys"):
        index.add(["id31"], query[1:], keys=np.zeros((1, index.bands + 1), dtype=np.uint64))


def test_large_buckets_pair_with_their_first_member(monkeypatch):
    index = LSHIndex(0.7, 32)
    index.add(list("abcde"), np.zeros((5, 32), dtype=np.uint32))
    assert len(index.candidate_pairs()[0]) == 10  # all pairs of the bucket
    monkeypatch.setattr(lsh_module, "MAX_ALL_PAIRS_BUCKET", 3)
    left, right = index.candidate_pairs()
    assert list(zip(left.tolist(), right.tolist())) == [(0, 1), (0, 2), (0, 3), (0, 4)]


# --- near-duplicate dedup ------------------------------------------------------------------


def test_near_duplicates_removed_unrelated_kept():
    rng = np.random.default_rng(3)
    originals = [word_doc(rng, 60) for _ in range(40)]
    copies = []
    for k in range(0, 40, 4):  # one or two words changed: Jaccard ~0.85-0.95
        doc = list(originals[k])
        for _ in range(1 + k % 2):
            doc[rng.integers(0, 60)] = f"edit{k}"
        copies.append(doc)
    records = [("Summarise", "", " ".join(d)) for d in originals + copies]
    table = rows_table(records)
    result = dedup_rows(table)
    removed = result.removed.to_pylist()
    assert [r["position"] for r in removed] == list(range(40, 50))
    assert [r["duplicate_of"] for r in removed] == [table["row_id"][k].as_py() for k in range(0, 40, 4)]
    assert all(r["reason"] == "near" and r["similarity"] >= 0.7 for r in removed)
    assert result.stats["removed_near"] == 10 and result.stats["kept"] == 40


def test_transitive_chain_is_one_cluster():
    words = [f"t{i}" for i in range(100)]
    a = words
    b = words[:92] + [f"b{i}" for i in range(8)]  # J(a, b) = 90/106 = 0.85
    c = [f"c{i}" for i in range(8)] + b[8:]  # J(b, c) = 0.85, J(a, c) = 82/114 = 0.72
    table = rows_table([("q", "", " ".join(d)) for d in (a, b, c)])
    sig = MinHasher(num_perm=256).signatures([" ".join(d) for d in (a, b, c)])
    assert estimated_jaccard(sig[0], sig[2]) < 0.78
    assert min(estimated_jaccard(sig[0], sig[1]), estimated_jaccard(sig[1], sig[2])) > 0.78
    result = dedup_rows(table, num_perm=256, threshold=0.78)
    assert result.kept["position"].to_pylist() == [0]
    removed = result.removed.to_pylist()
    assert [r["duplicate_of"] for r in removed] == [table["row_id"][0].as_py()] * 2
    assert removed[1]["similarity"] < 0.78  # joined through b, not directly
    assert result.stats["clusters"] == 1 and result.stats["largest_cluster"] == 3


def test_result_schemas_and_order():
    table = rows_table([("q", "", "a b c d"), ("z", "", "e f g h"), ("Q", "", "A B C D")])
    result = dedup_rows(table)
    assert result.kept.schema == ROWS and result.removed.schema == REMOVED
    assert result.kept["position"].to_pylist() == [0, 1]
    empty = dedup_rows(table.slice(0, 0))
    assert empty.kept.num_rows == 0 and empty.removed.num_rows == 0 and empty.removed.schema == REMOVED
    assert empty.stats["largest_cluster"] == 0


def test_demo_pool_duplicates_removed_clean_rows_kept():
    from curate.demo.pool import generate_pool

    pool = generate_pool(5000, seed=0)
    table = rows_table([(r["instruction"], r["input"], r["output"]) for r in pool])
    removed = dedup_rows(table).removed["position"].to_pylist()
    total = collections.Counter(r["truth"] for r in pool)
    hit = collections.Counter(pool[p]["truth"] for p in removed)
    assert total["exact_dup"] and total["near_dup"]
    assert hit["exact_dup"] >= 0.99 * total["exact_dup"]
    assert hit["near_dup"] >= 0.95 * total["near_dup"]
    assert hit["clean"] <= 0.01 * total["clean"]
