from curate.scoring.cache import RowScoreCache


def _rec(i, ifd=0.5):
    return {"row_id": f"r{i}", "loss_cond": 1.0, "loss_prior": 2.0, "ifd": ifd, "n_response_tokens": 3, "loss_swapped": 2.5,
            "truncated": False}


def test_cache_is_keyed_by_scorer_and_params_and_row(tmp_path):
    c = RowScoreCache(tmp_path, "scorerA", {"max_length": 256})
    assert c.lookup(["r1"]) == {}
    c.add([_rec(1), _rec(2)])
    assert set(c.lookup(["r1", "r2", "r3"])) == {"r1", "r2"}
    c.add([_rec(2, ifd=0.7), _rec(3)])  # re-added rows replace, others stay
    got = c.lookup(["r1", "r2", "r3"])
    assert set(got) == {"r1", "r2", "r3"} and got["r2"]["ifd"] == 0.7
    assert RowScoreCache(tmp_path, "scorerB", {"max_length": 256}).lookup(["r1"]) == {}
    assert RowScoreCache(tmp_path, "scorerA", {"max_length": 128}).lookup(["r1"]) == {}
