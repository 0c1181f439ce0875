"""Proxy fidelity (curate/scoring/fidelity.py) against values computed by hand, and the score stage's check
with a proxy scorer."""
from __future__ import annotations

import math

import pytest

from curate.scoring.fidelity import fidelity_sample, proxy_fidelity


def test_spearman_and_top_overlap_by_hand():
    # ranks 1..5 against 2,1,4,3,5: d = 1,1,1,1,0, rho = 1 - 6 x 4 / (5 x 24) = 0.8
    out = proxy_fidelity([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 4.0, 3.0, 5.0], top_share=0.4)
    assert out["spearman"] == pytest.approx(0.8)
    # k = ceil(0.4 x 5) = 2: proxy's top {4, 3}, trained's top {4, 2}: one shared of 2
    assert out["top_k"] == 2 and out["top_overlap"] == 0.5 and out["random_overlap"] == pytest.approx(0.4)
    assert proxy_fidelity([1, 2, 3], [30, 20, 10])["spearman"] == pytest.approx(-1.0)


def test_rows_without_a_finite_score_on_either_side_are_left_out():
    nan = float("nan")
    out = proxy_fidelity([0.5, nan, 0.7, 0.9], [0.4, 0.8, nan, 0.6], top_share=0.5)
    assert out["rows"] == 2 and out["spearman"] == pytest.approx(1.0) and out["top_overlap"] == 1.0
    assert proxy_fidelity([nan, 1.0], [1.0, 2.0])["spearman"] is None


def test_the_sample_is_seeded_and_at_least_two_rows():
    assert fidelity_sample(1000, 0.02, 0) == fidelity_sample(1000, 0.02, 0)
    assert fidelity_sample(1000, 0.02, 0) != fidelity_sample(1000, 0.02, 1)
    assert len(fidelity_sample(1000, 0.02, 0)) == 20 and len(set(fidelity_sample(1000, 0.02, 0))) == 20
    assert len(fidelity_sample(40, 0.01, 0)) == 2 and fidelity_sample(1, 0.5, 0) == [0]
    assert fidelity_sample(1000, 0.0, 0) == []
    assert all(0 <= p < 1000 for p in fidelity_sample(1000, 0.1, 3)) and math.isclose(len(fidelity_sample(1000, 0.1, 3)), 100)


def _model(path, tok, hidden: int, layers: int, seed: int):
    from curate.models.tiny_llama import build_tiny_llama

    model = build_tiny_llama(len(tok), hidden_size=hidden, num_layers=layers, num_heads=2, intermediate_size=2 * hidden,
                             pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, seed=seed)
    model.save_pretrained(path)
    tok.save_pretrained(path)


def test_a_proxy_scores_the_pool_and_the_trained_model_scores_the_fidelity_sample(tmp_path):
    """score_pool with a proxy: the scores are the proxy's; the fidelity sample's rows are scored by the trained
    model too, and the stats' Spearman and overlap are those of the two score vectors on those rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pathlib import Path

    from curate.artifacts import Ref, read_json, write_parquet
    from curate.config import Params
    from curate.models.loading import load_causal_lm
    from curate.models.tokenizer import train_tokenizer
    from curate.schema import ROWS
    from curate.scoring.ifd import score_rows
    from tasks.pipeline import stage_params
    from tasks.score import score_pool

    rows = [{"row_id": f"r{i:03d}", "source": "p.jsonl", "position": i, "system": "", "context": [],
             "instruction": f"Add {i} and {i % 7}.", "input": "", "response": f"The sum is {i + i % 7}.",
             "skill": None, "truth": None} for i in range(120)]
    tok = train_tokenizer([f"{r['instruction']} {r['response']}" for r in rows] * 2, vocab_size=400)
    _model(tmp_path / "trained", tok, hidden=64, layers=2, seed=1)
    _model(tmp_path / "proxy", tok, hidden=32, layers=1, seed=2)
    write_parquet(pa.Table.from_pylist(rows, schema=ROWS), tmp_path / "pool" / "rows.parquet")
    p = Params.model_validate({"scoring": {"model": str(tmp_path / "proxy"), "fidelity_share": 0.1, "contrast": False,
                                           "max_length": 64}, "selection": {"mismatch_gate": "off"}})
    trained, proxy = Ref.of(tmp_path / "trained").to_dict(), Ref.of(tmp_path / "proxy").to_dict()
    ref = score_pool.fn(project=str(tmp_path / "project"), pool=Ref.of(tmp_path / "pool").to_dict(), model=proxy,
                        params=stage_params(p, "score"), trained=trained)
    stats = read_json(Path(ref["path"]) / "stats.json")["proxy"]
    assert stats["model"] == str(tmp_path / "proxy") and stats["scorer_parameters"] < stats["trained_parameters"]
    sample = fidelity_sample(120, 0.1, 0)
    f = stats["fidelity"]
    assert f["sampled"] == len(sample) == 12 and f["forward_tokens"] > 0
    proxy_ifd = pq.read_table(Path(ref["path"]) / "scores.parquet")["ifd"].to_numpy()
    model, tokenizer = load_causal_lm(tmp_path / "trained")
    own = score_rows(model, tokenizer, [rows[i] for i in sample], "You are a helpful assistant.", max_length=64)["ifd"]
    expected = proxy_fidelity(proxy_ifd[sample], own)
    assert f["spearman"] == pytest.approx(expected["spearman"], abs=1e-9) and f["top_overlap"] == expected["top_overlap"]
    model, tokenizer = load_causal_lm(tmp_path / "proxy")
    by_proxy = score_rows(model, tokenizer, rows, "You are a helpful assistant.", max_length=64)["ifd"]
    assert np.allclose(proxy_ifd, by_proxy, rtol=1e-9, atol=0)  # the pool's scores are the proxy's
