"""RDS+ embeddings with a real (tiny) causal LM: batching and padding do not change a row's e(x),
and the tokens counted are the rows' tokens."""
from __future__ import annotations

import numpy as np
import torch

from curate.models.chat import encode_conditional
from curate.models.tiny_llama import build_tiny_llama
from curate.models.tokenizer import train_tokenizer
from curate.selection.rds import embed_rows

ROWS = [{"instruction": f"Question {i}: " + "word " * (i * 3), "input": "", "response": "answer " * (i + 1),
         "system": "", "context": []} for i in range(6)]


def test_batched_embeddings_equal_one_row_at_a_time():
    tok = train_tokenizer([f"{r['instruction']} {r['response']}" for r in ROWS] * 3, vocab_size=300)
    model = build_tiny_llama(len(tok), hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                             pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, seed=3).eval()
    batched = embed_rows(model, tok, ROWS, "Be brief.", max_length=64, batch_tokens=4096)
    alone = np.concatenate([embed_rows(model, tok, [r], "Be brief.", max_length=64).vectors for r in ROWS])
    assert batched.vectors.shape == (len(ROWS), 32)
    # float32 forwards of the same tokens in other batch shapes differ by rounding only
    scale = np.abs(alone).max()
    assert np.allclose(batched.vectors, alone, rtol=0, atol=64 * torch.finfo(torch.float32).eps * scale)
    assert len({tuple(np.round(v, 6)) for v in batched.vectors}) == len(ROWS)  # rows differ
    lengths = [len(encode_conditional(tok, r, "Be brief.", 64).input_ids) for r in ROWS]
    assert batched.forward_tokens == sum(lengths)


def test_embedding_and_similarity_of_two_rows_match_a_hand_computation():
    """On the hand-set model of tests/unit/topic_lm.py the last hidden state is one-hot: slot 0 until the topic
    keyword, then the topic's slot. A row renders as 9 tokens before its keyword (<|system|> \\n Be Ġbrief .
    <|end|> \\n <|user|> \\n), the keyword, <|end|> \\n <|assistant|> \\n, its words, <|end|> \\n: n = 16 + words
    tokens, the keyword at position 10. With weights 1..n, e(x) = (1 + ... + 9, 10 + ... + n in the topic's
    slot) / (1 + ... + n)."""
    import topic_lm

    from curate.selection.rds import rds_scores

    tok = topic_lm.topic_tokenizer()
    model = topic_lm.TopicLM(tok).eval()
    rendered = "<|system|>\nBe brief.<|end|>\n<|user|>\ncats<|end|>\n<|assistant|>\nmeow purr<|end|>\n"
    ids = tok(rendered)["input_ids"]
    assert len(ids) == 18 and ids.index(tok.convert_tokens_to_ids("cats")) == 9  # the layout above

    def by_hand(words: int, slot: int) -> np.ndarray:
        n = 16 + words
        e = np.zeros(4)
        e[0], e[slot] = 45, n * (n + 1) / 2 - 45
        return e / (n * (n + 1) / 2)

    pool = [topic_lm.row("cats", "meow purr"), topic_lm.row("dogs", "woof bark bark")]  # 18 and 19 tokens: padding
    targets = [topic_lm.row("cats", "meow purr purr"), topic_lm.row("birds", "tweet chirp")]
    got = embed_rows(model, tok, pool, topic_lm.SYSTEM, max_length=64)
    want = np.array([by_hand(2, 1), by_hand(3, 2)])  # [45, 126, 0, 0] / 171 and [45, 0, 145, 0] / 190
    np.testing.assert_allclose(got.vectors, want, rtol=1e-12, atol=0)
    assert got.forward_tokens == 18 + 19
    anchors = embed_rows(model, tok, targets, topic_lm.SYSTEM, max_length=64).vectors
    np.testing.assert_allclose(anchors, [by_hand(3, 1), by_hand(2, 3)], rtol=1e-12, atol=0)
    unit = lambda x: x / np.linalg.norm(x)  # noqa: E731
    centre = (unit(by_hand(3, 1)) + unit(by_hand(2, 3))) / 2
    cosines = [float(unit(e) @ unit(centre)) for e in want]
    np.testing.assert_allclose(rds_scores(got.vectors, anchors), cosines, rtol=1e-12)
    assert cosines[0] > cosines[1]  # the cats row is closer to the cats-and-birds targets
