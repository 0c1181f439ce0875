"""Online policies inside the round trainer: each trains, records lineage, keeps its budget, resumes bit-identically."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from curate.config import ONLINE_POLICIES, OnlineParams
from curate.training import RoundRecipe
from curate.training.online import make_policy, selection_modules
from test_training import ROWS, SYSTEM, Killed, config, make_base, weights

ANCHORS = [
    {"instruction": f"Add {a} and {b}.", "input": "", "response": f"The sum is {a + b}.", "system": "", "context": []}
    for a, b in ((4, 1), (2, 5), (6, 0))
]
TRAIN_ROWS = [{**r, "row_id": f"r{i}"} for i, r in enumerate(ROWS)]


def online(policy: str, **over) -> OnlineParams:
    return ONLINE_POLICIES[policy](**over)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_base(tmp_path_factory.mktemp("online-base") / "model")


def run(base, out, policy: str, progress=None, **over):
    kw = config(epochs=1, batch_size=4, grad_accum=1, save_every=1)
    return RoundRecipe(replace(kw, online=online(policy, **over)), base, out, TRAIN_ROWS, anchors=ANCHORS,
                       progress=progress).run()


def test_uniform_policy_is_plain_training(base, tmp_path):
    kw = config(epochs=1, batch_size=4, grad_accum=1)
    RoundRecipe(kw, base, tmp_path / "plain", TRAIN_ROWS).run()
    uniform = RoundRecipe(replace(kw, online=online("uniform")), base, tmp_path / "uniform", TRAIN_ROWS).run()
    w_a, w_b = weights(tmp_path / "plain"), weights(tmp_path / "uniform")
    assert all(torch.equal(w_a[n], w_b[n]) for n in w_a)
    assert uniform.lineage.num_rows == len(TRAIN_ROWS)  # every row once, weight 1
    assert set(uniform.lineage.column("weight").to_pylist()) == {1.0}
    assert sorted(uniform.lineage.column("row_id").to_pylist()) == sorted(r["row_id"] for r in TRAIN_ROWS)


@pytest.mark.parametrize("policy", ["random-in-batch", "greats", "filter-then-weight"])
def test_selecting_policies_train_on_at_most_the_budget(base, tmp_path, policy):
    result = run(base, tmp_path / policy, policy, keep_ratio=0.5)
    log = result.log.to_pylist()
    assert [x["candidates"] for x in log] == [4, 4, 1]  # 9 rows in batches of 4
    for x in log:
        k = math.ceil(0.5 * x["candidates"])
        if policy == "filter-then-weight":
            assert 0 <= x["kept"] <= k  # NNLS may zero some of the filter's picks
            assert x["residual"] is not None and x["residual"] >= 0
        else:
            assert x["kept"] == k
    lineage = result.lineage.to_pylist()
    assert len(lineage) == sum(x["kept"] for x in log)
    assert all(w["weight"] > 0 for w in lineage)
    per_step = {}
    for w in lineage:
        per_step.setdefault(w["step"], []).append(w["weight"])
    assert {s: len(v) for s, v in per_step.items()} == {x["step"]: x["kept"] for x in log if x["kept"]}


def linear_grad(model, tok, row) -> torch.Tensor:
    """Plain autograd gradient of one row's token-mean span loss w.r.t. the selection layers' weights."""
    from curate.scoring.ifd import pad_batch, per_token_span_losses
    from curate.training.trainer import build_examples

    (example,), _ = build_examples(tok, [row], SYSTEM, 64)
    ids, mask, starts = pad_batch([example.encoded], tok.pad_token_id, "cpu")
    losses, _ = per_token_span_losses(model, ids, mask, starts, span_only_head=False)
    linears = [m.weight for m in selection_modules(model).values()]
    return torch.cat([g.flatten() for g in torch.autograd.grad(losses.mean(), linears)])


def test_greats_first_pick_has_the_largest_gradient_alignment(base, tmp_path):
    # one step over 4 candidates, keep 1: GREATS's pick is argmax_i <g_i, g_anchor>, checked against
    # per-row autograd gradients (independent of the hooks)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = TRAIN_ROWS[:4]
    kw = config(epochs=1, batch_size=4, grad_accum=1)
    result = RoundRecipe(replace(kw, online=online("greats", keep_ratio=0.25, target_batch=1)), base, tmp_path / "g", rows,
                         anchors=ANCHORS[:1]).run()
    model, tok = AutoModelForCausalLM.from_pretrained(base), AutoTokenizer.from_pretrained(base)
    assert "lm_head" not in selection_modules(model) and "model.layers.0.self_attn.q_proj" in selection_modules(model)
    target = linear_grad(model, tok, ANCHORS[0])
    grads = [linear_grad(model, tok, r) for r in rows]
    alignment = [float(g @ target) for g in grads]
    best = max(range(4), key=alignment.__getitem__)
    assert result.lineage.column("row_id").to_pylist() == [rows[best]["row_id"]]
    # A float32 dot product of n terms is exact to n * eps * sum |g_i t_i| (cancellation makes a
    # relative bound meaningless); the hook route's own rounding of g is of the same order: doubled.
    bound = 2 * len(target) * torch.finfo(torch.float32).eps * float((grads[best].abs() * target.abs()).sum())
    assert abs(result.lineage.column("score")[0].as_py() - alignment[best]) <= bound
    assert bound < 0.01 * abs(alignment[best]), (bound, alignment)  # so the check above can fail


def test_adapt_weights_every_row_within_bounds(base, tmp_path):
    result = run(base, tmp_path / "adapt", "adapt", w_min=0.1, w_max=0.9, refresh_every=2)
    lineage = result.lineage.to_pylist()
    assert len(lineage) == len(TRAIN_ROWS)  # ADAPT never filters
    ws = [w["weight"] for w in lineage]
    assert all(0.1 <= w <= 0.9 for w in ws)
    assert len(set(round(w, 6) for w in ws)) > 1  # the weights differ between rows
    assert all(-1.0001 <= w["score"] <= 1.0001 for w in lineage)  # cosines
    log = result.log.to_pylist()
    assert sum(x["weight_sum"] for x in log) == pytest.approx(sum(ws))


def test_adapt_bm25_signal(base, tmp_path):
    """Each row's score is its BM25 to the anchors (test_bm25's loop reference over the rows' `instruction\nresponse`
    texts), standardised over the pool (auto for bm25); its weight is sigmoid(score / tau), tau = 1."""
    from test_bm25 import reference_bm25

    result = run(base, tmp_path / "bm25", "adapt", signal="bm25")
    text = lambda r: f"{r['instruction']}\n{r['response']}"  # noqa: E731 - no row has an input
    bm25 = np.array(reference_bm25([text(r) for r in TRAIN_ROWS], [text(a) for a in ANCHORS], k1=1.5, b=0.75))
    z = (bm25 - bm25.mean()) / bm25.std()
    want = {r["row_id"]: (s, 1 / (1 + math.exp(-s))) for r, s in zip(TRAIN_ROWS, z)}
    lineage = result.lineage.to_pylist()
    assert sorted(x["row_id"] for x in lineage) == sorted(want)  # every row once (one epoch)
    for x in lineage:
        score, weight = want[x["row_id"]]
        assert x["score"] == pytest.approx(score, rel=1e-9, abs=1e-12), x["row_id"]
        assert x["weight"] == pytest.approx(weight, rel=torch.finfo(torch.float32).eps, abs=0), x["row_id"]  # a float32 weight
    assert len({round(s, 6) for s, _ in want.values()}) > 2  # the rows' scores differ: a row mix-up shows


def test_raw_loss_lets_the_weights_set_the_step(base, tmp_path):
    normalized = run(base, tmp_path / "n", "adapt")
    raw = run(base, tmp_path / "r", "adapt", loss="raw")
    first_n, first_r = normalized.log.column("loss")[0].as_py(), raw.log.column("loss")[0].as_py()
    ratio = raw.log.column("weight_sum")[0].as_py() / 4  # raw = normalized * (sum w n / sum n) ~ mean weight
    assert first_r < first_n and first_r == pytest.approx(first_n * ratio, rel=0.2)


@pytest.mark.parametrize("policy", ["adapt", "filter-then-weight"])
def test_killed_online_round_resumes_bit_identically(tmp_path, policy):
    base = make_base(tmp_path / "base")
    over = {"refresh_every": 2} if policy == "adapt" else {}
    full = run(base, tmp_path / "full" / "r0", policy, **over)

    def kill_after_step_2(step, *a):
        if step == 2:
            raise Killed

    with pytest.raises(Killed):
        run(base, tmp_path / "run" / "r0", policy, progress=kill_after_step_2, **over)
    resumed = run(base, tmp_path / "run" / "r0", policy, **over)
    w_full, w_res = weights(tmp_path / "full" / "r0"), weights(tmp_path / "run" / "r0")
    assert all(torch.equal(w_full[n], w_res[n]) for n in w_full)
    assert resumed.lineage.to_pylist() == full.lineage.to_pylist()


def test_anchor_policies_refuse_to_run_without_anchors():
    with pytest.raises(ValueError, match="anchor"):
        make_policy(online("filter-then-weight"), seed=0, round_index=0, pad_id=0, device="cpu", anchors=[])
