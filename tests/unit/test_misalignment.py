import numpy as np

from curate.scoring.misalignment import mismatch_margin, partners, swapped_rows


def test_partners_are_a_seeded_derangement():
    for n in (2, 3, 10, 101):
        p = partners(n, seed=5)
        assert sorted(p.tolist()) == list(range(n)) and not np.any(p == np.arange(n))
    assert partners(10, 1).tolist() == partners(10, 1).tolist() != partners(10, 2).tolist()
    assert partners(1, 0).tolist() == [0]


def test_swapped_rows_keep_the_response_and_take_the_partner_prompt():
    rows = [{"system": "", "context": [], "instruction": f"q{i}", "input": f"in{i}", "response": f"a{i}", "row_id": str(i)}
            for i in range(4)]
    p = partners(4, 0)
    for i, s in enumerate(swapped_rows(rows, p)):
        assert s["response"] == f"a{i}" and s["row_id"] == str(i)
        assert s["instruction"] == f"q{p[i]}" and s["input"] == f"in{p[i]}"


def test_margin_sign():
    assert mismatch_margin(np.array([2.0, 1.0]), np.array([1.0, 1.2])).tolist() == [1.0, -0.19999999999999996]


def test_the_gate_parks_the_mismatched_rows_of_a_hand_built_model():
    """Margins through `score_rows` on the hand-set model of tests/unit/topic_lm.py: rows 0 and 1 answer their own
    topic (margin BOOST/2 under any other prompt), rows 2 and 3 answer another topic's question, so their own
    prompt helps no more than a partner's (margin 0 or below). All four have IFD < 1: only the gate parks 2 and 3."""
    import topic_lm

    from curate.scoring.ifd import score_rows
    from curate.selection.rounds import eligibility

    tok = topic_lm.topic_tokenizer()
    rows = [topic_lm.row("cats", "meow purr"), topic_lm.row("dogs", "woof bark"), topic_lm.row("birds", "woof bark"),
            topic_lm.row("birds", "meow purr purr")]
    res = score_rows(topic_lm.TopicLM(tok).eval(), tok, rows, topic_lm.SYSTEM, max_length=64, contrast_seed=3)
    margin = mismatch_margin(res["loss_swapped"], res["loss_cond"])
    # by hand (see topic_lm): row 0 and 1 lose the boost of their two answer words out of four span tokens
    eps = len(tok) * float(np.finfo(np.float32).eps) * topic_lm.lse(len(tok))  # float32 loss rounding, absolute
    np.testing.assert_allclose(margin[:2], topic_lm.BOOST / 2, rtol=0, atol=2 * eps)
    assert (margin[2:] < eps).all()
    assert (res["ifd"] < 1).all()
    ok, why = eligibility(res["ifd"], margin, gate=True, margin_min=0.3)
    assert ok.tolist() == [True, True, False, False]
    assert why[2].startswith("instruction does not help") and why[3].startswith("instruction does not help")
    assert eligibility(res["ifd"], margin, gate=False)[0].all()  # without the gate, IFD alone takes all four
