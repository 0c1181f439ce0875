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


def test_ranked_by_sorts_descending_ties_by_row_id_nan_last():
    from curate.selection.baselines import ranked_by

    assert ranked_by([3.0, float("nan"), 5.0, 3.0], ["d", "a", "c", "b"]) == [2, 3, 0, 1]


def test_rds_pooling_weights_later_tokens_more_and_ignores_padding():
    import torch

    from curate.selection.rds import position_weighted_mean

    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # weights 1, 2 on the real tokens, 0 on padding: (1*[1,0] + 2*[0,1]) / 3
    assert torch.allclose(position_weighted_mean(hidden, mask), torch.tensor([[1 / 3, 2 / 3]], dtype=torch.float64))


def test_rds_scores_rank_by_mean_cosine_to_the_targets():
    import numpy as np

    from curate.selection.rds import rds_scores, unit

    rng = np.random.default_rng(0)
    pool, targets = rng.normal(size=(20, 6)), rng.normal(size=(4, 6)) * rng.uniform(0.1, 10, size=(4, 1))
    mean_cos = (unit(pool) @ unit(targets).T).mean(axis=1)
    s = rds_scores(pool, targets)
    assert np.all(np.abs(s) <= 1 + 1e-12)
    assert np.argsort(-s).tolist() == np.argsort(-mean_cos).tolist()  # target norms do not matter
    with pytest.raises(ValueError, match="anchor_rows"):
        rds_scores(pool, targets[:0])
