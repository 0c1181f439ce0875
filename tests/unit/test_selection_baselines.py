"""Selection baselines: seeded random subset and IFD-only ranking (eligibility < 1, stable ties)."""
from __future__ import annotations

import math

import pytest

from curate.selection.baselines import ifd_rank, random_select


def test_random_select_is_seeded_distinct_and_bounded():
    a = random_select(1000, 50, seed=42)
    assert a == random_select(1000, 50, seed=42)
    assert a != random_select(1000, 50, seed=43)
    assert len(set(a)) == 50 and all(0 <= i < 1000 for i in a)
    assert sorted(random_select(5, 10, seed=0)) == [0, 1, 2, 3, 4]
    assert random_select(0, 3, seed=0) == [] and random_select(7, 0, seed=0) == []
    with pytest.raises(ValueError):
        random_select(5, -1, seed=0)


def test_ifd_rank_eligibility_and_stable_ties():
    # bf16-stored values (docs/iterit.md (5)): 0.999 is stored as 1.0 and is no longer a candidate; NaN is never one.
    scores = [0.47265625, 1.0, 0.7421875, math.nan, 0.7421875, 1.6484375, 0.0, 0.98828125]
    assert ifd_rank(scores, 10) == [7, 2, 4, 0, 6]
    assert ifd_rank(scores, 2) == [7, 2]
    assert ifd_rank(scores, 0) == [] and ifd_rank([], 3) == []
