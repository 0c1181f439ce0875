"""The five demo skills: their key spaces, their partition into pool / eval / pretrain, and their texts.

A skill item is identified by a key (e.g. the unordered operand pair of a sum, a (word, operation)
pair, a (country, attribute, phrasing) triple). Every key belongs to exactly one part, decided by a
hash of the key alone, so the pool, the held-out sets and the pre-training rows are disjoint whatever
seeds they are drawn with. The response is a deterministic function of the prompt (exact-match
evaluation relies on it); only the phrasing of the prompt is drawn at random.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Hashable, Optional

from curate.demo.world import ASPECTS, ATTRIBUTE_NAMES, WORDS, Animal, animals, countries

Key = Hashable
Texts = tuple[str, str, str]  # instruction, input, output

@dataclass(frozen=True)
class Skill:
    name: str
    eval_fraction: float
    pretrain_fraction: float
    render: Callable[[Key, random.Random], Texts]
    all_keys: Optional[Callable[[], tuple[Key, ...]]] = None  # finite key space
    draw_key: Optional[Callable[[random.Random], Key]] = None  # open key space (rejection sampled)

    def part_of(self, key: Key) -> str:
        h = hashlib.blake2b(f"{self.name}|{key!r}".encode(), digest_size=8).digest()
        u = int.from_bytes(h, "big") / 2**64
        if u < self.eval_fraction:
            return "eval"
        if u < self.eval_fraction + self.pretrain_fraction:
            return "pretrain"
        return "pool"


# ---------------------------------------------------------------- arithmetic: a + b, a - b (0..99)
def _arithmetic_keys() -> tuple[Key, ...]:
    # The unordered operand pair is the key, so "37 + 45", "45 + 37" and "45 - 37" never coexist.
    return tuple((a, b) for a in range(100) for b in range(a, 100))


def _arithmetic(key: Key, rng: random.Random) -> Texts:
    small, large = key
    op = rng.choice("+-")
    x, y = (large, small) if op == "-" or rng.random() < 0.5 else (small, large)
    problem = f"{x} {op} {y}"
    result = x + y if op == "+" else x - y
    instruction, input_ = rng.choice(
        [
            (f"What is {problem}?", ""),
            (f"Calculate {problem}.", ""),
            (f"Compute {problem}.", ""),
            ("Solve the following arithmetic problem.", problem),
            ("Work out the result.", problem),
        ]
    )
    return instruction, input_, f"{problem} = {result}."


# ---------------------------------------------------------------- word transformations
_WORD_OPS = ("reverse", "uppercase", "sort_letters")


def _word_keys() -> tuple[Key, ...]:
    return tuple((op, w) for w in WORDS for op in _WORD_OPS)


def _word_transform(key: Key, rng: random.Random) -> Texts:
    op, w = key
    if op == "reverse":
        prompts = [(f"Reverse the word {w}.", ""), (f"Write {w} backwards.", ""), ("Reverse this word.", w)]
        answer = f"{w} reversed is {w[::-1]}."
    elif op == "uppercase":
        prompts = [(f"Write {w} in uppercase.", ""), (f"Convert {w} to capital letters.", ""), ("Uppercase this word.", w)]
        answer = f"{w} in uppercase is {w.upper()}."
    else:
        prompts = [
            (f"Sort the letters of {w} alphabetically.", ""),
            (f"Put the letters of {w} in alphabetical order.", ""),
            ("Sort the letters of this word.", w),
        ]
        answer = f"{w} sorted alphabetically is {''.join(sorted(w))}."
    instruction, input_ = rng.choice(prompts)
    return instruction, input_, answer


# ---------------------------------------------------------------- fact lookup (invented countries)
# Each phrasing has its own answer pattern, so two phrasings of the same fact share few word 3-grams.
_LOOKUP_PHRASINGS: tuple[tuple[str, str, str], ...] = (
    ("What is the {a} of {c}?", "", "The {a} of {c} is {v}."),
    ("Name the {a} of {c}.", "", "{v} is the {a} of {c}."),
    ("Answer the question.", "{c}: {a}?", "{c} has {v} as its {a}."),
    ("Tell me the {a} of {c}.", "", "In {c}, it is {v}."),
    ("What {a} does {c} have?", "", "{c}'s {a} is {v}."),
    ("Look up the {a} of {c}.", "", "The atlas lists {v} as the {a} of {c}."),
)


def _lookup_keys() -> tuple[Key, ...]:
    return tuple(
        (ci, attribute, phrasing)
        for ci in range(len(countries()))
        for attribute in ATTRIBUTE_NAMES
        for phrasing in range(len(_LOOKUP_PHRASINGS))
    )


def _fact_lookup(key: Key, rng: random.Random) -> Texts:
    ci, attribute, phrasing = key
    country = countries()[ci]
    fields = dict(a=attribute, c=country.name, v=country.value(attribute))
    return tuple(t.format(**fields) for t in _LOOKUP_PHRASINGS[phrasing])  # type: ignore[return-value]


# ---------------------------------------------------------------- templated animal descriptions
def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def aspect_sentence(animal: Animal, aspect: str, named: bool) -> str:
    subject = f"The {animal.name}" if named else "It"
    return {
        "size": f"{subject} is {_article(animal.size)} {animal.size} animal.",
        "color": f"{subject} has {_article(animal.color)} {animal.color} coat.",
        "habitat": f"{subject} lives in {animal.habitat}.",
        "diet": f"{subject} eats {animal.diet}.",
        "call": f"{subject} {animal.call}.",
        "active time": f"{subject} is active {animal.active}.",
    }[aspect]


def describe(animal: Animal, aspects: tuple[str, ...]) -> str:
    return " ".join(aspect_sentence(animal, a, named=i == 0) for i, a in enumerate(aspects))


# Aspects are asked about alone, in three fixed disjoint pairs, or all at once: two rows about the
# same animal then share at most one sentence.
ASPECT_PAIRS = (("size", "color"), ("habitat", "diet"), ("call", "active time"))
_DIRECT_QUESTIONS = {
    "size": "How big is the {n}?",
    "color": "What color is the {n}?",
    "habitat": "Where does the {n} live?",
    "diet": "What does the {n} eat?",
    "call": "What sound does the {n} make?",
    "active time": "When is the {n} active?",
}


def _animal_keys() -> tuple[Key, ...]:
    # (animal, aspects, phrasing); a single aspect has two phrasings with different answer patterns.
    shapes = [(ASPECTS, 0)] + [(pair, 0) for pair in ASPECT_PAIRS] + [((a,), p) for a in ASPECTS for p in (0, 1)]
    return tuple((ai, aspects, phrasing) for ai in range(len(animals())) for aspects, phrasing in shapes)


def _animal_description(key: Key, rng: random.Random) -> Texts:
    ai, aspects, phrasing = key
    animal = animals()[ai]
    n = animal.name
    if len(aspects) == 1 and phrasing == 1:
        return _DIRECT_QUESTIONS[aspects[0]].format(n=n), "", aspect_sentence(animal, aspects[0], named=False)
    if aspects == ASPECTS:
        prompts = [
            (f"Describe the animal called the {n}.", ""),
            (f"Write a short description of the {n}.", ""),
            ("Describe this animal.", n),
        ]
    elif len(aspects) == 1:
        prompts = [(f"What is the {aspects[0]} of the {n}?", ""), (f"Tell me the {aspects[0]} of this animal.", n)]
    else:
        a1, a2 = aspects
        prompts = [(f"Describe the {a1} and {a2} of the {n}.", ""), (f"Describe the {a1} and {a2} of this animal.", n)]
    instruction, input_ = rng.choice(prompts)
    return instruction, input_, describe(animal, aspects)


# ---------------------------------------------------------------- sorting 3-5 numbers
def _draw_sort_key(rng: random.Random) -> Key:
    numbers = tuple(sorted(rng.sample(range(100), rng.randint(3, 5))))
    return (rng.choice(("ascending", "descending")), numbers)


def _sort_numbers(key: Key, rng: random.Random) -> Texts:
    direction, numbers = key
    shown = list(numbers)
    while shown == sorted(shown) or shown == sorted(shown, reverse=True):
        rng.shuffle(shown)
    listed = ", ".join(map(str, shown))
    span = "smallest to largest" if direction == "ascending" else "largest to smallest"
    instruction, input_ = rng.choice(
        [
            (f"Sort {listed} in {direction} order.", ""),
            (f"Order from {span}: {listed}.", ""),
            (f"Sort these numbers in {direction} order.", listed),
        ]
    )
    answer = sorted(numbers, reverse=direction == "descending")
    return instruction, input_, ", ".join(map(str, answer))


SKILLS: dict[str, Skill] = {
    s.name: s
    for s in (
        Skill("arithmetic", 0.05, 0.25, _arithmetic, all_keys=_arithmetic_keys),
        Skill("word_transform", 0.12, 0.15, _word_transform, all_keys=_word_keys),
        Skill("fact_lookup", 0.15, 0.15, _fact_lookup, all_keys=_lookup_keys),
        Skill("animal_description", 0.15, 0.15, _animal_description, all_keys=_animal_keys),
        Skill("sort_numbers", 0.05, 0.25, _sort_numbers, draw_key=_draw_sort_key),
    )
}


@lru_cache(maxsize=None)
def keys_in_part(skill_name: str, part: str) -> tuple[Key, ...]:
    skill = SKILLS[skill_name]
    assert skill.all_keys is not None
    return tuple(k for k in skill.all_keys() if skill.part_of(k) == part)


def capacity(skill_name: str, part: str) -> int | None:
    """Number of distinct keys of `skill_name` in `part`; None for an open key space."""
    return None if SKILLS[skill_name].all_keys is None else len(keys_in_part(skill_name, part))


def sample_keys(skill_name: str, part: str, n: int, rng: random.Random) -> list[Key]:
    """`n` distinct keys of the skill from `part`, in random order."""
    skill = SKILLS[skill_name]
    if skill.all_keys is not None:
        keys = keys_in_part(skill_name, part)
        if n > len(keys):
            raise ValueError(f"skill {skill_name} has only {len(keys)} {part} items, {n} requested")
        return rng.sample(keys, n)
    assert skill.draw_key is not None
    seen: set[Key] = set()
    out: list[Key] = []
    while len(out) < n:
        key = skill.draw_key(rng)
        if key not in seen and skill.part_of(key) == part:
            seen.add(key)
            out.append(key)
    return out
