"""Held-out loss after the same number of optimizer steps: uniform vs the online policies.

Setup: the demo pool (5,000 rows, seed 0, with its injected noise:
shuffled, garbage, truncated, duplicates), the demo's tiny base model (default sizes, pre-trained
300 steps, seed 42), the clean held-out sets with their last ANCHORS rows per skill as anchors /
targets and the rest (95 per skill) evaluated. Per seed, one candidate stream: STEPS batches of
BATCH rows drawn at random from the pool (the seed also sets the data order); every policy sees the
same stream and takes the same number of optimizer steps (lr 1e-3, cosine, 3% warm-up, AdamW).
Selecting policies train on keep_ratio = 0.5 of each batch. Evaluation: token-mean response loss
per skill, averaged over skills (the flow's `mean_loss`), exact match not computed.

metric `heldout loss after N steps`: value = mean over seeds, ratio = uniform's mean / the policy's
(higher is better), with the std over seeds.

A policy may carry parameter overrides: `adapt:standardize=on:tau=0.5` (training.online keys).

Run: .venv/bin/python bench/online_quality.py [--policies uniform,adapt,filter-then-weight] [--seeds 3] [--steps 60]
"""
from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from _setup import ROOT  # noqa: E402  (offline env, repository root importable)

BATCH, ANCHORS, SYSTEM = 16, 5, "You are a helpful assistant."
RESULT = ROOT / "bench" / "results" / "online.json"


def base_model(path: Path) -> None:
    from curate.config import Params
    from curate.demo.pool import pretrain_prose, pretrain_rows
    from curate.models.pretrain import build_base_model

    p = Params()
    bm, pre = p.base_model, p.base_model.pretrain
    build_base_model(path, rows=pretrain_rows(pre.corpus_rows, seed=pre.corpus_seed),
                     prose=pretrain_prose(pre.corpus_rows // 4, seed=pre.corpus_seed + 1), system_prompt=SYSTEM,
                     vocab_size=bm.vocab_size,
                     model_kwargs=dict(hidden_size=bm.hidden_size, num_layers=bm.num_layers, num_heads=bm.num_heads,
                                       intermediate_size=bm.intermediate_size, max_positions=bm.max_positions),
                     pretrain_kwargs=dict(steps=pre.steps, batch_size=pre.batch_size, seq_len=pre.seq_len, lr=pre.lr),
                     seed=p.project.seed)


def online_params(spec: str):
    """`policy[:key=value...]` -> the training.online section (its policy's model)."""
    from curate.config import ONLINE_POLICIES

    name, *overrides = spec.split(":")
    return ONLINE_POLICIES[name].model_validate(dict(o.split("=", 1) for o in overrides))


def main() -> None:
    import torch

    from _record import machine_info, update, utc_now
    from curate.demo.pool import generate_eval_sets, generate_pool
    from curate.evaluation.heldout import evaluate_checkpoint
    from curate.training import RoundConfig, RoundRecipe

    ap = argparse.ArgumentParser()
    ap.add_argument("--policies", default="uniform,adapt,filter-then-weight")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    policies = args.policies.split(",")
    torch.set_num_threads(1)

    pool = [{**r, "response": r["output"], "row_id": str(i), "system": "", "context": []}
            for i, r in enumerate(generate_pool(5000, seed=0))]
    sets = {k: [{**r, "response": r["output"], "system": "", "context": []} for r in rows]
            for k, rows in generate_eval_sets(per_skill=100).items()}
    evaluated = {k: rows[:-ANCHORS] for k, rows in sets.items()}
    anchors = [r for rows in sets.values() for r in rows[-ANCHORS:]]
    losses: dict[str, list[float]] = {p: [] for p in policies}
    seconds: dict[str, float] = {p: 0.0 for p in policies}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        t0 = time.perf_counter()
        base_model(base)
        base_loss = evaluate_checkpoint(base, evaluated, SYSTEM, 256, exact_match=False)["mean_loss"]
        print(f"base model built in {time.perf_counter() - t0:.0f} s; held-out loss {base_loss:.4f}", flush=True)
        for seed in range(args.seeds):
            stream = random.Random(seed).sample(pool, args.steps * BATCH)
            for policy in policies:
                t0 = time.perf_counter()
                out = Path(tmp) / f"{policy}-{seed}"
                config = RoundConfig(system_prompt=SYSTEM, max_length=256, batch_size=BATCH, grad_accum=1, lr=1e-3,
                                     weight_decay=0.0, warmup_steps=max(1, round(0.03 * args.steps)),
                                     total_steps=args.steps, schedule="cosine", seed=seed, round_index=0,
                                     online=online_params(policy))
                RoundRecipe(config, base, out, stream, anchors=anchors).run()
                seconds[policy] += time.perf_counter() - t0
                losses[policy].append(evaluate_checkpoint(out, evaluated, SYSTEM, 256, exact_match=False)["mean_loss"])
                print(f"seed {seed} {policy:>20}: held-out loss {losses[policy][-1]:.4f}", flush=True)

    def mean_std(xs):
        return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0

    u_mean, u_std = mean_std(losses["uniform"])
    entries = []
    for policy in policies:
        m, s = mean_std(losses[policy])
        entries.append({
            "benchmark": "online", "metric": f"heldout loss after {args.steps} steps", "policy": policy,
            "value": round(m, 4), "std": round(s, 4), "per_seed": [round(x, 4) for x in losses[policy]],
            "unit": "nats/token (mean over skills)", "baseline": "uniform", "baseline_value": round(u_mean, 4),
            "baseline_std": round(u_std, 4), "ratio": round(u_mean / m, 4), "base_model_loss": round(base_loss, 4),
            "train_seconds": round(seconds[policy], 1), "steps": args.steps, "candidate_batch": BATCH,
            "seeds": args.seeds, "anchors_per_skill": ANCHORS, "pool": "demo, 5000 rows, seed 0 (with noise)",
            "command": f".venv/bin/python bench/online_quality.py --policies {args.policies} --seeds {args.seeds} --steps {args.steps}",
            "date": utc_now(), "machine": machine_info(1),
        })
        print(f"{policy:>20}: {m:.4f} ± {s:.4f} (uniform {u_mean:.4f} ± {u_std:.4f}; ratio {u_mean / m:.4f})")
    update(RESULT, entries, keys=("metric", "policy"))
    print(f"wrote {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
