"""Long and multi-turn rows are cut to the token budget, not lost: the rule (curate.models.truncation)
and its properties on real encodings (curate.models.chat), plus ingest's byte safety limit."""
from __future__ import annotations

import json
import random

import pytest

from curate.ingest import ingest_path
from curate.ingest.normalize import RecordError, record_to_row
from curate.models.chat import conversation, encode_conditional, encode_prior, generation_prompt_ids, render_ids
from curate.models.tokenizer import train_tokenizer
from curate.models.truncation import fit_prompt, response_tokens_kept, token_budget

WORDS = "the cat sat on a mat dog ran fast red blue apple sort list number add sum write poem story".split()
SYSTEM = "You are a helpful assistant."


def chars(msgs) -> int:
    """A stand-in for a rendered length: characters plus 3 per message (its header)."""
    return sum(len(m["content"]) + 3 for m in msgs)


def turn(role, text):
    return {"role": role, "content": text}


# --- the rule ---------------------------------------------------------------------------------

def test_token_budget_is_capped_by_the_model_context():
    assert token_budget(4096, 2048) == 2048
    assert token_budget(256, 8192) == 256
    assert token_budget(256, None) == 256


def test_response_keeps_all_when_it_fits_else_at_least_its_share():
    assert response_tokens_kept(30, 50, 100, 0.5) == 30  # fits: untouched
    assert response_tokens_kept(30, 90, 100, 0.5) == 30  # long prompt, short response: all of it
    assert response_tokens_kept(300, 10, 100, 0.5) == 90  # short prompt: the response takes what is left
    assert response_tokens_kept(300, 400, 100, 0.5) == 50  # both long: the response's share
    assert response_tokens_kept(300, 400, 100, 0.8) == 80
    assert response_tokens_kept(300, 0, 100, 0.5) == 99  # one prompt token always stays


def test_fit_prompt_drops_the_oldest_exchanges_first():
    system = turn("system", "s" * 10)
    old = [turn("user", "a" * 20), turn("assistant", "b" * 20), turn("user", "c" * 20), turn("assistant", "d" * 20)]
    last = turn("user", "q" * 10)
    prompt = [system, *old, last]
    assert fit_prompt(prompt, chars(prompt), chars) == prompt  # fits: untouched
    kept = fit_prompt(prompt, chars(prompt) - 1, chars)
    assert kept == [system, *old[2:], last]  # the oldest exchange went, whole (no orphan assistant turn first)
    assert fit_prompt(prompt, chars([system, last]) + 5, chars) == [system, last]


def test_fit_prompt_keeps_the_tail_of_the_last_user_turn_then_drops_the_system_prompt():
    system = turn("system", "s" * 10)
    last = turn("user", "".join(str(i % 10) for i in range(100)))
    kept = fit_prompt([system, turn("user", "x" * 50), turn("assistant", "y"), last], 60, chars)
    assert kept[0] == system and len(kept) == 2
    assert last["content"].endswith(kept[1]["content"]) and chars(kept) == 60  # the longest tail that fits
    # the system prompt alone is over budget: it goes, and the last turn keeps a longer tail
    big = turn("system", "s" * 80)
    kept = fit_prompt([big, last], 60, chars)
    assert len(kept) == 1 and last["content"].endswith(kept[0]["content"]) and chars(kept) == 60
    assert fit_prompt([big, last], 2, chars) is None  # not even an empty turn fits


# --- the rule on real encodings (tiny BPE tokenizer + the tiny chat template) --------------------------

@pytest.fixture(scope="module")
def tok():
    return train_tokenizer([" ".join(WORDS)] * 30, vocab_size=320)


def _text(rng, lo, hi):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _long_rows(n=40, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        context = []
        for _ in range(rng.randint(0, 6)):
            context += [turn("user", _text(rng, 1, 40)), turn("assistant", _text(rng, 1, 40))]
        rows.append({"system": "Answer briefly." if i % 4 == 0 else "", "context": context,
                     "instruction": _text(rng, 1, 120), "input": _text(rng, 1, 20) if i % 5 == 0 else "",
                     "response": _text(rng, 1, 150)})
    return rows


def _kept_turns(tok, enc, row):
    """Which of the row's earlier turns the encoding kept: their whole renderings found in the decoded prompt."""
    prompt = tok.decode(enc.input_ids[: enc.span_start])
    return [f"<|{t['role']}|>\n{t['content']}<|end|>" in prompt for t in row["context"]]


@pytest.mark.parametrize("budget", [8, 24, 64, 160])  # 8: not even an empty last turn fits; the prompt keeps its last tokens
def test_any_long_conversation_fits_with_its_response(tok, budget):
    """Length <= budget; the span is never empty and is the response's tokens or their head; the
    prior holds the same tokens; kept earlier turns are the latest ones."""
    for row in _long_rows():
        full = encode_conditional(tok, row, SYSTEM, 100_000)
        enc = encode_conditional(tok, row, SYSTEM, budget)
        assert len(enc.input_ids) <= budget and enc.span_len > 0 and enc.span_start >= 1
        assert enc.truncated == (len(full.input_ids) > budget)
        response = full.input_ids[full.span_start:]
        assert enc.input_ids[enc.span_start:] == response[: enc.span_len]
        assert enc.span_len + enc.span_cut == len(response)
        if enc.span_len < len(response):  # a cut response keeps at least its share of the budget
            assert enc.span_len >= budget // 2
        kept = _kept_turns(tok, enc, row)
        assert kept == sorted(kept)  # once a turn is kept, every later one is: the oldest went first
        prior = encode_prior(tok, row, enc.span_len, budget, enc.span_len + enc.span_cut)
        assert prior.input_ids[prior.span_start:] == enc.input_ids[enc.span_start:]
        assert len(prior.input_ids) <= budget


def test_the_latest_context_is_kept_and_the_last_user_turn_keeps_its_tail(tok):
    row = {"system": "", "context": [turn("user", "apple " * 30), turn("assistant", "poem " * 30),
                                     turn("user", "dog " * 5), turn("assistant", "cat " * 5)],
           "instruction": "number " * 10 + "red blue", "input": "", "response": "the mat"}
    need = len(encode_conditional(tok, {**row, "context": row["context"][2:]}, SYSTEM, 10**5).input_ids)
    text = tok.decode(encode_conditional(tok, row, SYSTEM, need).input_ids)
    assert "apple" not in text and "poem" not in text and "dog dog" in text and "cat cat" in text and SYSTEM in text
    text = tok.decode(encode_conditional(tok, row, SYSTEM, need - 1).input_ids)  # the next exchange goes, whole
    assert "dog" not in text and "cat" not in text and SYSTEM in text
    assert text.endswith("number " * 10 + "red blue<|end|>\n<|assistant|>\nthe mat<|end|>\n")
    tiny = encode_conditional(tok, row, SYSTEM, 16)
    tail = tok.decode(tiny.input_ids)
    assert "dog" not in tail and tail.endswith("red blue<|end|>\n<|assistant|>\nthe mat<|end|>\n")
    assert len(tiny.input_ids) <= 16


def test_generation_prompt_follows_the_same_rule(tok):
    row = {"system": "", "context": [turn("user", "apple " * 40), turn("assistant", "poem " * 40)],
           "instruction": "sort the list", "input": "", "response": "done"}
    ids = generation_prompt_ids(tok, row, SYSTEM, 40)
    full = render_ids(tok, conversation(row, SYSTEM)[:-1], generation_prompt=True)
    assert len(ids) <= 40 and ids[-2:] == full[-2:]  # ends with the generation prompt
    assert "apple" not in tok.decode(ids)


# --- ingest: long rows are data; only a byte safety limit remains --------------------------------

def test_ingest_keeps_long_multi_turn_rows(tmp_path):
    turns = [{"from": "human" if i % 2 == 0 else "gpt", "value": "word " * 3000} for i in range(8)]
    (tmp_path / "chat.jsonl").write_text(json.dumps({"conversations": turns}) + "\n")
    result = ingest_path(tmp_path)
    assert result.rows.num_rows == 1 and result.quarantine.num_rows == 0
    assert len(result.rows.to_pylist()[0]["context"]) == 6


def test_the_byte_limit_counts_utf8_bytes_and_names_the_parameter():
    record = {"instruction": "é" * 60, "output": "ok"}  # 120 bytes + 2, but 62 characters
    assert record_to_row(record, "alpaca", 122)["response"] == "ok"
    with pytest.raises(RecordError) as e:
        record_to_row(record, "alpaca", 121)
    assert e.value.code == "too_large" and "ingest.max_bytes" in str(e.value) and e.value.row_id


def test_scoring_budget_is_capped_by_the_model_context(tok):
    """max_length beyond the model's context: every sequence still fits the model (no position overflow)."""
    import numpy as np
    import torch

    from curate.models.tiny_llama import build_tiny_llama
    from curate.scoring.ifd import encode_rows, score_rows

    model = build_tiny_llama(len(tok), hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                             max_positions=48, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, seed=0).eval()
    rows = _long_rows(8, seed=1)
    with torch.inference_mode():
        res = score_rows(model, tok, rows, SYSTEM, max_length=10_000, contrast_seed=0)
    cond, prior = encode_rows(tok, rows, SYSTEM, 48)
    assert all(len(s.input_ids) <= 48 for s in cond + prior)
    assert res["n_response_tokens"].tolist() == [c.span_len for c in cond]
    assert res["truncated"].tolist() == [c.truncated for c in cond] and res["truncated"].any()
    assert np.all(np.isfinite(res["ifd"]))


def test_the_old_length_parameter_names_its_replacement():
    from curate.config import ParamsError, load_params

    with pytest.raises(ParamsError, match="max_bytes"):
        load_params(None, ["ingest.max_chars=8000"])
