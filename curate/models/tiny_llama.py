"""The default tiny base model: a small Llama decoder with tied input/output embeddings.

With the defaults (vocab 2048, hidden 128, 4 layers, intermediate 384) it has 1.12M parameters,
small enough to pre-train, score and fine-tune on a 2-core CPU in minutes.
"""
from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def build_tiny_llama(
    vocab_size: int,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    intermediate_size: int = 384,
    max_positions: int = 256,
    pad_id: int = 0,
    eos_id: int = 1,
    seed: int = 0,
) -> LlamaForCausalLM:
    """A randomly initialised Llama; the same arguments give bit-identical weights."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
        initializer_range=0.02,
        attention_dropout=0.0,
    )
    cpu_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(cpu_state)
    return model
