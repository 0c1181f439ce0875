"""Brief causal-LM pre-training of the default tiny base model (docs/architecture.md §2, base_model).

IFD (docs/iterit.md §2) compares the response loss with and without the prompt, so it only carries
signal when the base model already reads the chat template: a base that never saw the template
scores almost every clean row at IFD >= 1. The base is therefore pre-trained on chat-format texts
of the demo skills (rows that are NOT in the scored pool) mixed with plain prose.

Texts are tokenised, joined with an EOS separator and cut into `seq_len` chunks (packing); training
is AdamW with a linear warmup and a cosine decay, deterministic on CPU for a fixed seed.
"""
from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from curate.artifacts import atomic_path
from curate.models.chat import conversation
from curate.models.tiny_llama import build_tiny_llama
from curate.models.tokenizer import train_tokenizer

# progress(tokens_done, tokens_total, rate=tokens_per_s, loss=loss), e.g. curate.progress.Progress
ProgressFn = Callable[..., None]

WARMUP_FRACTION = 0.05
MIN_LR_FRACTION = 0.1
CLIP_NORM = 1.0


def pack_texts(tokenizer, texts: Sequence[str], seq_len: int) -> torch.Tensor:
    """Token ids of all texts, each followed by EOS, concatenated and cut into (n, seq_len) chunks."""
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        stream.append(eos)
    n = len(stream) // seq_len
    if n == 0:
        raise ValueError(f"corpus too small: {len(stream)} tokens < seq_len {seq_len}")
    return torch.tensor(stream[: n * seq_len], dtype=torch.long).view(n, seq_len)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * frac))


def pretrain(
    model,
    tokenizer,
    texts: list[str],
    steps: int = 300,
    batch_size: int = 16,
    seq_len: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Train `model` in place for `steps` AdamW steps on packed chunks of `texts`.

    Returns {"losses": per-step loss, "final_loss": mean of the last 10 steps, "tokens_per_s",
    "tokens", "wall_s", "chunks"}. Chunks are visited in a seeded random order (re-shuffled per pass).
    """
    chunks = pack_texts(tokenizer, texts, seq_len)
    rng = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    warmup = max(1, int(WARMUP_FRACTION * steps))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, steps, warmup))
    model.train()
    order = torch.randperm(len(chunks), generator=rng)
    cursor = 0
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(steps):
        if cursor + batch_size > len(order):
            order = torch.randperm(len(chunks), generator=rng)
            cursor = 0
        batch = chunks[order[cursor : cursor + batch_size]]
        cursor += batch_size
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            done = (step + 1) * batch.numel()
            progress(done, steps * batch.numel(), rate=done / max(time.perf_counter() - start, 1e-9), loss=losses[-1])
    model.eval()
    wall = time.perf_counter() - start
    tokens = steps * batch_size * seq_len
    return {
        "losses": losses,
        "final_loss": sum(losses[-10:]) / max(1, len(losses[-10:])) if losses else float("nan"),
        "tokens": tokens,
        "tokens_per_s": tokens / wall if wall > 0 else 0.0,
        "wall_s": wall,
        "chunks": len(chunks),
    }


def _row_texts(rows: Iterable[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for row in rows:
        out.extend(t["content"] for t in row.get("context") or [])
        out.extend(row.get(k) or "" for k in ("system", "instruction", "input", "response", "output"))
    return [t for t in out if t]


def chat_row(row: dict[str, Any]) -> dict[str, Any]:
    """Accept demo rows with `output` (Alpaca style) as well as normalised rows with `response`."""
    return row if "response" in row else {**row, "response": row["output"]}


def build_base_model(
    out_dir: Path | str,
    rows: Sequence[dict[str, Any]] = (),
    prose: Sequence[str] = (),
    tokenizer_texts: Sequence[str] | None = None,
    system_prompt: str | None = "You are a helpful assistant.",
    vocab_size: int = 2048,
    model_kwargs: dict[str, Any] | None = None,
    pretrain_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Train the tokenizer, build and pre-train the tiny Llama, save both (safetensors) to `out_dir`.

    The pre-training corpus is the chat-format `rows` (dicts with instruction, input and response or
    output; rendered with the chat template as `conversation(row, system_prompt)`) plus the plain
    `prose`, shuffled together. The tokenizer is trained on `tokenizer_texts` (default: the raw fields
    of `rows` plus `prose`; `train_tokenizer` adds the template's special tokens). The directory is
    written atomically. Returns the `pretrain` stats plus n_params and n_texts.
    """
    rows = [chat_row(r) for r in rows]
    if tokenizer_texts is None:
        tokenizer_texts = _row_texts(rows) + list(prose)
    tokenizer = train_tokenizer(tokenizer_texts, vocab_size=vocab_size)
    texts = [tokenizer.apply_chat_template(conversation(r, system_prompt), tokenize=False) for r in rows]
    texts += list(prose)
    random.Random(seed).shuffle(texts)
    model = build_tiny_llama(
        vocab_size=len(tokenizer),
        pad_id=tokenizer.pad_token_id,
        eos_id=tokenizer.eos_token_id,
        seed=seed,
        **(model_kwargs or {}),
    )
    stats = pretrain(model, tokenizer, texts, seed=seed, progress=progress, **(pretrain_kwargs or {}))
    with atomic_path(Path(out_dir)) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    stats["n_params"] = sum(p.numel() for p in model.parameters())
    stats["n_texts"] = len(texts)
    return stats
