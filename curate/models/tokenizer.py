"""Byte-level BPE tokenizer of the default tiny base model.

Byte-level BPE (GPT-2 style pre-tokenisation) never maps text to an unknown token, so any pool row
can be scored. The chat special tokens are atomic, and the chat template is the one
`curate.models.chat` builds its texts with.
"""
from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from curate.models.chat import TINY_CHAT_TEMPLATE, TINY_SPECIAL_TOKENS

PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|end|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` (deterministic for the same input)."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    # trim_offsets=False: offsets cover the raw characters, so a response's first token is found
    # from its character offset even when the token starts with a space.
    core.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(TINY_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        additional_special_tokens=[t for t in TINY_SPECIAL_TOKENS if t not in (PAD_TOKEN, EOS_TOKEN)],
        padding_side="right",
    )
    tok.chat_template = TINY_CHAT_TEMPLATE
    return tok
