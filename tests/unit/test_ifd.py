"""IFD scorer (docs/iterit.md §2, (1)-(5)): batched == naive loop, span masking, variants, bf16 storage, and known
values of IFD, its variants and the swapped-prompt loss on a model whose logits are set by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import topic_lm

from curate.models.chat import encode_conditional
from curate.models.tiny_llama import build_tiny_llama
from curate.models.tokenizer import train_tokenizer
from curate.scoring.ifd import (
    encode_rows,
    ifd_from_losses,
    length_buckets,
    mean_span_losses,
    score_rows,
    score_rows_unbatched,
)

SYSTEM = "You are a helpful assistant."
WORDS = "the cat sat on a mat dog ran fast red blue apple sort list number add sum write poem story".split()


def _text(rng, lo, hi):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _rows():
    import random

    rng = random.Random(0)
    rows = []
    for i in range(20):
        row = {"system": "", "context": [], "instruction": _text(rng, 2, 25),
               "input": _text(rng, 1, 12) if i % 3 == 0 else "", "response": _text(rng, 1, 40)}
        if i % 5 == 1:
            row["context"] = [{"role": "user", "content": _text(rng, 2, 8)},
                              {"role": "assistant", "content": _text(rng, 2, 8)}]
        if i == 7:
            row["system"] = "Answer briefly."
        rows.append(row)
    rows[4]["response"] = ""  # empty span -> NaN
    rows[9]["instruction"] = _text(rng, 90, 90)  # prompt longer than max_length -> the prompt is cut, the response kept
    return rows


ROWS = _rows()
MAX_LEN = 96
VOCAB = 320
# Two float32 computations of the same span loss (other batch shapes, other head path) differ only in
# rounding, dominated by the longest sum: the log-sum-exp over the vocabulary, <= VOCAB * eps relative.
# An IFD is a ratio of two such losses: twice that.
LOSS_RTOL = VOCAB * float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def lm():
    torch.set_num_threads(1)
    tok = train_tokenizer([" ".join(WORDS)] * 20 + [r["instruction"] for r in ROWS], vocab_size=VOCAB)
    model = build_tiny_llama(len(tok), hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                             max_positions=128, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, seed=7)
    return model.eval(), tok


def test_batched_equals_unbatched_loop(lm):
    model, tok = lm
    fast = score_rows(model, tok, ROWS, SYSTEM, max_length=MAX_LEN, batch_tokens=400)
    slow = score_rows_unbatched(model, tok, ROWS, SYSTEM, max_length=MAX_LEN)
    np.testing.assert_array_equal(fast["n_response_tokens"], slow["n_response_tokens"])
    for key in ("loss_cond", "loss_prior", "ifd"):
        np.testing.assert_allclose(fast[key], slow[key], rtol=2 * LOSS_RTOL, atol=0, equal_nan=True)
    assert np.isnan(fast["ifd"][4]) and fast["n_response_tokens"][4] == 0
    too_long = [len(encode_conditional(tok, r, SYSTEM, 10_000).input_ids) > MAX_LEN for r in ROWS]
    assert too_long[9] and fast["truncated"].tolist() == too_long == slow["truncated"].tolist()
    assert fast["n_response_tokens"][9] > 0  # a long prompt no longer empties the span
    finite = np.delete(fast["ifd"], [4])
    assert np.all(np.isfinite(finite)) and np.all(finite > 0)
    # a random model scores responses near ln(vocab) either way
    assert abs(np.nanmean(fast["loss_cond"]) - math.log(len(tok))) < 1.0


def test_batching_budget_and_head_path_do_not_change_losses(lm):
    model, tok = lm
    cond, prior = encode_rows(tok, ROWS, SYSTEM, MAX_LEN)
    seqs = cond + prior
    one, counts = mean_span_losses(model, seqs, tok.pad_token_id, batch_tokens=1)
    big, counts_big = mean_span_losses(model, seqs, tok.pad_token_id, batch_tokens=100_000)
    np.testing.assert_allclose(one, big, rtol=LOSS_RTOL, atol=0, equal_nan=True)
    np.testing.assert_array_equal(counts, counts_big)
    np.testing.assert_array_equal(counts, [s.span_len for s in seqs])
    import curate.scoring.ifd as ifd_mod

    original = ifd_mod._span_head_supported
    ifd_mod._span_head_supported = lambda m: False
    try:
        full_head, _ = mean_span_losses(model, seqs, tok.pad_token_id, batch_tokens=100_000)
    finally:
        ifd_mod._span_head_supported = original
    np.testing.assert_allclose(full_head, big, rtol=LOSS_RTOL, atol=0, equal_nan=True)


def test_progress_reports_rows(lm):
    model, tok = lm
    calls = []
    score_rows(model, tok, ROWS[:6], SYSTEM, max_length=MAX_LEN, batch_tokens=200, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (6, 6) and all(t == 6 for _, t in calls)


def test_only_the_span_is_scored(lm):
    """The prompt conditions L_cond but is not scored; the prior never sees the prompt."""
    model, tok = lm
    base = {"system": "", "context": [], "instruction": "write a poem", "input": "", "response": "the cat sat on a mat"}
    other_prompt = {**base, "instruction": "sort list number add sum red blue"}
    other_response = {**base, "response": "dog ran fast"}
    a, b, c = (score_rows(model, tok, [r], SYSTEM, max_length=MAX_LEN) for r in (base, other_prompt, other_response))
    assert a["loss_prior"][0] == pytest.approx(b["loss_prior"][0], rel=LOSS_RTOL, abs=0)
    assert abs(a["loss_cond"][0] - b["loss_cond"][0]) > 10 * LOSS_RTOL * a["loss_cond"][0]
    assert a["n_response_tokens"][0] == b["n_response_tokens"][0]
    assert abs(a["loss_prior"][0] - c["loss_prior"][0]) > 10 * LOSS_RTOL * a["loss_prior"][0]
    enc = encode_conditional(tok, base, SYSTEM, MAX_LEN)
    assert tok.decode(enc.input_ids[enc.span_start:]).startswith("the cat sat on a mat<|end|>")


def test_ppl_ratio_vs_loss_ratio_example_from_note():
    cond, prior = np.array([1.25, 0.5]), np.array([2.0, 0.8])
    np.testing.assert_allclose(ifd_from_losses(cond, prior, "loss_ratio"), [0.625, 0.625])
    ppl = ifd_from_losses(cond, prior, "ppl_ratio")
    np.testing.assert_allclose(ppl, [0.4723666, 0.7408182], atol=1e-7)
    assert ppl[0] < ppl[1]  # the two variants rank the pair differently (tie vs strict order)
    literal = np.exp(cond) / np.exp(prior)  # the reference's ratio of exponentials
    np.testing.assert_allclose(ppl, literal, rtol=1e-14)


def test_bf16_storage_reproduces_reference_quantisation():
    assert ifd_from_losses(1.25, 2.0, precision="fp32") == pytest.approx(0.4723666, abs=1e-7)
    assert ifd_from_losses(1.25, 2.0, precision="bf16") == 0.47265625
    near_one = ifd_from_losses(1.0 + math.log(0.999), 1.0, precision="bf16")
    assert near_one == 1.0  # 0.999 rounds up: the row stops being a candidate (score < 1)
    assert ifd_from_losses(1.0 + math.log(0.999), 1.0, precision="fp32") < 1.0


def test_zero_prior_and_nan_edge_cases():
    out = ifd_from_losses([0.3, np.nan, 0.2], [0.0, 1.0, np.nan])
    assert out[0] == 0.0 and np.isnan(out[1]) and np.isnan(out[2])
    assert ifd_from_losses(0.3, 0.0, "loss_ratio") == 0.0
    with pytest.raises(ValueError):
        ifd_from_losses(1.0, 1.0, variant="mean")
    with pytest.raises(ValueError):
        ifd_from_losses(1.0, 1.0, precision="fp16")


def test_score_rows_variants_share_losses(lm):
    model, tok = lm
    ppl = score_rows(model, tok, ROWS[:5], SYSTEM, max_length=MAX_LEN)
    ratio = score_rows(model, tok, ROWS[:5], SYSTEM, max_length=MAX_LEN, variant="loss_ratio", precision="bf16")
    np.testing.assert_array_equal(ppl["loss_cond"], ratio["loss_cond"])
    expected = torch.tensor(ppl["loss_cond"] / ppl["loss_prior"]).to(torch.bfloat16).double().numpy()
    np.testing.assert_array_equal(ratio["ifd"], expected)


def test_length_buckets_respect_the_budget_and_bound_padding():
    lengths = [5, 50, 7, 49, 300, 12, 12, 1, 45, 48]
    batches = length_buckets(lengths, batch_tokens=100)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert len(b) == 1 or len(b) * longest <= 100
        assert lengths[b[0]] == longest
        assert all(lengths[i] >= 0.8 * longest for i in b)
    assert [4] in batches  # longer than the budget: alone
    assert [5, 6] in batches  # equal lengths share a batch
    assert length_buckets(lengths, batch_tokens=10_000, min_fill=0.0) == [sorted(range(10), key=lambda i: -lengths[i])]


def test_contrast_scores_each_response_under_another_prompt(lm):
    """loss_swapped equals the conditional loss of the response under its partner's prompt."""
    from curate.scoring.misalignment import partners, swapped_rows

    model, tok = lm
    res = score_rows(model, tok, ROWS, SYSTEM, max_length=MAX_LEN, contrast_seed=3)
    direct = score_rows(model, tok, swapped_rows(ROWS, partners(len(ROWS), 3)), SYSTEM, max_length=MAX_LEN)
    np.testing.assert_allclose(res["loss_swapped"], direct["loss_cond"], rtol=LOSS_RTOL, atol=0, equal_nan=True)
    np.testing.assert_allclose(res["ifd"], score_rows(model, tok, ROWS, SYSTEM, max_length=MAX_LEN)["ifd"], rtol=2 * LOSS_RTOL,
                               atol=0, equal_nan=True)
    assert "loss_swapped" not in score_rows(model, tok, ROWS, SYSTEM, max_length=MAX_LEN)


def test_several_contrast_partners_average_their_losses(lm):
    """contrast_partners=3: loss_swapped is the mean over the derangements of seeds 3, 4 and 5."""
    from curate.scoring.misalignment import partners, swapped_rows

    model, tok = lm
    res = score_rows(model, tok, ROWS, SYSTEM, max_length=MAX_LEN, contrast_seed=3, contrast_partners=3)
    each = [score_rows(model, tok, swapped_rows(ROWS, partners(len(ROWS), 3 + k)), SYSTEM, max_length=MAX_LEN)["loss_cond"]
            for k in range(3)]
    np.testing.assert_allclose(res["loss_swapped"], np.mean(each, axis=0), rtol=LOSS_RTOL, atol=0, equal_nan=True)
    one = score_rows(model, tok, ROWS, SYSTEM, max_length=MAX_LEN, contrast_seed=3)["loss_swapped"]
    assert not np.allclose(res["loss_swapped"], one, equal_nan=True)  # the other partners count


# Known values through `score_rows`, on a model whose logits are set by hand (tests/unit/topic_lm.py): the
# instruction's keyword boosts its topic's answer tokens, the prior text has no keyword and scores ln V per
# token. Rows 2 and 3 carry another topic's answer: their instruction helps only the template's tail tokens.
HAND_ROWS = [topic_lm.row("cats", "meow purr"), topic_lm.row("dogs", "woof bark"), topic_lm.row("birds", "woof bark"),
             topic_lm.row("birds", "meow purr purr")]


@pytest.fixture(scope="module")
def topic_model():
    tok = topic_lm.topic_tokenizer()
    assert [tok.tokenize(r["response"]) for r in HAND_ROWS] == [  # one token per word: the hand sums below hold
        ["meow", "Ġpurr"], ["woof", "Ġbark"], ["woof", "Ġbark"], ["meow", "Ġpurr", "Ġpurr"]]
    return topic_lm.TopicLM(tok).eval(), tok


@pytest.fixture(params=["span-head", "full-logits"])
def head(request, monkeypatch):
    """Both ways `per_token_span_losses` computes logits."""
    import curate.scoring.ifd as ifd_mod

    if request.param == "full-logits":
        monkeypatch.setattr(ifd_mod, "_span_head_supported", lambda model: False)
    return request.param


def hand_loss(response: str, topic: str, vocab: int) -> float:
    """Mean loss of the span (the response's words, <|end|>, the newline) in `topic`'s state: <|end|>, the
    newline and the topic's answer words cost LSE - BOOST, other words LSE. (Without a keyword: ln V each.)"""
    words = response.split()
    boosted = sum(w in topic_lm.TOPICS[topic].split() for w in words) + 2
    return topic_lm.lse(vocab) - topic_lm.BOOST * boosted / (len(words) + 2)


def hand_rtol(vocab: int) -> float:
    """float32 cross-entropy over `vocab` logits: the log-sum-exp's rounding, <= vocab * eps relative."""
    return vocab * float(np.finfo(np.float32).eps)


@pytest.mark.parametrize("batch_tokens", [20, 8192])  # one conditional text per batch / one padded batch
def test_score_rows_gives_the_hand_computed_ifd_of_every_variant(topic_model, head, batch_tokens):
    model, tok = topic_model
    v, rtol = len(tok), hand_rtol(len(tok))
    cond = np.array([hand_loss(r["response"], r["instruction"], v) for r in HAND_ROWS])
    prior = np.full(len(HAND_ROWS), math.log(v))
    # e.g. row 0: L_cond = ln(4e^6 + 295) - 6 = 1.5542, L_prior = ln 299 = 5.7004
    np.testing.assert_allclose(cond[0], 1.554186, atol=1e-6)
    expected = {"ppl_ratio": np.exp(cond - prior), "loss_ratio": cond / prior}
    assert expected["ppl_ratio"][0] == pytest.approx(0.015824, abs=1e-6) and (expected["ppl_ratio"] < 1).all()
    for variant, want in expected.items():
        res = score_rows(model, tok, HAND_ROWS, topic_lm.SYSTEM, max_length=64, batch_tokens=batch_tokens, variant=variant)
        np.testing.assert_allclose(res["loss_cond"], cond, rtol=rtol, atol=0)
        np.testing.assert_allclose(res["loss_prior"], prior, rtol=rtol, atol=0)
        assert res["n_response_tokens"].tolist() == [4, 4, 4, 5] and not res["truncated"].any()
        # ppl_ratio = exp(L_cond - L_prior): the losses' absolute errors add in the exponent
        ifd_rtol = rtol * float(np.max(cond + prior)) if variant == "ppl_ratio" else 2 * rtol
        np.testing.assert_allclose(res["ifd"], want, rtol=ifd_rtol, atol=0)
        bf16 = score_rows(model, tok, HAND_ROWS, topic_lm.SYSTEM, max_length=64, batch_tokens=batch_tokens,
                          variant=variant, precision="bf16")["ifd"]
        # stored as bfloat16 (8 significant bits): a bf16 number, rounded to within 2^-8 relative of the value
        assert np.array_equal(bf16, torch.tensor(bf16).to(torch.bfloat16).double().numpy())
        np.testing.assert_allclose(bf16, want, rtol=2.0**-8 + ifd_rtol, atol=0)
    if head == "full-logits" and batch_tokens == 20:  # the naive loop gives the same known values
        slow = score_rows_unbatched(model, tok, HAND_ROWS, topic_lm.SYSTEM, max_length=64, variant="loss_ratio")
        np.testing.assert_allclose(slow["loss_cond"], cond, rtol=rtol, atol=0)
        np.testing.assert_allclose(slow["ifd"], expected["loss_ratio"], rtol=2 * rtol, atol=0)


@pytest.mark.parametrize("n_partners", [1, 2])
def test_contrast_loss_is_the_hand_computed_loss_under_the_partners_prompts(topic_model, head, n_partners):
    """loss_swapped(i) = mean over the partners j of L(y_i | x_j), each computed by hand from j's topic."""
    from curate.scoring.misalignment import partners

    model, tok = topic_model
    v, n = len(tok), len(HAND_ROWS)
    res = score_rows(model, tok, HAND_ROWS, topic_lm.SYSTEM, max_length=64, contrast_seed=11, contrast_partners=n_partners)
    donors = [partners(n, 11 + k) for k in range(n_partners)]
    want = [np.mean([hand_loss(r["response"], HAND_ROWS[d[i]]["instruction"], v) for d in donors])
            for i, r in enumerate(HAND_ROWS)]
    np.testing.assert_allclose(res["loss_swapped"], want, rtol=hand_rtol(v), atol=0)
    cond = [hand_loss(r["response"], r["instruction"], v) for r in HAND_ROWS]
    np.testing.assert_allclose(res["loss_cond"], cond, rtol=hand_rtol(v), atol=0)  # the contrast leaves L_cond alone
    # rows 0 and 1 are the only cats and dogs rows: under any partner their answers lose the boost, +BOOST/2 nat
    np.testing.assert_allclose(np.asarray(want)[:2] - np.asarray(cond)[:2], topic_lm.BOOST / 2, rtol=1e-12)
