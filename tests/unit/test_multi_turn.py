"""Multi-turn training (training.assistant_turns: all): the loss covers every kept assistant turn,
with the same per-token span losses as the single-span path."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from curate.models.tiny_llama import build_tiny_llama
from curate.models.tokenizer import train_tokenizer
from curate.scoring.ifd import pad_batch, per_token_span_losses
from curate.training import RoundConfig, RoundRecipe
from curate.training.trainer import build_examples, micro_batch_loss

SYSTEM = "You are terse."
ROWS = [
    {"system": "", "instruction": f"And {a} plus {b}?", "input": "", "response": f"It is {a + b}.",
     "context": [{"role": "user", "content": f"What is {a} plus {a}?"}, {"role": "assistant", "content": f"{2 * a}."},
                 {"role": "user", "content": "Thanks. Another one."}, {"role": "assistant", "content": "Sure, ask."}]}
    for a in range(3) for b in range(2)
]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    corpus = [" ".join(t["content"] for t in r["context"]) + f" {r['instruction']} {r['response']}" for r in ROWS] * 4
    tok = train_tokenizer(corpus + [SYSTEM] * 4, vocab_size=300)
    model = build_tiny_llama(len(tok), hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                             pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, seed=3)
    path = tmp_path_factory.mktemp("multi") / "base"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def load(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_all_turns_spans_every_assistant_turn(base):
    _, tok = load(base)
    (last,), _ = build_examples(tok, ROWS[:1], SYSTEM, 256)
    (every,), _ = build_examples(tok, ROWS[:1], SYSTEM, 256, assistant_turns="all")
    assert every.encoded.input_ids == last.encoded.input_ids and every.encoded.span_start == last.encoded.span_start
    texts = [tok.decode(every.encoded.input_ids[a:b]) for a, b in every.encoded.spans]
    assert texts == ["0.<|end|>\n", "Sure, ask.<|end|>\n", "It is 0.<|end|>\n"]
    assert every.n_response == sum(b - a for a, b in every.encoded.spans) > last.n_response


@torch.no_grad()
def test_multi_span_loss_is_hugging_face_loss_on_all_spans(base):
    model, tok = load(base)
    examples, _ = build_examples(tok, ROWS[:3], SYSTEM, 256, assistant_turns="all")
    mb = micro_batch_loss(model, examples, tok.pad_token_id, denom=5.0, device="cpu")
    expected = 0.0
    for e in examples:
        ids = torch.tensor([e.encoded.input_ids])
        labels = torch.full_like(ids, -100)
        for a, b in e.encoded.spans:
            labels[0, a:b] = ids[0, a:b]
        expected += float(model(input_ids=ids, labels=labels).loss) * e.n_response
    assert float(mb.loss) == pytest.approx(expected / 5.0, rel=len(tok) * torch.finfo(torch.float32).eps)
    assert mb.response_tokens == sum(e.n_response for e in examples)


@torch.no_grad()
def test_a_mask_of_one_span_equals_the_span_start_path(base):
    """The [B, T] mask form gives the scorer's single-span losses exactly (same tokens, same order)."""
    model, tok = load(base)
    examples, _ = build_examples(tok, ROWS, SYSTEM, 256)
    ids, mask, starts = pad_batch([e.encoded for e in examples], tok.pad_token_id, "cpu")
    assert starts.dim() == 1  # no earlier spans: the single-span fast path
    pos = torch.arange(ids.shape[1]).unsqueeze(0)
    by_start, idx_start = per_token_span_losses(model, ids, mask, starts)
    by_mask, idx_mask = per_token_span_losses(model, ids, mask, pos >= starts.unsqueeze(1))
    assert torch.equal(idx_start, idx_mask)
    # same tokens through the same forward: equal up to the rounding of one vocabulary-wide log-sum-exp
    torch.testing.assert_close(by_mask, by_start, rtol=len(tok) * torch.finfo(torch.float32).eps, atol=0)


def test_round_trains_on_every_turn(base, tmp_path):
    kw = RoundConfig(system_prompt=SYSTEM, max_length=256, batch_size=3, grad_accum=1, lr=5e-3, weight_decay=0.0,
                     warmup_steps=0, total_steps=2, schedule="constant", epochs=1, seed=0, round_index=0)
    last = RoundRecipe(kw, base, tmp_path / "last", ROWS).run()
    every = RoundRecipe(replace(kw, assistant_turns="all"), base, tmp_path / "all", ROWS).run()
    assert last.steps == every.steps == 2 and every.truncated_rows == 0
    tokens_last = sum(last.log.column("response_tokens").to_pylist())
    tokens_all = sum(every.log.column("response_tokens").to_pylist())
    assert tokens_all > 2 * tokens_last  # three assistant turns per row instead of one
