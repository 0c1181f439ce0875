"""RDS+ (representation-based data selection; Ivison et al. 2025, arXiv 2503.01807), as implemented
here (docs/selection-baselines.md §2):

    e(x)   = sum_t w_t h_t(x) / sum_t w_t,   w_t = t (1-based position, padding excluded)
    s(x)   = cos(e(x), mean_j e(a_j) / ||e(a_j)||)

h_t is the base model's last hidden state (after its final norm) at token t of the row rendered
with the chat template and cut to the scoring budget; a_j are the target rows (the held-out sets'
anchor rows, never evaluated). Ranking by s(x) is ranking by the mean cosine similarity to the
targets (the mean of unit vectors only rescales the cosine). Rows are ranked by s descending, ties
by row_id.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from curate.models.chat import encode_conditional
from curate.models.truncation import RESPONSE_SHARE
from curate.scoring.ifd import length_buckets, pad_batch


@dataclass
class Embedded:
    vectors: np.ndarray  # [n, d] float64, position-weighted mean of the last hidden state
    forward_tokens: int  # non-padding tokens through the model


def position_weighted_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, T, d] hidden states, [B, T] attention mask -> [B, d]: weights 1, 2, ..., len on real tokens."""
    weights = torch.cumsum(mask.to(torch.float64), dim=1) * mask.to(torch.float64)
    return (hidden.to(torch.float64) * weights.unsqueeze(-1)).sum(1) / weights.sum(1, keepdim=True).clamp_min(1.0)


def last_hidden(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The last layer's hidden states after the final norm."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    if decoder is not None:
        return decoder(input_ids=ids, attention_mask=mask).last_hidden_state
    return model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]


@torch.no_grad()
def embed_rows(model, tokenizer, rows: Sequence[dict[str, Any]], system_prompt: str | None, max_length: int,
               response_share: float = RESPONSE_SHARE, batch_tokens: int = 8192,
               progress: Callable[[int, int], None] | None = None) -> Embedded:
    """e(x) of every row (prompt and response, chat template applied), in input order."""
    model.eval()
    device = next(model.parameters()).device
    seqs = [encode_conditional(tokenizer, row, system_prompt, max_length, response_share) for row in rows]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = np.zeros((len(seqs), int(model.config.hidden_size)), dtype=np.float64)
    tokens, done = 0, 0
    for batch in length_buckets([len(s.input_ids) for s in seqs], batch_tokens):
        ids, mask, _ = pad_batch([seqs[i] for i in batch], pad_id, device)
        pooled = position_weighted_mean(last_hidden(model, ids, mask).float(), mask)
        out[batch] = pooled.cpu().numpy()
        tokens += int(mask.sum())
        done += len(batch)
        if progress is not None:
            progress(done, len(seqs))
    return Embedded(out, tokens)


def unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def rds_scores(pool: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """s(x) for every pool row: cosine with the mean of the targets' unit vectors."""
    if len(targets) == 0:
        raise ValueError("RDS+ needs at least one target row: set evaluation.anchor_rows > 0 (the last rows of "
                         "every held-out set become the targets and are not evaluated)")
    centre = unit(targets).mean(axis=0)
    return unit(pool) @ unit(centre[None, :])[0]
