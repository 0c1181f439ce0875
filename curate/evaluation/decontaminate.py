"""Decontamination: pool rows that overlap a held-out row are removed before selection and training.

A pool row overlaps a reference row (a held-out row, or a row of a benchmark set named by path) when
- it is a near-duplicate of it: the exact Jaccard similarity of their word n-gram shingle sets, over
  the rows' dedup texts (curate/dedup/normalize.py: earlier turns, instruction, input, response), is
  at least `threshold`. Candidates come from MinHash-LSH (curate/dedup/minhash.py, lsh.py) and are
  confirmed exactly (curate/dedup/jaccard.py), as near-duplicate dedup does; or
- its first user prompt, normalised, equals the reference's and has at least `min_prompt_words`
  words (a short prompt such as "hi" or "continue" is shared by unrelated conversations).
Each overlapping pool row is reported once, against its most similar reference row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa

from curate.dedup.jaccard import exact_jaccard, shingle_sets
from curate.dedup.lsh import LSHIndex
from curate.dedup.minhash import MinHasher
from curate.dedup.normalize import dedup_texts, normalize_text

REASON = "heldout_overlap"


@dataclass(frozen=True)
class Overlap:
    position: int  # the pool row's position
    reference: str  # row_id of the reference row it overlaps
    similarity: float  # exact shingle Jaccard of the two rows
    how: str  # "near-duplicate" or "same first prompt"


def first_prompt(context: Sequence[dict] | None, instruction: str, input_: str) -> str:
    """The conversation's first user turn (the instruction and input of a single-turn row), normalised."""
    users = [t["content"] or "" for t in context or () if t.get("role") == "user"]
    text = users[0] if users else f"{instruction or ''} {input_ or ''}"
    return normalize_text(text)


def _prompts(rows: pa.Table, min_words: int) -> list[str | None]:
    cols = rows.select(["context", "instruction", "input"]).to_pydict()
    prompts = [first_prompt(c, i, x) for c, i, x in zip(cols["context"], cols["instruction"], cols["input"])]
    return [p if len(p.split()) >= min_words else None for p in prompts]


def _jaccards(hasher: MinHasher, pool_texts: list[str], ref_texts: list[str], queries: np.ndarray,
              hits: np.ndarray) -> np.ndarray:
    """Exact shingle Jaccard of every (pool row, reference row) pair, shingling only the rows in a pair."""
    q_rows, h_rows = np.unique(queries), np.unique(hits)
    sets = dict(zip(q_rows.tolist(), shingle_sets(hasher, [pool_texts[q] for q in q_rows])))
    offset = len(pool_texts)
    sets.update(zip((h_rows + offset).tolist(), shingle_sets(hasher, [ref_texts[h] for h in h_rows])))
    return exact_jaccard(sets, queries, hits + offset)


def heldout_overlaps(pool: pa.Table, references: pa.Table, threshold: float = 0.6, num_perm: int = 128,
                     ngram: int = 3, seed: int = 1, min_prompt_words: int = 5) -> list[Overlap]:
    """The pool rows (tables with the `curate.schema.ROWS` columns) that overlap a reference row, in pool order."""
    if pool.num_rows == 0 or references.num_rows == 0:
        return []
    hasher = MinHasher(num_perm=num_perm, ngram=ngram, seed=seed)
    pool_texts, ref_texts = dedup_texts(pool), dedup_texts(references)
    index = LSHIndex(threshold, num_perm, hasher_params=hasher.params)
    index.add(references["row_id"].to_pylist(), hasher.signatures(ref_texts))
    queries, hits = index.query(hasher.signatures(pool_texts))
    by_prompt = {p: i for i, p in enumerate(_prompts(references, min_prompt_words)) if p is not None}
    same = [(q, by_prompt[p]) for q, p in enumerate(_prompts(pool, min_prompt_words)) if p in by_prompt]
    queries = np.concatenate([queries, np.array([q for q, _ in same], dtype=np.int64)])
    hits = np.concatenate([hits, np.array([h for _, h in same], dtype=np.int64)])
    similarity = _jaccards(hasher, pool_texts, ref_texts, queries, hits)
    prompt_pairs, ref_ids = set(same), references["row_id"].to_pylist()
    best: dict[int, Overlap] = {}
    for q, h, j in zip(queries.tolist(), hits.tolist(), similarity.tolist()):
        how = "near-duplicate" if j >= threshold else "same first prompt" if (q, h) in prompt_pairs else None
        if how and (q not in best or j > best[q].similarity):
            best[q] = Overlap(q, ref_ids[h], j, how)
    return [best[q] for q in sorted(best)]
