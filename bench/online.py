"""Benchmark: optimizer-step time of each online policy vs uniform training, at the same candidate batch.

Model: the default tiny Llama (vocab 2048 BPE trained on the demo pre-training corpus, hidden 128,
4 layers, intermediate 384; randomly initialised: step time does not depend on pre-training).
Rows: the first STEPS * BATCH rows of the demo pool (seed 0); anchors: ANCHORS_PER_SKILL rows of
every demo held-out set. Every step draws a candidate batch of BATCH rows; uniform and ADAPT train
on all of them, the selecting policies on keep_ratio = 0.5 of them (their extra cost is the
per-sample-gradient pass over candidates + target_batch anchors). fp32, CPU, one torch thread.

Each policy runs in its own subprocess (so that its peak RSS is its own), REPEATS times, the
policies interleaved to spread the machine's noise evenly; a run's step time is the median of its
steps after the first WARMUP; a policy's is the median over its runs.

metric `step time vs uniform`, ratio = uniform step time / policy step time (higher is better).

Run: .venv/bin/python bench/online.py
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _setup import ROOT  # noqa: E402  (offline env, repository root importable)

POLICIES = ["uniform", "adapt", "filter-then-weight", "greats", "random-in-batch"]
AIMS = {"adapt": 0.77, "filter-then-weight": 0.33}
BATCH, STEPS, WARMUP, REPEATS, ANCHORS_PER_SKILL = 16, 12, 2, 3, 4
RESULT = ROOT / "bench" / "results" / "online.json"


def build_model(path: Path) -> None:
    import torch

    from curate.demo.pool import pretrain_prose, pretrain_rows
    from curate.models.pretrain import _row_texts, chat_row
    from curate.models.tiny_llama import build_tiny_llama
    from curate.models.tokenizer import train_tokenizer

    torch.manual_seed(0)
    corpus = [chat_row(r) for r in pretrain_rows(2000, seed=1234)]
    tok = train_tokenizer(_row_texts(corpus) + pretrain_prose(500, seed=1235), vocab_size=2048)
    model = build_tiny_llama(len(tok), pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, seed=0)
    model.save_pretrained(path)
    tok.save_pretrained(path)


def worker(policy: str, model: str, out: str) -> None:
    import torch

    from curate.config import ONLINE_POLICIES
    from curate.demo.pool import generate_eval_sets, generate_pool
    from curate.training import RoundConfig, RoundRecipe

    torch.set_num_threads(1)
    rows = [{**r, "response": r["output"], "row_id": str(i), "system": "", "context": []}
            for i, r in enumerate(generate_pool(2000, seed=0)) if r["output"].strip()][: STEPS * BATCH]
    anchors = [{**r, "response": r["output"], "system": "", "context": []}
               for rs in generate_eval_sets(per_skill=ANCHORS_PER_SKILL).values() for r in rs]
    with tempfile.TemporaryDirectory() as tmp:
        config = RoundConfig(system_prompt="You are a helpful assistant.", max_length=256, batch_size=BATCH,
                             grad_accum=1, lr=1e-3, weight_decay=0.0, warmup_steps=0, total_steps=STEPS,
                             schedule="constant", seed=0, round_index=0, online=ONLINE_POLICIES[policy]())
        result = RoundRecipe(config, Path(model), Path(tmp) / "r0", rows, anchors=anchors).run()
    seconds = result.step_seconds[WARMUP:]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out).write_text(json.dumps({"policy": policy, "step_seconds": statistics.median(seconds),
                                     "peak_rss_mb": peak_mb, "steps": len(seconds)}))


def main() -> None:
    from _record import machine_info, update, utc_now

    runs: dict[str, list[dict]] = {p: [] for p in POLICIES}
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        build_model(model)
        for rep in range(REPEATS):
            order = POLICIES if rep % 2 == 0 else POLICIES[::-1]
            for policy in order:
                out = Path(tmp) / f"{policy}-{rep}.json"
                subprocess.run([sys.executable, __file__, "--worker", policy, str(model), str(out)], check=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
                runs[policy].append(json.loads(out.read_text()))
                print(f"rep {rep} {policy:>20}: {runs[policy][-1]['step_seconds'] * 1000:7.1f} ms/step, "
                      f"peak RSS {runs[policy][-1]['peak_rss_mb']:.0f} MB", flush=True)
    step = {p: statistics.median(r["step_seconds"] for r in rs) for p, rs in runs.items()}
    entries = []
    for policy in POLICIES[1:]:
        ratio = step["uniform"] / step[policy]
        entries.append({
            "benchmark": "online", "metric": "step time vs uniform", "policy": policy,
            "value": round(step[policy] * 1000, 2), "unit": "ms/step",
            "baseline": "uniform (plain training on the whole candidate batch)",
            "baseline_value": round(step["uniform"] * 1000, 2), "ratio": round(ratio, 3),
            "aim": AIMS.get(policy), "meets_aim": None if policy not in AIMS else ratio >= AIMS[policy],
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs[policy])),
            "baseline_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["uniform"])),
            "candidate_batch": BATCH, "keep_ratio": 0.5, "target_batch": 4, "steps_timed": STEPS - WARMUP,
            "repeats": REPEATS, "threads": 1, "load_avg": round(os.getloadavg()[0], 2),
            "command": ".venv/bin/python bench/online.py", "date": utc_now(), "machine": machine_info(1),
        })
        print(f"{policy:>20}: {ratio:.3f}x uniform speed ({step[policy] * 1000:.1f} vs {step['uniform'] * 1000:.1f} ms/step)")
    update(RESULT, entries, keys=("metric", "policy"))
    print(f"wrote {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:])
    else:
        main()
