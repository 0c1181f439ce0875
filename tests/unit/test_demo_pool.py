"""Demo pool generator: determinism, noise proportions and kinds, near-duplicate geometry, and the
disjointness of pool, held-out sets and pre-training rows."""
from __future__ import annotations

import itertools
import random
import re
from collections import Counter, defaultdict

import pytest

from curate.demo.overlap import TOKENIZERS, jaccard, max_row_jaccard, row_text, shingles
from curate.demo.pool import (
    DEFAULT_NOISE,
    allocate,
    generate_eval_sets,
    generate_pool,
    normalized_text,
    pretrain_prose,
    pretrain_rows,
    write_demo,
)
from curate.demo.skills import SKILLS
from curate.demo.world import animals

SIZE = 5000


@pytest.fixture(scope="module")
def pool() -> list[dict]:
    return generate_pool(SIZE, seed=0)


def _key(row: dict) -> tuple:
    return row["instruction"], row["input"], row["output"], row["skill"]


def _response_skill(output: str) -> str:
    """Which skill's answer pattern a response has (clean responses are fully determined by skill)."""
    if re.fullmatch(r"\d+ [+-] \d+ = -?\d+\.", output):
        return "arithmetic"
    if re.fullmatch(r"\d+(, \d+)+", output):
        return "sort_numbers"
    if re.search(r" (reversed|in uppercase|sorted alphabetically) is ", output):
        return "word_transform"
    if output.startswith("It ") or any(output.startswith(f"The {a.name} ") for a in animals()):
        return "animal_description"
    return "fact_lookup"


def test_write_demo_is_byte_identical_for_the_same_seed(tmp_path):
    a = write_demo(tmp_path / "a", size=800, seed=3)
    write_demo(tmp_path / "b", size=800, seed=3)
    write_demo(tmp_path / "c", size=800, seed=4)
    files = ["pool.jsonl"] + [f"eval/{s}.jsonl" for s in SKILLS]
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "pool.jsonl").read_bytes() != (tmp_path / "c" / "pool.jsonl").read_bytes()
    assert a["pool_rows"] == 800 == sum(a["truth"].values()) == sum(a["skills"].values())
    assert a["eval_rows"] == {s: 100 for s in SKILLS}
    assert not list(tmp_path.rglob(".tmp-*"))


def test_noise_proportions_and_kinds(pool):
    counts = Counter(r["truth"] for r in pool)
    assert len(pool) == SIZE
    for kind, fraction in DEFAULT_NOISE.items():
        assert abs(counts[kind] / SIZE - fraction) <= 0.005, kind
    assert counts["clean"] == SIZE - sum(counts[k] for k in DEFAULT_NOISE)
    skills = Counter(r["skill"] for r in pool)
    assert set(skills) == set(SKILLS)
    assert min(skills.values()) > 0.1 * SIZE  # every skill is well represented


def test_custom_noise_fractions():
    rows = generate_pool(1000, seed=1, noise={"garbage": 0.1, "empty": 0.02})
    assert Counter(r["truth"] for r in rows) == {"clean": 880, "garbage": 100, "empty": 20}
    with pytest.raises(ValueError, match="unknown noise kinds"):
        generate_pool(100, noise={"typos": 0.1})


def test_rows_are_shuffled(pool):
    positions = defaultdict(list)
    for i, r in enumerate(pool):
        positions[r["truth"]].append(i)
    for kind, where in positions.items():
        assert min(where) < SIZE * 0.1 and max(where) > SIZE * 0.9, kind
    assert len({r["skill"] for r in pool[:50]}) == len(SKILLS)


def test_clean_rows_are_distinct_and_exact_dups_copy_an_earlier_clean_row(pool):
    clean = [normalized_text(r) for r in pool if r["truth"] == "clean"]
    assert len(set(clean)) == len(clean)
    seen_clean: set[tuple] = set()
    for r in pool:
        if r["truth"] == "clean":
            seen_clean.add(_key(r))
        elif r["truth"] == "exact_dup":
            assert _key(r) in seen_clean


def test_near_dups_are_near_an_earlier_clean_row_but_not_exact(pool):
    clean_norm = set()
    earlier: dict[str, list[dict]] = defaultdict(list)  # skill -> shingle sets (per tokenizer) of earlier clean rows
    near = 0
    for r in pool:
        grams = {mode: shingles(row_text(r), 3, mode) for mode in TOKENIZERS}
        if r["truth"] == "clean":
            earlier[r["skill"]].append(grams)
            clean_norm.add(normalized_text(r))
        elif r["truth"] == "near_dup":
            near += 1
            assert normalized_text(r) not in clean_norm
            for mode in TOKENIZERS:
                assert max(jaccard(grams[mode], c[mode]) for c in earlier[r["skill"]]) >= 0.8, (mode, r)
    assert near == round(SIZE * DEFAULT_NOISE["near_dup"])
    assert len({r["skill"] for r in pool if r["truth"] == "near_dup"}) >= 3


def test_clean_rows_are_far_from_each_other(pool):
    rng = random.Random(0)
    by_skill: dict[str, list[dict]] = defaultdict(list)
    for r in pool:
        if r["truth"] == "clean":
            by_skill[r["skill"]].append(r)
    for mode in TOKENIZERS:
        for skill, rows in by_skill.items():  # same-skill pairs are the closest ones
            sample = [shingles(row_text(r), 3, mode) for r in rng.sample(rows, 200)]
            worst = max(jaccard(a, b) for a, b in itertools.combinations(sample, 2))
            assert worst < 0.5, (mode, skill, worst)
    everything = [r for rows in by_skill.values() for r in rows]
    assert max(max_row_jaccard(*rng.sample(everything, 2)) for _ in range(2000)) < 0.5


def test_shuffled_rows_answer_with_another_skill(pool):
    clean = [r for r in pool if r["truth"] == "clean"]
    assert all(_response_skill(r["output"]) == r["skill"] for r in clean)  # the classifier is right
    shuffled = [r for r in pool if r["truth"] == "shuffled"]
    assert shuffled and all(_response_skill(r["output"]) != r["skill"] for r in shuffled)


def test_broken_responses(pool):
    for r in pool:
        if r["truth"] == "empty":
            assert not r["output"].strip()
        elif r["truth"] in ("garbage", "truncated"):
            assert r["output"].strip()


def test_responses_are_a_function_of_the_prompt(pool):
    answers: dict[tuple[str, str], str] = {}
    rows = [r for r in pool if r["truth"] == "clean"] + pretrain_rows(3000, seed=5)
    rows += [r for rs in generate_eval_sets().values() for r in rs]
    for r in rows:
        assert answers.setdefault((r["instruction"], r["input"]), r["output"]) == r["output"]


def test_eval_sets_and_pretrain_rows_are_disjoint_from_the_pool(pool):
    eval_sets = generate_eval_sets(per_skill=100, seed=10_000)
    assert {s: len(r) for s, r in eval_sets.items()} == {s: 100 for s in SKILLS}
    assert all(r["truth"] == "clean" and r["skill"] == s for s, rows in eval_sets.items() for r in rows)
    pool_texts = {normalized_text(r) for r in pool} | {normalized_text(r) for r in generate_pool(SIZE, seed=9)}
    eval_texts = {normalized_text(r) for rows in eval_sets.values() for r in rows}
    pre = pretrain_rows(6000, seed=1234)
    pre_texts = {normalized_text(r) for r in pre}
    assert not pool_texts & eval_texts
    assert not pool_texts & pre_texts
    assert not eval_texts & pre_texts
    assert Counter(r["skill"] for r in pre) == {s: 1200 for s in SKILLS}


def test_pretrain_prose_is_deterministic_plain_text():
    prose = pretrain_prose(300, seed=7)
    assert prose == pretrain_prose(300, seed=7) != pretrain_prose(300, seed=8)
    assert len(prose) == 300 and all(p.strip() and p.endswith(".") for p in prose)


def test_allocate_fills_small_skills_then_spreads_the_rest():
    assert allocate(10, {"a": 2, "b": None, "c": None}) == {"a": 2, "b": 4, "c": 4}
    assert allocate(9, {"a": 5, "b": 5, "c": 5}) == {"a": 3, "b": 3, "c": 3}
    with pytest.raises(ValueError):
        allocate(11, {"a": 5, "b": 5})
