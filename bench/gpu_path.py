"""Benchmark `gpu-path`: scoring and LoRA training on CUDA in bf16, checked against CPU, with throughput.

One prepared script for a GPU machine that has only torch, transformers, peft and pyarrow (no Prefect,
MLflow, DVC, pydantic or scipy): it imports nothing else, and from this repository only the modules
that need nothing else (the tiny model and its tokenizer, the chat texts, the IFD scorer). Parts, each
timed and bounded by `--budget` seconds in all (a part that would start past the budget is skipped and
says so):

1. the tiny model (built here: byte-level BPE tokenizer + ~1M-parameter Llama, random init):
   a. IFD scores of `--rows` synthetic chat rows on CUDA against CPU. Tolerances: float32 on CUDA (TF32
      off) against float32 on CPU: every span loss within 1e-3 relative (summation order differs);
      bfloat16 on CUDA (`base_model.dtype: auto`) against float32 on CPU: every span loss within 0.1
      nats absolute and Spearman of the IFDs >= 0.9 (bf16 keeps ~3 significant digits);
   b. LoRA training (r 16 on every Llama linear layer, AdamW, bf16 autocast with float32 weights, as
      `training.precision: auto` on CUDA): the loss over the trained rows must fall;
2. a randomly initialised ~1.1B-parameter Llama (TinyLlama-1.1B's shape, built on the GPU in bf16: no
   weights to carry): scoring tokens/s (the IFD scorer: conditional + prior passes, LM head on span
   tokens only) against a plain forward over the same batches (full logits), and LoRA training
   tokens/s (forward + backward + optimizer step).
It writes everything to `--out` (JSON) and prints a summary; exit code 1 when a check fails.

Run on the GPU machine:  python bench/gpu_path.py --out $OUT/gpu_path.json
Test here (CPU, small):  python bench/gpu_path.py --dry-run --out /tmp/gpu_path.json
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate.models.chat import encode_conditional  # noqa: E402
from curate.models.tiny_llama import build_tiny_llama  # noqa: E402
from curate.models.tokenizer import train_tokenizer  # noqa: E402
from curate.scoring.ifd import length_buckets, pad_batch, per_token_span_losses, score_rows  # noqa: E402

SYSTEM = "You are a helpful assistant."
FP32_RTOL = 1e-3
BF16_ATOL = 0.1
BF16_MIN_SPEARMAN = 0.9
LLAMA_1B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048)
LLAMA_SMALL = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=1024, max_position_embeddings=512)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
WORDS = "the a model data row answer question list value time number word city river animal colour".split()


def chat_rows(n: int, seed: int = 0) -> list[dict]:
    """Synthetic single-turn rows of varied lengths (ROWS-like dicts, what the scorer and trainer read)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 30)))
        answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 60)))
        rows.append({"row_id": f"r{i}", "system": "", "context": [], "instruction": f"Question {i}: {prompt}?",
                     "input": "", "response": f"Answer {i}: {answer}."})
    return rows


def spearman(a, b) -> float:
    """Spearman rank correlation (average ranks for ties), without scipy."""
    def ranks(x):
        t = torch.tensor(x, dtype=torch.float64)
        order = torch.argsort(t)
        r = torch.empty_like(t)
        r[order] = torch.arange(len(t), dtype=torch.float64)
        for value in torch.unique(t):  # ties get their mean rank
            same = t == value
            r[same] = r[same].mean()
        return r
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / torch.sqrt((ra * ra).sum() * (rb * rb).sum()))


def tiny(rows: list[dict], device: str, dtype: torch.dtype, tok=None):
    """The tiny model and tokenizer (seeded: the same weights on every device)."""
    tok = tok or train_tokenizer([f"{r['instruction']} {r['response']}" for r in rows] + [SYSTEM] * 4, vocab_size=600)
    model = build_tiny_llama(len(tok), hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
                             pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, seed=3)
    return model.to(device=device, dtype=dtype).eval(), tok


def check_scores(rows: list[dict], device: str) -> dict:
    """Part 1a: the tiny model's IFD scores on `device` (fp32 with TF32 off, and bf16) against CPU fp32."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cpu_model, tok = tiny(rows, "cpu", torch.float32)
    ref = score_rows(cpu_model, tok, rows, SYSTEM, max_length=256)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model, _ = tiny(rows, device, dtype, tok)
        got = score_rows(model, tok, rows, SYSTEM, max_length=256)
        finite = [i for i in range(len(rows)) if math.isfinite(ref["ifd"][i]) and math.isfinite(got["ifd"][i])]
        losses = [(float(ref[k][i]), float(got[k][i])) for k in ("loss_cond", "loss_prior") for i in finite]
        worst_rel = max(abs(a - b) / max(abs(a), 1e-12) for a, b in losses)
        worst_abs = max(abs(a - b) for a, b in losses)
        rho = spearman([float(ref["ifd"][i]) for i in finite], [float(got["ifd"][i]) for i in finite])
        ok = worst_rel <= FP32_RTOL if name == "fp32" else worst_abs <= BF16_ATOL and rho >= BF16_MIN_SPEARMAN
        out[name] = {"rows": len(finite), "max_rel_loss_diff": worst_rel, "max_abs_loss_diff": worst_abs,
                     "ifd_spearman": rho, "ok": bool(ok)}
    out["tolerance"] = {"fp32_rtol": FP32_RTOL, "bf16_atol": BF16_ATOL, "bf16_min_spearman": BF16_MIN_SPEARMAN}
    return out


def lora(model, rank: int = 16):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=LORA_TARGETS, bias="none",
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def train_steps(model, tok, rows: list[dict], device: str, steps: int, batch: int, max_length: int) -> dict:
    """LoRA steps under bf16 autocast on CUDA (fp32 weights): the loss the trainer uses (span CE), AdamW."""
    model = lora(model).to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    enc = [encode_conditional(tok, r, SYSTEM, max_length) for r in rows]
    use_bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    losses, tokens = [], 0
    _sync(device)
    start = time.perf_counter()
    for step in range(steps):
        part = [enc[(step * batch + j) % len(enc)] for j in range(batch)]
        ids, mask, starts = pad_batch(part, tok.pad_token_id, device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            token_losses, _ = per_token_span_losses(model, ids, mask, starts)
        loss = token_losses.mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss))
        tokens += int(mask.sum())
    _sync(device)
    seconds = time.perf_counter() - start
    return {"steps": steps, "batch": batch, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "bf16_autocast": use_bf16, "first_loss": losses[0], "last_loss": losses[-1]}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def plain_forward(model, seqs, pad_id: int, device: str, batch_tokens: int) -> tuple[int, float]:
    """Tokens and seconds of a plain forward (full logits) over the scorer's length buckets."""
    tokens = 0
    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in length_buckets([len(s.input_ids) for s in seqs], batch_tokens):
            ids, mask, _ = pad_batch([seqs[i] for i in batch], pad_id, device)
            model(input_ids=ids, attention_mask=mask).logits.float().sum()
            tokens += int(mask.sum())
    _sync(device)
    return tokens, time.perf_counter() - start


def throughput(rows: list[dict], tok, device: str, shape: dict, steps: int, batch: int, max_length: int,
               batch_tokens: int) -> dict:
    """Part 2: a randomly initialised Llama of `shape` in bf16 (fp32 on CPU): scoring vs plain forward, LoRA training."""
    from transformers import LlamaConfig, LlamaForCausalLM

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**shape, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                             tie_word_embeddings=False)).to(dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    _sync(device)
    start = time.perf_counter()
    scored = score_rows(model, tok, rows, SYSTEM, max_length=max_length, batch_tokens=batch_tokens)
    _sync(device)
    score_seconds = time.perf_counter() - start
    score_tokens = int(scored["tokens_conditional"].sum() + scored["tokens_prior"].sum())
    seqs = [encode_conditional(tok, r, SYSTEM, max_length) for r in rows]
    fwd_tokens, fwd_seconds = plain_forward(model, seqs, tok.pad_token_id, device, batch_tokens)
    out = {"parameters": params, "dtype": str(dtype).replace("torch.", ""),
           "scoring": {"rows": len(rows), "tokens": score_tokens, "seconds": score_seconds,
                       "tokens_per_s": score_tokens / score_seconds},
           "plain_forward": {"tokens": fwd_tokens, "seconds": fwd_seconds, "tokens_per_s": fwd_tokens / fwd_seconds}}
    model = model.float() if device == "cuda" else model  # LoRA trains fp32 weights under bf16 autocast
    out["lora_training"] = train_steps(model, tok, rows, device, steps, batch, max_length)
    if device == "cuda":
        out["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, small shapes, few rows and steps (a test of the script)")
    ap.add_argument("--out", type=Path, default=Path("gpu_path.json"))
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for all parts (8 minutes minus start-up)")
    return ap.parse_args()


def main() -> int:
    args = arguments()
    device = "cpu" if args.dry_run or not torch.cuda.is_available() else "cuda"
    small = args.dry_run or device == "cpu"
    start = time.perf_counter()
    result: dict = {"benchmark": "gpu-path", "device": torch.cuda.get_device_name(0) if device == "cuda" else
                    platform.processor() or platform.machine(), "torch": torch.__version__, "dry_run": args.dry_run,
                    "parts": {}, "skipped": []}
    rows = chat_rows(24 if small else 512)
    parts = {
        "tiny_scores_vs_cpu": lambda: check_scores(rows[:24 if small else 256], device),
        "tiny_lora_training": lambda: train_steps(*tiny(rows, device, torch.float32), rows, device,
                                                  steps=4 if small else 60, batch=4 if small else 16, max_length=256),
        "llama_1b_throughput": lambda: throughput(rows, tiny(rows, "cpu", torch.float32)[1], device,
                                                  LLAMA_SMALL if small else LLAMA_1B, steps=2 if small else 20,
                                                  batch=2 if small else 8, max_length=128 if small else 512,
                                                  batch_tokens=2048 if small else 16384),
    }
    for name, run in parts.items():
        if time.perf_counter() - start > args.budget:
            result["skipped"].append(name)
            continue
        t = time.perf_counter()
        result["parts"][name] = {**run(), "wall_seconds": time.perf_counter() - t}
    checks = result["parts"].get("tiny_scores_vs_cpu", {})
    training = result["parts"].get("tiny_lora_training", {})
    result["ok"] = (all(checks[k]["ok"] for k in ("fp32", "bf16")) if checks else False) and bool(
        training and training["last_loss"] < training["first_loss"])
    result["wall_seconds"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "parts"}, indent=1))
    for name, part in result["parts"].items():
        print(name, json.dumps(part))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
