"""Benchmark: batched IFD scoring vs the naive per-row loop, and vs a plain batched forward.

Model: the default tiny Llama (vocab 2048 BPE trained on the demo pre-training corpus, hidden 128,
4 layers, intermediate 384), randomly initialised: speed does not depend on pre-training. Rows: the
first ROWS rows of the demo pool (seed 0), scored with the default system prompt, max_length 256,
batch_tokens 8192, fp32 on CPU with THREADS torch threads.

Metrics (each timing is the best of REPEATS interleaved runs, to damp noise from other processes):
1. speedup vs unbatched loop = rows/s of `score_rows` / rows/s of `score_rows_unbatched` on the
   same rows (both include text rendering and tokenisation). Their results must agree within 1e-4.
2. fraction of plain forward throughput = scoring tokens/s / plain-forward tokens/s, where
   - scoring tokens/s = real (unpadded) tokens of BOTH texts of every row (conditional + prior)
     divided by the wall time of `score_rows` (rendering, tokenisation, forwards and losses);
   - plain-forward tokens/s = the same tokens divided by the wall time of `model(input_ids,
     attention_mask)` over the very same pre-built, pre-padded batches (same length buckets and
     token budget), i.e. the bare cost of running the model over both texts with full logits.
   1.0 means scoring adds nothing to two forward passes per row; the two-pass cost itself is in
   the denominator, so this is not capped at 0.5. It can exceed 1 because scoring applies the LM
   head only at response positions.

Run: .venv/bin/python bench/scoring.py
"""
from __future__ import annotations

import time

from _setup import ROOT  # (offline env, repository root importable)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _record import machine_info, record, utc_now  # noqa: E402

from curate.demo.pool import generate_pool, pretrain_prose, pretrain_rows  # noqa: E402
from curate.models.pretrain import _row_texts, chat_row  # noqa: E402
from curate.models.tiny_llama import build_tiny_llama  # noqa: E402
from curate.models.tokenizer import train_tokenizer  # noqa: E402
from curate.scoring.ifd import encode_rows, length_buckets, pad_batch, score_rows, score_rows_unbatched  # noqa: E402

ROWS, REPEATS, THREADS = 1000, 5, 2
SYSTEM, MAX_LENGTH, BATCH_TOKENS = "You are a helpful assistant.", 256, 8192
COMMAND = ".venv/bin/python bench/scoring.py"


def demo_rows(n: int) -> list[dict]:
    return [
        {"system": "", "context": [], "instruction": r["instruction"], "input": r["input"], "response": r["output"]}
        for r in generate_pool(n, seed=0)
    ]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    torch.set_num_threads(THREADS)
    corpus = [chat_row(r) for r in pretrain_rows(2000, seed=1234)]
    tok = train_tokenizer(_row_texts(corpus) + pretrain_prose(500, seed=1235), vocab_size=2048)
    model = build_tiny_llama(len(tok), pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, seed=0).eval()
    rows = demo_rows(ROWS)

    cond, prior = encode_rows(tok, rows, SYSTEM, MAX_LENGTH)
    seqs = cond + prior
    lengths = [len(s.input_ids) for s in seqs]
    n_tokens = sum(lengths)
    batches = [pad_batch([seqs[i] for i in b], tok.pad_token_id, "cpu") for b in length_buckets(lengths, BATCH_TOKENS)]

    def plain_forward():
        with torch.inference_mode():
            for ids, mask, _ in batches:
                model(input_ids=ids, attention_mask=mask)

    def batched():
        return score_rows(model, tok, rows, SYSTEM, max_length=MAX_LENGTH, batch_tokens=BATCH_TOKENS)

    def unbatched():
        return score_rows_unbatched(model, tok, rows, SYSTEM, max_length=MAX_LENGTH)

    plain_forward()  # warm-up
    t_plain, t_fast, t_slow = [], [], []
    for _ in range(REPEATS):
        t_plain.append(timed(plain_forward)[0])
        t, fast = timed(batched)
        t_fast.append(t)
        t, slow = timed(unbatched)
        t_slow.append(t)
    diff = max(float(np.nanmax(np.abs(fast[k] - slow[k]))) for k in ("loss_cond", "loss_prior", "ifd"))
    assert diff < 1e-4, f"batched and unbatched scores differ by {diff}"

    fast_rps, slow_rps = ROWS / min(t_fast), ROWS / min(t_slow)
    score_tps, plain_tps = n_tokens / min(t_fast), n_tokens / min(t_plain)
    setup = (f"{ROWS} demo-pool rows, {n_tokens} tokens over both texts, default tiny Llama "
             f"({sum(p.numel() for p in model.parameters())} params, random init), fp32 CPU, {THREADS} threads, "
             f"max_length {MAX_LENGTH}, batch_tokens {BATCH_TOKENS}, best of {REPEATS}; max |batched - unbatched| = {diff:.2e}")
    print(f"batched   {fast_rps:8.1f} rows/s  {score_tps:8.0f} tok/s  runs {[round(x, 2) for x in t_fast]}")
    print(f"unbatched {slow_rps:8.1f} rows/s  runs {[round(x, 2) for x in t_slow]}")
    print(f"plain fwd {plain_tps:8.0f} tok/s  runs {[round(x, 2) for x in t_plain]}")
    print(f"speedup {fast_rps / slow_rps:.2f}x  fraction of plain forward {score_tps / plain_tps:.2f}")
    date = utc_now()
    record(ROOT / "bench/results/scoring.json", [
        {
            "benchmark": "scoring", "metric": "speedup vs unbatched loop",
            "value": round(fast_rps, 2), "unit": "rows/s",
            "baseline": "score_rows_unbatched: per-row conditional + prior forward, batch size 1, full logits",
            "baseline_value": round(slow_rps, 2), "ratio": round(fast_rps / slow_rps, 3),
            "command": COMMAND, "date": date, "machine": machine_info(THREADS), "note": setup,
        },
        {
            "benchmark": "scoring", "metric": "fraction of plain forward throughput",
            "value": round(score_tps, 1), "unit": "tokens/s (conditional + prior texts)",
            "baseline": "plain model(input_ids, attention_mask) over the same pre-padded length-bucketed batches",
            "baseline_value": round(plain_tps, 1), "ratio": round(score_tps / plain_tps, 3),
            "command": COMMAND, "date": date, "machine": machine_info(THREADS),
            "note": "ratio = scoring tokens/s (rendering + tokenisation + forwards + span losses) / bare forward "
                    "tokens/s, both counting every real token of both texts; 1.0 = no overhead beyond the two "
                    "passes per row, >1 possible since the LM head runs only at response positions. " + setup,
        },
    ])


if __name__ == "__main__":
    main()
