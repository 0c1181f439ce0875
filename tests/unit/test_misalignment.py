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
