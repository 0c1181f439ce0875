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
