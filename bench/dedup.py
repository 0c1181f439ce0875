"""Benchmark: MinHash signature throughput vs datasketch, LSH recall/precision vs exact Jaccard, and the
end-to-end near-duplicate pipeline vs the same pipeline built on datasketch.

Corpus (fixed seed, generated with numpy in batches of BATCH_DOCS, so 1,000,000 documents take
seconds and little memory; the first k documents are the same whatever the total): originals of
150-250 words drawn from a Zipf-distributed vocabulary of 50,000 random words, and after 5 % of
them a near-duplicate copy with a fraction U(0, 0.08) of its words substituted (word-3-gram
Jaccard to the original roughly 0.65-1).

1. Signatures (num_perm 128, word 3-grams) on the first 200,000 documents as Python strings: ours,
   `MinHasher.signatures`, text in -> signatures out (tokenising, word and shingle hashing
   included). datasketch 2.0: Python word 3-gram shingling + `MinHash.bulk(num_perm=128)` (its
   default SHA-1 hashing), timed on a prefix (it runs ~4k docs/s), the two timed in alternating
   slices (ours 20k docs, theirs 2k docs, ten times), in one process. docs/s from wall time (ours
   uses both cores); CPU-time rates are recorded too.
2. LSH at threshold 0.8 on the first SAMPLE documents: the truth is every pair with exact word-3-gram
   Jaccard >= 0.8, found by an exact all-pairs similarity join (prefix filtering, Chaudhuri et al.
   2006 / Xiao et al. 2008: with shingles ordered rarest first, two sets with J >= t share one of
   the first |S| - ceil(t |S|) + 1 shingles of each). Reported: raw LSH candidates (bucket
   collisions) and verified pairs (candidates whose exact shingle Jaccard is >= 0.8: what `dedup_rows`
   acts on with `dedup.near.verify: exact`, the default), each with recall and precision against the
   truth; the entries' `note` field also gives signature verification (agreement on >= 80 % of positions, `verify:
   signature`); datasketch's
   `MinHashLSH(threshold=0.8)` candidates on the same sample are in that field for comparison.
3. End to end, threshold 0.8: shingling + signatures + LSH candidates + clustering (connected
   components of the pairs). Ours (`MinHasher` per batch, `LSHIndex`, exact verification of the
   candidates from a second pass over the corpus that shingles only the candidates' documents, scipy
   components) on E2E_DOCS documents, in a child process so that its peak RSS is its own (document generation
   runs in the same process, is timed apart and not counted). datasketch: Python shingling,
   `MinHash.bulk`, `MinHashLSH` (insertion session, then a query per document) and a Python
   union-find, on E2E_BASELINE_DOCS documents, its time scaled linearly to E2E_DOCS (its costs are
   per document; LSH buckets stay small on this corpus). Ours also runs on E2E_BASELINE_DOCS for the
   same-size ratio.

Run: .venv/bin/python bench/dedup.py
"""
from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _record import machine_info, record, utc_now  # noqa: E402
from datasketch import MinHash, MinHashLSH  # noqa: E402

from curate.dedup import _components  # noqa: E402
from curate.dedup.jaccard import exact_jaccard, shingle_sets  # noqa: E402
from curate.dedup.lsh import LSHIndex  # noqa: E402
from curate.dedup.minhash import MinHasher, estimated_jaccard  # noqa: E402

N_DOCS, NEAR_DUP_RATE = 200_000, 0.05
VOCAB, ZIPF_EXPONENT = 50_000, 1.1
NUM_PERM, NGRAM, SEED = 128, 3, 0
DATASKETCH_PREFIX = 20_000
SLICES = 10  # ours and datasketch are timed in alternating slices
SAMPLE, LSH_THRESHOLD = 20_000, 0.8
BATCH_DOCS = 20_000
E2E_DOCS, E2E_BASELINE_DOCS = 1_000_000, 100_000
COMMAND = ".venv/bin/python bench/dedup.py"
MAX_WORD_BYTES = 15  # + the space after it: 16 bytes per vocabulary slot


def vocabulary(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """VOCAB distinct random words as a (VOCAB, 16) byte table (each word followed by a space), their
    byte lengths + 1, and the Zipf cumulative distribution over them."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words, seen = [], set()
    while len(words) < VOCAB:
        word = "".join(rng.choice(letters, size=int(rng.integers(2, 11))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    table = np.zeros((VOCAB, MAX_WORD_BYTES + 1), dtype=np.uint8)
    for i, word in enumerate(words):
        table[i, : len(word) + 1] = np.frombuffer(word.encode() + b" ", dtype=np.uint8)
    p = 1.0 / np.arange(1, VOCAB + 1) ** ZIPF_EXPONENT
    return table, np.array([len(w) + 1 for w in words]), np.cumsum(p / p.sum())


def corpus_batches(n_docs: int, seed: int = SEED):
    """The corpus (see the module docstring) as pyarrow string arrays of BATCH_DOCS documents."""
    table, slot_bytes, cdf = vocabulary(np.random.default_rng(seed))
    in_slot = np.arange(MAX_WORD_BYTES + 1) < slot_bytes[:, None]  # the bytes of each slot that are the word + space
    for index, start in enumerate(range(0, n_docs, BATCH_DOCS)):
        rng = np.random.default_rng([seed, index])
        size = min(BATCH_DOCS, n_docs - start)
        n_originals = round(size / (1 + NEAR_DUP_RATE))
        lengths = rng.integers(150, 251, size=n_originals)
        words = np.minimum(np.searchsorted(cdf, rng.random(int(lengths.sum()))), VOCAB - 1)
        copies = np.zeros(n_originals, dtype=np.int64)
        copies[rng.choice(n_originals, size - n_originals, replace=False)] = 1
        source = np.repeat(np.arange(n_originals), 1 + copies)  # original i, then its copy if it has one
        is_copy = np.r_[False, source[1:] == source[:-1]]
        doc_lengths = lengths[source]
        doc_starts = np.cumsum(doc_lengths) - doc_lengths
        within = np.arange(int(doc_lengths.sum())) - np.repeat(doc_starts, doc_lengths)
        tokens = words[np.repeat((np.cumsum(lengths) - lengths)[source], doc_lengths) + within]
        rate = np.where(is_copy, rng.uniform(0.0, 0.08, size=len(source)), 0.0)
        substituted = rng.random(len(tokens)) < np.repeat(rate, doc_lengths)
        tokens[substituted] = np.minimum(np.searchsorted(cdf, rng.random(int(substituted.sum()))), VOCAB - 1)
        data = table[tokens][in_slot[tokens]]  # every word followed by a space
        offsets = np.concatenate(([0], np.cumsum(np.add.reduceat(slot_bytes[tokens], doc_starts))))
        yield pa.LargeStringArray.from_buffers(len(source), pa.py_buffer(offsets), pa.py_buffer(data))


def timed(function, *args) -> tuple[tuple, float, float]:
    """(result,), wall seconds, CPU seconds of this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return (result,), time.perf_counter() - wall, time.process_time() - cpu


def python_shingles(text: str) -> list[bytes]:
    words = text.split()
    return [" ".join(words[i : i + NGRAM]).encode() for i in range(len(words) - NGRAM + 1)]


def exact_similar_pairs(docs: list[str], threshold: float) -> tuple[set[tuple[int, int]], int]:
    """Every pair (i < j) with exact word-3-gram Jaccard >= threshold (prefix-filtered join), and
    the number of pairs whose Jaccard was computed."""
    ids: dict[tuple[str, ...], int] = {}
    sets = []
    for text in docs:
        words = text.split()
        sets.append({ids.setdefault(tuple(words[i : i + NGRAM]), len(ids)) for i in range(len(words) - NGRAM + 1)})
    counts = np.zeros(len(ids), dtype=np.int64)
    for s in sets:
        counts[list(s)] += 1
    frequency = counts.tolist()
    postings: dict[int, list[int]] = {}
    for doc, s in enumerate(sets):
        prefix = len(s) - math.ceil(threshold * len(s) - 1e-9) + 2  # one longer than needed: safe
        for shingle in sorted(s, key=lambda x: (frequency[x], x))[:prefix]:
            postings.setdefault(shingle, []).append(doc)
    candidates = {(a, b) for docs_ in postings.values() for i, a in enumerate(docs_) for b in docs_[i + 1 :]}
    truth = {(a, b) for a, b in candidates if len(sets[a] & sets[b]) >= threshold * len(sets[a] | sets[b])}
    return truth, len(candidates)


def recall_precision(found: set, truth: set) -> tuple[float, float]:
    hits = len(found & truth)
    return hits / max(len(truth), 1), hits / max(len(found), 1)


def verify_exactly(hasher: MinHasher, batches, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, float]:
    """Exact Jaccard of the candidate pairs, from one pass over `batches` (the corpus again) that
    shingles only the candidates' documents, and the seconds spent outside generating the batches."""
    wanted = np.union1d(left, right)
    sets, offset, spent = {}, 0, 0.0
    while True:
        batch = next(batches, None)  # generating the corpus again is not counted
        t1 = time.perf_counter()
        if batch is None:
            break
        lo, hi = np.searchsorted(wanted, [offset, offset + len(batch)])
        local = wanted[lo:hi] - offset
        if len(local):
            sets.update(zip((local + offset).tolist(), shingle_sets(hasher, batch.take(pa.array(local)))))
        offset += len(batch)
        spent += time.perf_counter() - t1
    t0 = time.perf_counter()
    similarity = exact_jaccard(sets, left, right)
    return similarity, spent + time.perf_counter() - t0


def end_to_end_ours(n_docs: int) -> dict:
    """Our pipeline on the first n_docs documents (see the module docstring); generation timed apart."""
    hasher = MinHasher(num_perm=NUM_PERM, ngram=NGRAM, seed=1)
    batches, parts = corpus_batches(n_docs), []
    generate_s = sign_s = 0.0
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        generate_s += time.perf_counter() - t0
        if batch is None:
            break
        t0 = time.perf_counter()
        parts.append(hasher.signatures(batch))
        sign_s += time.perf_counter() - t0
    t0 = time.perf_counter()
    signatures = np.concatenate(parts)
    del parts
    index = LSHIndex(LSH_THRESHOLD, NUM_PERM, hasher_params=hasher.params)
    index.add(np.arange(n_docs), signatures)
    left, right = index.candidate_pairs()
    lsh_s = time.perf_counter() - t0
    similarity, verify_s = verify_exactly(hasher, corpus_batches(n_docs), left, right)
    t0 = time.perf_counter()
    is_pair = similarity >= LSH_THRESHOLD
    sizes = np.bincount(_components(n_docs, left[is_pair], right[is_pair]))
    lsh_s += time.perf_counter() - t0
    return {"docs": n_docs, "seconds": sign_s + lsh_s + verify_s, "signatures_s": sign_s,
            "lsh_and_clusters_s": lsh_s, "exact_verify_s": verify_s, "generate_s": generate_s, "candidates": len(left), "verified_pairs": int(is_pair.sum()),
            "clusters": int((sizes > 1).sum()), "rows_in_clusters": int(sizes[sizes > 1].sum()),
            "threads": hasher.threads, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> int:
    """This process's peak resident set (VmHWM; ru_maxrss would include the parent's RSS at fork, since
    Linux keeps it across execve)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def end_to_end_datasketch(n_docs: int) -> dict:
    """The same pipeline on datasketch (MinHash.bulk, MinHashLSH, a Python union-find)."""
    docs = [text for batch in corpus_batches(n_docs) for text in batch.to_pylist()]
    t0 = time.perf_counter()
    minhashes = []
    for lo in range(0, n_docs, 10_000):  # shingle lists of all documents at once would take gigabytes
        minhashes += MinHash.bulk([python_shingles(t) for t in docs[lo : lo + 10_000]], num_perm=NUM_PERM)
    sign_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=LSH_THRESHOLD, num_perm=NUM_PERM)
    with lsh.insertion_session() as session:
        for i, m in enumerate(minhashes):
            session.insert(i, m)
    parent = list(range(n_docs))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    candidates = 0
    for i, m in enumerate(minhashes):
        for j in lsh.query(m):
            if j != i:
                candidates += 1
                parent[find(i)] = find(j)
    roots = np.array([find(i) for i in range(n_docs)])
    sizes = np.bincount(roots)
    lsh_s = time.perf_counter() - t0
    return {"docs": n_docs, "seconds": sign_s + lsh_s, "signatures_s": sign_s, "lsh_and_clusters_s": lsh_s,
            "candidates": candidates // 2, "clusters": int((sizes > 1).sum()),
            "rows_in_clusters": int(sizes[sizes > 1].sum())}


def run_child(*args: str) -> dict:
    """Run this script with `args` in a child process and return the JSON it prints last."""
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def end_to_end_entry(common: dict) -> dict:
    load_before = os.getloadavg()
    ours_small = run_child("--end-to-end-ours", str(E2E_BASELINE_DOCS))
    print(f"end to end, ours on {E2E_BASELINE_DOCS}: {ours_small}", flush=True)
    theirs = run_child("--end-to-end-datasketch", str(E2E_BASELINE_DOCS))
    print(f"end to end, datasketch on {E2E_BASELINE_DOCS}: {theirs}", flush=True)
    ours = run_child("--end-to-end-ours", str(E2E_DOCS))
    print(f"end to end, ours on {E2E_DOCS}: {ours}", flush=True)
    baseline_s = theirs["seconds"] * E2E_DOCS / E2E_BASELINE_DOCS
    return {
        "benchmark": "dedup",
        "metric": "end-to-end near-dup vs datasketch pipeline",
        "value": round(ours["seconds"], 2),
        "unit": "seconds",
        "baseline": f"datasketch 2.0 pipeline (Python shingling, MinHash.bulk, MinHashLSH, union-find), "
                    f"measured on {E2E_BASELINE_DOCS} docs, scaled linearly to {E2E_DOCS}",
        "baseline_value": round(baseline_s, 1),
        "ratio": round(baseline_s / ours["seconds"], 2),
        "n_docs": E2E_DOCS,
        "threshold": LSH_THRESHOLD,
        "num_perm": NUM_PERM,
        "peak_rss_mb": ours["peak_rss_mb"],
        "aims": {"seconds": 180, "peak_rss_mb": 4096},
        "ours": ours,
        "ours_at_baseline_size": ours_small,
        "ratio_at_baseline_size": round(theirs["seconds"] / ours_small["seconds"], 2),
        "datasketch_at_baseline_size": theirs,
        "load_average_1_5_15": {"before": [round(x, 2) for x in load_before],
                                "after": [round(x, 2) for x in os.getloadavg()]},
        "note": (
            "seconds = shingling + signatures + LSH candidates + clustering (document generation excluded, "
            "timed in `ours.generate_s`); ours verifies candidates by exact shingle Jaccard (a second pass "
            "over the corpus shingles only the candidates' documents, `ours.exact_verify_s`) before the components, datasketch clusters its raw candidates; each side in its own child process, "
            "peak RSS is ours' child process (generation included); the machine's 2 cores are shared with "
            "other work (load averages recorded)"
        ),
        **common,
    }


def main() -> None:
    t0 = time.perf_counter()
    docs = [text for batch in corpus_batches(N_DOCS) for text in batch.to_pylist()]
    megabytes = sum(len(d) for d in docs) / 1e6
    print(f"corpus: {len(docs)} docs, {megabytes:.0f} MB, {time.perf_counter() - t0:.1f} s", flush=True)

    hasher = MinHasher(num_perm=NUM_PERM, ngram=NGRAM, seed=1)
    hasher.signatures(docs[:2000])  # warm-up (first-touch allocations)
    # Alternating slices, so that both sides see the same background load on the shared cores.
    ours_step, theirs_step = N_DOCS // SLICES, DATASKETCH_PREFIX // SLICES
    signature_parts, theirs = [], []
    ours_wall = ours_cpu = shingle_wall = shingle_cpu = bulk_wall = bulk_cpu = 0.0
    for i in range(SLICES):
        (part,), wall, cpu = timed(hasher.signatures, docs[i * ours_step : (i + 1) * ours_step])
        signature_parts.append(part)
        ours_wall, ours_cpu = ours_wall + wall, ours_cpu + cpu
        their_docs = docs[i * theirs_step : (i + 1) * theirs_step]
        (shingled,), wall, cpu = timed(lambda d: [python_shingles(t) for t in d], their_docs)
        shingle_wall, shingle_cpu = shingle_wall + wall, shingle_cpu + cpu
        (minhashes,), wall, cpu = timed(lambda s: MinHash.bulk(s, num_perm=NUM_PERM), shingled)
        theirs += minhashes
        bulk_wall, bulk_cpu = bulk_wall + wall, bulk_cpu + cpu
    signatures = np.concatenate(signature_parts)
    # Wall-clock throughput is what a user waits for: ours uses every core (threads over batches),
    # datasketch runs in one Python thread. CPU-time rates are kept in the record too.
    ours_rate, ours_cpu_rate = N_DOCS / ours_wall, N_DOCS / ours_cpu
    print(f"ours: {N_DOCS} docs in {ours_wall:.2f} s wall ({ours_cpu:.2f} s CPU) = {ours_rate:,.0f} docs/s, {hasher.threads} threads")
    theirs_rate, bulk_rate = DATASKETCH_PREFIX / (shingle_wall + bulk_wall), DATASKETCH_PREFIX / bulk_wall
    theirs_cpu_rate = DATASKETCH_PREFIX / (shingle_cpu + bulk_cpu)
    print(
        f"datasketch: {DATASKETCH_PREFIX} docs, shingling {shingle_cpu:.2f} s + MinHash.bulk {bulk_cpu:.2f} s CPU "
        f"= {theirs_rate:,.0f} docs/s (bulk alone {bulk_rate:,.0f} docs/s; CPU time {theirs_cpu_rate:,.0f})",
        flush=True,
    )
    ratio = ours_rate / theirs_rate
    print(f"signature speedup: {ratio:.1f}x wall, {ours_cpu_rate / theirs_cpu_rate:.1f}x CPU time", flush=True)

    sample = docs[:SAMPLE]
    t0 = time.perf_counter()
    truth, joined = exact_similar_pairs(sample, LSH_THRESHOLD)
    truth_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = LSHIndex(LSH_THRESHOLD, NUM_PERM, hasher_params=hasher.params)
    index.add(np.arange(SAMPLE), signatures[:SAMPLE])
    left, right = index.candidate_pairs()
    similarity, _ = verify_exactly(hasher, iter([pa.array(sample, pa.large_string())]), left, right)
    is_pair = similarity >= LSH_THRESHOLD
    lsh_s = time.perf_counter() - t0
    by_signature = estimated_jaccard(index.signatures[left], index.signatures[right]) >= LSH_THRESHOLD
    candidates = set(zip(left.tolist(), right.tolist()))
    verified = set(zip(left[is_pair].tolist(), right[is_pair].tolist()))
    candidate_recall, candidate_precision = recall_precision(candidates, truth)
    pair_recall, pair_precision = recall_precision(verified, truth)
    signature_recall, signature_precision = recall_precision(
        set(zip(left[by_signature].tolist(), right[by_signature].tolist())), truth)
    print(
        f"LSH t={LSH_THRESHOLD} (b={index.bands}, r={index.rows}) on {SAMPLE} docs: {len(truth)} true pairs "
        f"(exact join {truth_s:.1f} s over {joined} prefix candidates); {len(candidates)} LSH candidates "
        f"recall {candidate_recall:.4f} precision {candidate_precision:.4f}; {len(verified)} verified "
        f"recall {pair_recall:.4f} precision {pair_precision:.4f} ({lsh_s:.2f} s); signature verification "
        f"recall {signature_recall:.4f} precision {signature_precision:.4f}",
        flush=True,
    )

    reference = MinHashLSH(threshold=LSH_THRESHOLD, num_perm=NUM_PERM)
    with reference.insertion_session() as session:
        for i, m in enumerate(theirs[:SAMPLE]):
            session.insert(i, m)
    theirs_pairs = {(min(i, j), max(i, j)) for i, m in enumerate(theirs[:SAMPLE]) for j in reference.query(m) if j != i}
    ds_recall, ds_precision = recall_precision(theirs_pairs, truth)
    print(f"datasketch MinHashLSH (b={reference.b}, r={reference.r}): {len(theirs_pairs)} candidates "
          f"recall {ds_recall:.4f} precision {ds_precision:.4f}", flush=True)

    date = utc_now()
    machine = machine_info(hasher.threads)
    common = {"command": COMMAND, "date": date, "machine": machine, "seed": SEED}
    lsh_note = (
        f"sample = first {SAMPLE} of the {N_DOCS} docs; truth = {len(truth)} pairs with exact word-3-gram "
        f"Jaccard >= {LSH_THRESHOLD} (prefix-filtered exact join); our LSHIndex b={index.bands}, r={index.rows} "
        f"(false negatives weighted 0.9); {len(candidates)} raw candidates, {len(verified)} pairs verified by "
        f"exact shingle Jaccard (verify: exact, the default); verified by signature agreement instead (verify: "
        f"signature): recall {signature_recall:.4f}, precision {signature_precision:.4f}; "
        f"datasketch MinHashLSH(threshold={LSH_THRESHOLD}) b={reference.b}, r={reference.r} on the same "
        f"sample: {len(theirs_pairs)} candidates, recall {ds_recall:.4f}, precision {ds_precision:.4f}"
    )
    entries = [
        {
            "benchmark": "dedup",
            "metric": "minhash signatures vs datasketch",
            "value": round(ours_rate, 1),
            "unit": "docs/s",
            "baseline": "datasketch 2.0 MinHash.bulk (+ Python word-3-gram shingling)",
            "baseline_value": round(theirs_rate, 1),
            "ratio": round(ratio, 2),
            "bar": 20,
            "n_docs": N_DOCS,
            "num_perm": NUM_PERM,
            "absolute_seconds": {
                "ours_cpu": round(ours_cpu, 3),
                "ours_wall": round(ours_wall, 3),
                "datasketch_shingling_cpu": round(shingle_cpu, 3),
                "datasketch_bulk_cpu": round(bulk_cpu, 3),
                "datasketch_shingling_wall": round(shingle_wall, 3),
                "datasketch_bulk_wall": round(bulk_wall, 3),
            },
            "cpu_docs_per_s": {"ours": round(ours_cpu_rate, 1), "datasketch": round(theirs_cpu_rate, 1)},
            "cpu_ratio": round(ours_cpu_rate / theirs_cpu_rate, 2),
            "threads": hasher.threads,
            "note": (
                f"docs/s from wall time (ours: {hasher.threads} threads over document batches; datasketch: one "
                f"Python thread; CPU-time rates in cpu_docs_per_s); ours on all {N_DOCS} docs (~200 Zipf words each, "
                f"{NEAR_DUP_RATE:.0%} near-duplicates), text in -> signatures out; datasketch on the first "
                f"{DATASKETCH_PREFIX} docs, Python shingling + MinHash.bulk, both timed in {SLICES} alternating "
                f"slices (bulk alone "
                f"{bulk_rate:,.0f} docs/s, ratio vs bulk alone {ours_rate / bulk_rate:.1f}x)"
            ),
            **common,
        },
    ]
    for metric, value in (
        ("near-dup candidate recall", candidate_recall),
        ("near-dup candidate precision", candidate_precision),
        ("near-dup verified pair recall", pair_recall),
        ("near-dup verified pair precision", pair_precision),
    ):
        entries.append({
            "benchmark": "dedup",
            "metric": metric,
            "threshold": LSH_THRESHOLD,
            "value": round(value, 4),
            "unit": "fraction",
            "baseline": "exact Jaccard",
            "baseline_value": 1.0,
            "ratio": round(value, 4),
            "note": lsh_note,
            **common,
        })
    entries[0]["peak_rss_mb"] = peak_rss_mb()
    entries[0]["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    del docs, signatures, theirs, reference
    entries.append(end_to_end_entry(common))
    record(ROOT / "bench/results/dedup.json", entries)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--end-to-end-ours":
        print(json.dumps(end_to_end_ours(int(sys.argv[2]))))
    elif len(sys.argv) == 3 and sys.argv[1] == "--end-to-end-datasketch":
        print(json.dumps(end_to_end_datasketch(int(sys.argv[2]))))
    else:
        main()
