"""Deterministic synthetic instruction pool for the demo, its held-out sets and the pre-training corpus.

    python -c "from curate.demo.pool import write_demo; print(write_demo('data/raw'))"

The pool mixes five clean skills (see curate/demo/skills.py) and injects noise of known kinds; every
row carries `skill` and `truth` (clean | exact_dup | near_dup | shuffled | garbage | truncated |
empty). Duplicates always come after the clean row they copy, so a keep-first deduplicator that
removes exactly the rows labelled exact_dup / near_dup is right. The same (size, seed, noise) gives
the same rows in the same order; `write_demo` writes byte-identical files.

Pools up to about 10,000 rows keep the skills balanced; beyond that the finite skills run out of
distinct items and sort_numbers takes the rest (about 25,000 rows is the limit).
"""
from __future__ import annotations

import json
import math
import random
import unicodedata
from pathlib import Path
from typing import Iterable, Mapping

from curate.artifacts import atomic_path
from curate.demo import noise as noise_kinds
from curate.demo.overlap import row_text
from curate.demo.skills import SKILLS, capacity, describe, sample_keys
from curate.demo.world import ASPECTS, animals, countries

DEFAULT_NOISE: dict[str, float] = {
    "exact_dup": 0.05,
    "near_dup": 0.05,
    "shuffled": 0.05,
    "garbage": 0.03,
    "truncated": 0.03,
    "empty": 0.01,
}
NEAR_DUP_MIN_JACCARD = 0.82  # margin above the 0.8 promised for near-duplicates
MIN_NEAR_DUP_SOURCE_WORDS = 7


def _row(skill: str, texts: tuple[str, str, str], truth: str = "clean") -> dict:
    instruction, input_, output = texts
    return {"instruction": instruction, "input": input_, "output": output, "skill": skill, "truth": truth}


def normalized_text(row: Mapping[str, str]) -> str:
    """Case-folded, NFKC, whitespace-collapsed instruction|input|output (for disjointness checks)."""
    parts = (row["instruction"], row["input"], row.get("output", row.get("response", "")))
    return "\x1f".join(" ".join(unicodedata.normalize("NFKC", p).casefold().split()) for p in parts)


def noise_counts(size: int, noise: Mapping[str, float] | None = None) -> dict[str, int]:
    fractions = dict(DEFAULT_NOISE if noise is None else noise)
    unknown = set(fractions) - set(noise_kinds.NOISE_KINDS)
    if unknown:
        raise ValueError(f"unknown noise kinds {sorted(unknown)}; expected {list(noise_kinds.NOISE_KINDS)}")
    if any(f < 0 for f in fractions.values()) or sum(fractions.values()) >= 1:
        raise ValueError(f"noise fractions must be >= 0 and sum to less than 1, got {fractions}")
    return {kind: round(size * fractions.get(kind, 0.0)) for kind in noise_kinds.NOISE_KINDS}


def allocate(total: int, capacities: Mapping[str, int | None]) -> dict[str, int]:
    """Split `total` items as evenly as possible over skills, never above a skill's capacity
    (None = unbounded); what a full skill cannot take goes to the others."""
    order = sorted(capacities, key=lambda s: (math.inf if capacities[s] is None else capacities[s], s))
    out: dict[str, int] = {}
    remaining = total
    for i, skill in enumerate(order):
        share = -(-remaining // (len(order) - i))  # ceil
        cap = capacities[skill]
        out[skill] = share if cap is None else min(cap, share)
        remaining -= out[skill]
    if remaining:
        raise ValueError(f"the demo world holds too few distinct items for {total} rows")
    return {s: out[s] for s in capacities}


def _fresh_items(part: str, n: int, rng: random.Random) -> list[dict]:
    """`n` distinct clean rows from `part`, skills mixed evenly, in random order."""
    counts = allocate(n, {s: capacity(s, part) for s in SKILLS})
    rows = [
        _row(skill, SKILLS[skill].render(key, rng))
        for skill in SKILLS
        for key in sample_keys(skill, part, counts[skill], rng)
    ]
    rng.shuffle(rows)
    return rows


def _mixed_items(part: str, n_clean: int, n_other: int, skill_mix: Mapping[str, float],
                 rng: random.Random) -> tuple[list[dict], list[dict]]:
    """`n_clean` distinct clean rows split over skills by `skill_mix` (fractions), and `n_other`
    distinct rows, skills mixed evenly, to derive the noise from; no key is used twice."""
    unknown = set(skill_mix) - set(SKILLS)
    if unknown:
        raise ValueError(f"unknown skills in skill_mix {sorted(unknown)}; expected {list(SKILLS)}")
    if any(f < 0 for f in skill_mix.values()) or not math.isclose(sum(skill_mix.values()), 1.0, abs_tol=1e-6):
        raise ValueError(f"skill_mix fractions must be >= 0 and sum to 1, got {dict(skill_mix)}")
    skills = list(SKILLS)
    clean_counts = {s: math.floor(n_clean * skill_mix.get(s, 0.0)) for s in skills}
    for s in sorted(skills, key=lambda s: -skill_mix.get(s, 0.0))[: n_clean - sum(clean_counts.values())]:
        clean_counts[s] += 1
    other_counts = allocate(n_other, {s: capacity(s, part) for s in skills})
    clean: list[dict] = []
    other: list[dict] = []
    for skill in skills:
        need, cap = clean_counts[skill] + other_counts[skill], capacity(skill, part)
        if cap is not None and need > cap:
            raise ValueError(f"skill_mix asks for {need} rows of {skill}, but the demo world holds only {cap}")
        items = [_row(skill, SKILLS[skill].render(key, rng)) for key in sample_keys(skill, part, need, rng)]
        clean += items[: clean_counts[skill]]
        other += items[clean_counts[skill]:]
    rng.shuffle(clean)
    rng.shuffle(other)
    return clean, other


def _cross_skill_pairs(items: list[dict], k: int, rng: random.Random) -> tuple[list[tuple[dict, dict]], list[dict]]:
    """`k` (prompt row, response donor) pairs of different skills from `items`, and the unused items.

    Each pair takes one item from the currently largest skill group and one from another group
    (chosen in proportion to size), which succeeds whenever no skill holds more than half the items.
    """
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(item["skill"], []).append(i)
    pairs: list[tuple[dict, dict]] = []
    used: set[int] = set()
    for _ in range(k):
        largest = max(sorted(groups), key=lambda s: len(groups[s]))
        others = [s for s in sorted(groups) if s != largest and groups[s]]
        if not groups[largest] or not others:
            raise ValueError("not enough rows of different skills left to build shuffled rows")
        partner = rng.choices(others, weights=[len(groups[s]) for s in others])[0]
        a, b = groups[largest].pop(), groups[partner].pop()
        used.update((a, b))
        pairs.append((items[a], items[b]) if rng.random() < 0.5 else (items[b], items[a]))
    return pairs, [item for i, item in enumerate(items) if i not in used]


def _near_duplicates(clean: list[dict], n: int, rng: random.Random) -> list[tuple[int, dict]]:
    """`n` distinct near-duplicates as (index of the clean source, row). A source may give several
    near-duplicates (with different edits) when the pool needs many."""
    out: list[tuple[int, dict]] = []
    seen = {normalized_text(r) for r in clean}
    # Adding one word adds one 3-gram: rows under MIN_NEAR_DUP_SOURCE_WORDS words cannot stay near.
    long_rows = [i for i, r in enumerate(clean) if len(row_text(r).split()) >= MIN_NEAR_DUP_SOURCE_WORDS]
    order = rng.sample(long_rows, len(long_rows))
    for attempt in range(20 * max(n, len(order)) if order else 0):
        if len(out) == n:
            break
        i = order[attempt % len(order)]
        edited = noise_kinds.near_duplicate(clean[i], rng, NEAR_DUP_MIN_JACCARD)
        if edited is not None and normalized_text(edited) not in seen:
            seen.add(normalized_text(edited))
            out.append((i, edited))
    if len(out) < n:
        raise ValueError(f"could only derive {len(out)} of {n} near-duplicates from the clean rows")
    return out


def generate_pool(size: int = 5000, seed: int = 0, noise: Mapping[str, float] | None = None,
                  skill_mix: Mapping[str, float] | None = None) -> list[dict]:
    """The demo pool: dicts with instruction, input, output, skill, truth (see module docstring).

    `skill_mix` (skill -> fraction, summing to 1) sets the skill shares of the clean rows (e.g. one
    easy skill most of the pool); the rows the noise is made from stay balanced. None = balanced.
    """
    counts = noise_counts(size, noise)
    n_clean = size - sum(counts.values())
    if n_clean < 1:
        raise ValueError(f"size {size} leaves no clean rows")
    rng = random.Random(seed)
    n_fresh = n_clean + 2 * counts["shuffled"] + counts["garbage"] + counts["truncated"] + counts["empty"]
    if skill_mix is None:
        fresh = _fresh_items("pool", n_fresh, rng)
        clean, rest = fresh[:n_clean], fresh[n_clean:]
    else:
        clean, rest = _mixed_items("pool", n_clean, n_fresh - n_clean, skill_mix, rng)

    pairs, rest = _cross_skill_pairs(rest, counts["shuffled"], rng)
    noisy = [{**prompt, "output": donor["output"], "truth": "shuffled"} for prompt, donor in pairs]

    def take(k: int) -> list[dict]:
        nonlocal rest
        taken, rest = rest[:k], rest[k:]
        return taken

    noisy += [noise_kinds.garbage(r, rng) for r in take(counts["garbage"])]
    noisy += [noise_kinds.truncated(r, rng) for r in take(counts["truncated"])]
    noisy += [noise_kinds.empty(r, rng) for r in take(counts["empty"])]

    copies: list[tuple[int, dict]] = [
        (i, {**clean[i], "truth": "exact_dup"}) for i in rng.choices(range(n_clean), k=counts["exact_dup"])
    ]
    copies += _near_duplicates(clean, counts["near_dup"], rng)

    rows = clean + noisy + [c for _, c in copies]
    position = list(range(len(rows)))
    rng.shuffle(position)
    # Put every clean row before its copies: the copies' group keeps the same set of positions.
    groups: dict[int, list[int]] = {}
    for k, (source, _) in enumerate(copies):
        groups.setdefault(source, []).append(len(clean) + len(noisy) + k)
    for source, members in groups.items():
        members = sorted(members, key=lambda m: position[m])
        slots = sorted(position[m] for m in [source] + members)
        for m, slot in zip([source] + members, slots):
            position[m] = slot
    ordered = [row for _, row in sorted(zip(position, rows), key=lambda t: t[0])]

    assert len({normalized_text(r) for r in clean}) == n_clean, "clean rows must be distinct"
    return ordered


def generate_eval_sets(per_skill: int = 100, seed: int = 10_000) -> dict[str, list[dict]]:
    """Held-out clean rows per skill, from keys that never reach the pool or the pre-training rows."""
    rng = random.Random(seed)
    return {
        skill: [_row(skill, SKILLS[skill].render(k, rng)) for k in sample_keys(skill, "eval", per_skill, rng)]
        for skill in SKILLS
    }


def pretrain_rows(n: int = 6000, seed: int = 1234) -> list[dict]:
    """Clean rows of every skill (equal shares) from the pre-training keys, disjoint from pool and eval.

    A skill with fewer pre-training keys than its share cycles through them again (with newly drawn
    phrasings), so small skills are repeated rather than under-represented.
    """
    rng = random.Random(seed)
    rows: list[dict] = []
    for i, skill in enumerate(SKILLS):
        share = n // len(SKILLS) + (1 if i < n % len(SKILLS) else 0)
        cap = capacity(skill, "pretrain")
        while share > 0:
            take = share if cap is None else min(cap, share)
            rows += [_row(skill, SKILLS[skill].render(k, rng)) for k in sample_keys(skill, "pretrain", take, rng)]
            share -= take
    rng.shuffle(rows)
    return rows


def pretrain_prose(n: int = 1500, seed: int = 1235) -> list[str]:
    """Short plain sentences about the demo world (unlabelled text for pre-training).

    Country and animal facts cover the whole world (they are its knowledge); arithmetic, word and
    sorting sentences come from the pre-training keys only, so no held-out answer is given away.
    """
    rng = random.Random(seed)

    def pretrain_key(skill: str):
        return sample_keys(skill, "pretrain", 1, rng)[0]

    out: list[str] = []
    for _ in range(n):
        kind = rng.randrange(5)
        if kind == 0:
            c = rng.choice(countries())
            out.append(
                rng.choice(
                    [
                        f"The capital of {c.name} is {c.capital}.",
                        f"People in {c.name} speak {c.language}.",
                        f"In {c.name}, people pay with the {c.currency}.",
                        f"The {c.river} is the main river of {c.name}.",
                        f"{c.name} is a country whose capital is {c.capital}. Its language is "
                        f"{c.language}, its currency is the {c.currency} and its main river is the {c.river}.",
                    ]
                )
            )
        elif kind == 1:
            aspects = rng.sample(ASPECTS, rng.randint(1, len(ASPECTS)))
            out.append(describe(rng.choice(animals()), tuple(aspects)))
        elif kind in (2, 3):
            skill = "arithmetic" if kind == 2 else "word_transform"
            out.append(SKILLS[skill].render(pretrain_key(skill), rng)[2])
        else:
            direction, numbers = pretrain_key("sort_numbers")
            shown = ", ".join(map(str, rng.sample(numbers, len(numbers))))
            answer = ", ".join(map(str, sorted(numbers, reverse=direction == "descending")))
            out.append(f"Sorted in {direction} order, {shown} becomes {answer}.")
    return out


def _write_jsonl(rows: Iterable[dict], path: Path) -> int:
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n


def write_demo(
    out_dir: Path | str,
    size: int = 5000,
    seed: int = 0,
    noise: Mapping[str, float] | None = None,
    eval_per_skill: int = 100,
    eval_seed: int = 10_000,
    skill_mix: Mapping[str, float] | None = None,
) -> dict:
    """Write `out_dir/pool.jsonl` and `out_dir/eval/<skill>.jsonl` atomically. Returns counts."""
    out_dir = Path(out_dir)
    pool = generate_pool(size, seed, noise, skill_mix)
    eval_sets = generate_eval_sets(eval_per_skill, eval_seed)
    with atomic_path(out_dir / "pool.jsonl") as tmp:
        _write_jsonl(pool, tmp)
    with atomic_path(out_dir / "eval") as tmp:
        tmp.mkdir()
        for skill, rows in eval_sets.items():
            _write_jsonl(rows, tmp / f"{skill}.jsonl")
    truth: dict[str, int] = {}
    skills: dict[str, int] = {}
    for r in pool:
        truth[r["truth"]] = truth.get(r["truth"], 0) + 1
        skills[r["skill"]] = skills.get(r["skill"], 0) + 1
    return {
        "pool_rows": len(pool),
        "truth": dict(sorted(truth.items())),
        "skills": dict(sorted(skills.items())),
        "eval_rows": {s: len(r) for s, r in eval_sets.items()},
    }
