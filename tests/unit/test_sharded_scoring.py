"""Sharded scoring (README: Execution): the batches planned once over all rows, scored in contiguous groups
of whole batches, each group on its own (as a shard task does), give the bits of one `score_rows` pass."""
from __future__ import annotations

import numpy as np
import pytest

from curate.models.truncation import token_budget
from curate.scoring.ifd import finish_scoring, mean_span_losses, plan_scoring, score_rows, shard_batches
import test_ifd
from test_ifd import MAX_LEN, ROWS, SYSTEM

lm = test_ifd.lm  # the fixture: test_ifd.py's tiny model

BATCH_TOKENS = 600  # 16 batches for the 20 rows (3 passes each)


def _sharded(model, tok, shards: int) -> dict[str, np.ndarray]:
    plan = plan_scoring(tok, ROWS, SYSTEM, token_budget(MAX_LEN, model.config.max_position_embeddings), BATCH_TOKENS,
                        contrast_seed=3, contrast_partners=2)
    means = np.full(len(plan.seqs), np.nan)
    for group in shard_batches(len(plan.batches), shards):
        mine = [i for b in group for i in plan.batches[b]]  # the shard sees only its own sequences
        local = {i: k for k, i in enumerate(mine)}
        part, _ = mean_span_losses(model, [plan.seqs[i] for i in mine], tok.pad_token_id,
                                   batches=[[local[i] for i in plan.batches[b]] for b in group])
        means[mine] = part
    return finish_scoring(plan, means)


@pytest.mark.parametrize("shards", [1, 2, 3, 4])
def test_sharded_scores_are_bitwise_those_of_one_pass(lm, shards):
    model, tok = lm
    one = score_rows(model, tok, ROWS, SYSTEM, max_length=MAX_LEN, batch_tokens=BATCH_TOKENS, contrast_seed=3,
                     contrast_partners=2)
    sharded = _sharded(model, tok, shards)
    assert set(sharded) == set(one)
    for k in one:
        assert one[k].tobytes() == sharded[k].tobytes(), k  # NaN (row 4's empty span) included


def test_shard_batches_are_contiguous_and_cover_every_batch():
    assert shard_batches(7, 3) == [range(0, 2), range(2, 4), range(4, 7)]
    assert shard_batches(2, 2) == [range(0, 1), range(1, 2)]
    for n, k in [(10, 1), (10, 4), (3, 3), (100, 7)]:
        groups = shard_batches(n, k)
        assert [b for g in groups for b in g] == list(range(n)) and max(map(len, groups)) - min(map(len, groups)) <= 1
