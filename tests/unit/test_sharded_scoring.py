"""Sharded scoring (docs/execution.md): the batches planned once over all rows, scored in contiguous groups
of whole batches, each group on its own (as a shard task does), give the bits of one `score_rows` pass; a
round's re-scoring merged from its shards stores the bytes of the one-pass re-scoring."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.artifacts import TIMINGS, Ref, write_parquet
from curate.config import Params
from curate.models.truncation import token_budget
from curate.scoring.ifd import batch_costs, finish_scoring, mean_span_losses, plan_scoring, score_rows
from curate.sharding import shard_batches
from tasks.pipeline import stage_params
from tasks.score import drop_stale_plans, plan_window, rescore_window, score_shard, shard_count
import test_ifd
from test_ifd import MAX_LEN, ROWS, SYSTEM

lm = test_ifd.lm  # the fixture: test_ifd.py's tiny model

BATCH_TOKENS = 600  # 16 batches for the 20 rows (3 passes each)


def _sharded(model, tok, shards: int) -> dict[str, np.ndarray]:
    plan = plan_scoring(tok, ROWS, SYSTEM, token_budget(MAX_LEN, model.config.max_position_embeddings), BATCH_TOKENS,
                        contrast_seed=3, contrast_partners=2)
    means = np.full(len(plan.seqs), np.nan)
    for group in shard_batches(batch_costs(plan), shards):
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


def test_shard_batches_are_contiguous_cover_every_batch_and_balance_the_work():
    assert shard_batches([100, 1, 1, 1, 1], 2) == [range(0, 1), range(1, 5)]  # the long batch alone
    assert shard_batches([5, 5, 5, 5], 2) == [range(0, 2), range(2, 4)]
    assert shard_batches([1, 1], 2) == [range(0, 1), range(1, 2)]
    rng = np.random.default_rng(0)
    for n, k in [(10, 1), (10, 4), (3, 3), (100, 7), (9, 9)]:
        costs = sorted(rng.integers(1, 1000, size=n).tolist(), reverse=True)  # planned longest first
        groups = shard_batches(costs, k)
        assert [b for g in groups for b in g] == list(range(n)) and all(len(g) for g in groups)
        work = [sum(costs[b] for b in g) for g in groups]
        assert max(work) - min(work) <= 2 * max(costs)  # each boundary is the nearest to its target


def test_a_sharded_window_rescore_is_bitwise_the_one_pass(lm, tmp_path):
    """`rescore_window` merging the shards of `plan_window` (as the flow does with execution.shards > 1) stores
    the bytes of the unsharded re-scoring, NaN row and quarantine included."""
    model, tok = lm
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    rows = [{**r, "row_id": f"{i:032x}", "source": "pool.jsonl", "position": i} for i, r in enumerate(ROWS)]
    write_parquet(pa.Table.from_pylist(rows), tmp_path / "pool" / "rows.parquet")
    in_window = [i % 4 != 1 for i in range(len(rows))]  # 15 of the 20 rows, row 4 (NaN) among them
    write_parquet(pa.table({"row_id": [r["row_id"] for r in rows], "in_next_window": in_window}),
                  tmp_path / "state" / "state.parquet")
    p = Params.model_validate({"scoring": {"max_length": MAX_LEN, "batch_tokens": BATCH_TOKENS, "contrast_seed": 3,
                                           "contrast_partners": 2}})
    args = {"pool": Ref.of(tmp_path / "pool").to_dict(), "model": Ref.of(tmp_path / "model").to_dict(),
            "state": Ref.of(tmp_path / "state").to_dict(), "params": stage_params(p, "rescore"), "round_index": 1}

    one = Path(rescore_window.fn(project=str(tmp_path / "one"), **args)["path"])
    project = str(tmp_path / "sharded")
    plan = plan_window(project, shards=3, **args)
    assert shard_count(plan) == 3
    # a killed run's plan is dropped before the next run, which plans the same bytes again: its shards keep their keys
    assert drop_stale_plans(project) == 1 and not Path(plan["path"]).exists()
    assert plan_window(project, shards=3, **args) == plan
    results = [score_shard.fn(project=project, plan=plan, shard=i, model=args["model"],
                              params=stage_params(p, "score_shard")) for i in range(3)]
    shutil.rmtree(tmp_path / "model")  # the merge reads the shards' losses only, never the model
    sharded = Path(rescore_window.fn(project=project, **args, shards={"plan": plan, "results": results})["path"])
    for name in ("scores.parquet", "quarantine.parquet"):
        assert (one / name).read_bytes() == (sharded / name).read_bytes(), name
    assert pq.read_table(one / "scores.parquet").num_rows == sum(in_window)
    assert pq.read_table(one / "quarantine.parquet").num_rows == 1  # row 4: empty response span
    # the sharded pass's seconds count every shard's forwards, not only the merge
    timings = json.loads((sharded / TIMINGS).read_text())
    shard_seconds = [json.loads((Path(r["path"]) / TIMINGS).read_text())["seconds"] for r in results]
    assert timings["shard_seconds"] == shard_seconds and min(shard_seconds) > 0
    assert timings["seconds"] == pytest.approx(timings["merge_seconds"] + sum(shard_seconds), rel=1e-12)
