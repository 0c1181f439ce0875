"""A causal LM whose logits are set by hand, so that a test can compute its losses with pen and paper.

The tokenizer knows three topic keywords (`cats`, `dogs`, `birds`, one token each) and, per topic, a
two-token answer (`meow purr`, `woof bark`, `tweet chirp`). At token t the model is in the state of
the latest keyword at positions <= t (0: none yet); its last hidden state is the one-hot vector of
that state (size 4), and the LM head maps

    state 0 (no keyword: every prior text)  -> logits 0 everywhere: each next token has loss ln V
    state of topic k                        -> logit BOOST on topic k's two answer tokens and on the
                                               template's `<|end|>` and newline, 0 elsewhere

so under a topic state a token costs LSE - BOOST when boosted and LSE otherwise, with
LSE = ln(4 e^BOOST + V - 4). The response span of the tiny chat template is the answer's tokens,
`<|end|>` and the newline. The model has the span-only head (`get_decoder`, `get_output_embeddings`)
and the full forward (`.logits`, `.hidden_states`) of a Hugging Face causal LM.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from curate.models.tokenizer import train_tokenizer

TOPICS = {"cats": "meow purr", "dogs": "woof bark", "birds": "tweet chirp"}
BOOST = 6.0
SYSTEM = "Be brief."


def topic_tokenizer():
    corpus = "\n".join([*TOPICS, *TOPICS.values(), SYSTEM, "meow purr purr woof bark bark"])
    return train_tokenizer([corpus] * 4, vocab_size=400)


class _TopicState(torch.nn.Module):
    def __init__(self, keyword_ids: list[int]):
        super().__init__()
        self.keyword_ids = keyword_ids

    def forward(self, input_ids, attention_mask=None):
        topic = torch.zeros_like(input_ids)
        for k, kid in enumerate(self.keyword_ids, 1):
            topic[input_ids == kid] = k
        pos = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        latest = torch.where(topic > 0, pos, -1).cummax(dim=1).values
        state = torch.where(latest >= 0, topic.gather(1, latest.clamp(min=0)), 0)
        return SimpleNamespace(last_hidden_state=F.one_hot(state, len(self.keyword_ids) + 1).float())


class TopicLM(torch.nn.Module):
    def __init__(self, tok):
        super().__init__()
        keywords = [tok.convert_tokens_to_ids(k) for k in TOPICS]
        self.config = SimpleNamespace(hidden_size=len(keywords) + 1, max_position_embeddings=None)
        self.decoder = _TopicState(keywords)
        self.lm_head = torch.nn.Linear(len(keywords) + 1, len(tok), bias=False)
        tail = tok.convert_tokens_to_ids(["<|end|>", "Ċ"])
        with torch.no_grad():
            self.lm_head.weight.zero_()
            for k, answer in enumerate(TOPICS.values(), 1):
                self.lm_head.weight[tok(answer)["input_ids"] + tail, k] = BOOST

    def get_decoder(self):
        return self.decoder

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False):
        hidden = self.decoder(input_ids, attention_mask).last_hidden_state
        return SimpleNamespace(logits=self.lm_head(hidden), hidden_states=(hidden,) if output_hidden_states else None)


def row(topic: str, response: str) -> dict:
    return {"system": "", "context": [], "instruction": topic, "input": "", "response": response}


def lse(vocab: int) -> float:
    """ln of the softmax denominator under a topic state: four tokens at BOOST, the rest at 0."""
    return math.log(4 * math.exp(BOOST) + vocab - 4)
