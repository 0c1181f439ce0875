"""Held-out evaluation: per-skill response loss and greedy exact match."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from curate.evaluation import evaluate, evaluate_checkpoint
from curate.evaluation.heldout import greedy_answers, is_exact_match
from curate.models.tiny_llama import build_tiny_llama
from curate.models.tokenizer import train_tokenizer


def loss_rtol(tok) -> float:
    """Two float32 computations of the same token losses (other batch shapes) differ by rounding,
    dominated by the longest sum, the vocabulary's log-sum-exp: <= len(vocab) * eps relative."""
    return len(tok) * torch.finfo(torch.float32).eps
from curate.training import RoundConfig, RoundRecipe

SYSTEM = "Answer briefly."
MATH = [
    {"instruction": f"What is {a} times {b}?", "input": "", "response": f"{a * b}", "system": "", "context": []}
    for a, b in [(2, 3), (4, 5), (6, 7)]
]
CAPITALS = [
    {"instruction": "Capital of France?", "input": "", "response": "Paris is the capital.", "system": "",
     "context": []},
    {"instruction": "Capital of Peru?", "input": "Short answer", "response": "Lima", "system": "", "context": []},
]
MEMO = {"instruction": "Say the code word.", "input": "", "response": "banana split", "system": "", "context": []}



@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    corpus = [f"{r['instruction']} {r['input']} {r['response']}" for r in MATH + CAPITALS + [MEMO]] * 4 + [SYSTEM] * 4
    tok = train_tokenizer(corpus, vocab_size=300)
    model = build_tiny_llama(
        len(tok), hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
        pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, seed=5,
    )
    path = tmp_path_factory.mktemp("eval") / "base"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def load(path: Path):
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_exact_match_ignores_surrounding_whitespace_only():
    assert is_exact_match(" Paris is the capital.\n", "Paris is the capital.")
    assert not is_exact_match("paris is the capital.", "Paris is the capital.")
    assert not is_exact_match("Paris is the capital", "Paris is the capital.")


def hugging_face_loss(model, tok, rows) -> tuple[float, int]:
    """Token-weighted mean response loss of `rows` the Hugging Face way: the tokenizer's own chat template over
    the messages written out here, labels on the response's tokens plus `<|end|>` and the newline after it."""
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            user = row["instruction"] + (f"\nInput: {row['input']}" if row["input"] else "")
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user},
                        {"role": "assistant", "content": row["response"]}]
            ids = torch.tensor([tok(tok.apply_chat_template(messages, tokenize=False))["input_ids"]])
            n = len(tok(row["response"] + "<|end|>\n")["input_ids"])
            labels = ids.clone()
            labels[0, : ids.shape[1] - n] = -100
            total += float(model(input_ids=ids, labels=labels).loss) * n
            count += n
    return total / count, count


def test_per_skill_loss_and_exact_match(base):
    model, tok = load(base)
    model.train()
    out = evaluate(model, tok, {"math": MATH, "capitals": CAPITALS}, SYSTEM, max_length=64, max_new_tokens=16)
    assert model.training  # mode restored
    assert set(out["sets"]) == {"math", "capitals"}
    for name, rows in (("math", MATH), ("capitals", CAPITALS)):
        s = out["sets"][name]
        loss, tokens = hugging_face_loss(model.eval(), tok, rows)  # each set over its own rows only
        assert s["n"] == len(rows) and s["response_tokens"] == tokens
        assert s["loss"] == pytest.approx(loss, rel=loss_rtol(tok), abs=0)
        assert s["exact_match"] == 0.0  # an untrained model reproduces none of the answers
    math_loss, capitals_loss = out["sets"]["math"]["loss"], out["sets"]["capitals"]["loss"]
    assert abs(math_loss - capitals_loss) > 100 * loss_rtol(tok) * math_loss  # a mix-up of the sets would show
    # sets count equally, whatever their token counts
    assert out["mean_loss"] == pytest.approx((math_loss + capitals_loss) / 2)
    assert out["mean_exact_match"] == 0.0


def test_per_row_losses_are_each_rows_own_loss(base):
    """The per-row losses `curate compare` pairs arms on: row i's entry is the loss of row i evaluated alone
    (Hugging Face's loss over its response), in row order, and their token-weighted mean is the set's loss."""
    model, tok = load(base)
    rows = [{**r, "row_id": f"r{i}"} for i, r in enumerate(MATH + CAPITALS)]
    out = evaluate(model, tok, {"all": rows}, SYSTEM, max_length=64, exact_match=False)
    per_row = out["rows"]["all"]
    assert per_row["row_id"] == [f"r{i}" for i in range(len(rows))]
    for row, loss, tokens in zip(rows, per_row["loss"], per_row["tokens"]):
        alone, count = hugging_face_loss(model, tok, [row])
        assert tokens == count and loss == pytest.approx(alone, rel=loss_rtol(tok), abs=0)
    weighted = sum(l * n for l, n in zip(per_row["loss"], per_row["tokens"])) / sum(per_row["tokens"])
    assert weighted == pytest.approx(out["sets"]["all"]["loss"], rel=loss_rtol(tok), abs=0)


def test_loss_is_token_weighted_and_matches_hugging_face_loss(base):
    model, tok = load(base)
    loss, count = hugging_face_loss(model, tok, CAPITALS)
    out = evaluate(model, tok, {"capitals": CAPITALS}, SYSTEM, max_length=64, exact_match=False)
    assert out["sets"]["capitals"]["loss"] == pytest.approx(loss, rel=loss_rtol(tok), abs=0)
    assert out["sets"]["capitals"]["response_tokens"] == count
    assert out["sets"]["capitals"]["exact_match"] is None and out["mean_exact_match"] is None


@pytest.fixture(scope="module")
def memorised(base, tmp_path_factory) -> Path:
    """The base model trained until it reproduces every answer of MATH + CAPITALS + MEMO."""
    out = tmp_path_factory.mktemp("eval") / "memorised"
    config = RoundConfig(system_prompt=SYSTEM, max_length=64, batch_size=6, grad_accum=1, lr=1e-2, weight_decay=0.0,
                         warmup_steps=0, total_steps=60, schedule="constant", epochs=60, seed=0, round_index=0)
    RoundRecipe(config, base, out, MATH + CAPITALS + [MEMO]).run()
    return out


def test_batching_does_not_change_results(memorised):
    model, tok = load(memorised)
    rows = MATH + CAPITALS + [MEMO]
    one_by_one = evaluate(model, tok, {"all": rows}, SYSTEM, max_length=64, batch_tokens=1, exact_match=False)
    batched = evaluate(model, tok, {"all": rows}, SYSTEM, max_length=64, batch_tokens=4096, exact_match=False)
    assert batched["sets"]["all"]["loss"] == pytest.approx(one_by_one["sets"]["all"]["loss"], rel=loss_rtol(tok), abs=0)
    # greedy answers of prompts of different lengths, left-padded into one batch, equal one-by-one answers
    prompt = {**MEMO, "instruction": "Say the code word, now with a much longer prompt around it."}
    with torch.inference_mode():
        single = greedy_answers(model, tok, rows + [prompt], SYSTEM, 64, batch_tokens=1, max_new_tokens=12)
        together = greedy_answers(model, tok, rows + [prompt], SYSTEM, 64, batch_tokens=4096, max_new_tokens=12)
    assert together == single
    assert len(set(single)) >= 5  # answers differ per prompt, so the comparison means something


def test_memorised_answers_are_exact_matches(base, memorised):
    other = {**MEMO, "instruction": "A much longer unrelated question about capitals and numbers?", "response": "x"}
    sets = {"math": MATH, "capitals": CAPITALS, "mixed": [MEMO, other]}
    out = evaluate_checkpoint(memorised, sets, SYSTEM, 64, max_new_tokens=16)
    assert out["sets"]["math"]["exact_match"] == 1.0
    assert out["sets"]["capitals"]["exact_match"] == 1.0
    assert out["sets"]["mixed"]["exact_match"] == 0.5
    assert out["mean_exact_match"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert out["sets"]["math"]["loss"] < 0.1
    before = evaluate(*load(base), sets, SYSTEM, 64, max_new_tokens=16)
    assert before["mean_exact_match"] == 0.0
    assert before["sets"]["math"]["loss"] > 10 * out["sets"]["math"]["loss"]
