"""Benchmark `scaleout`: the score stage's forwards as 2 shards on a 2-worker Dask LocalCluster vs one process.

Metric `scoring rows/s, dask 2 workers vs local`: the same pool rows (`--rows` ShareGPT conversations from
`curate.demo.sharegpt.write_sharegpt_pool`, seed 0, ingested by `curate.ingest.ingest_path`), scored
with the `curate init --model MODEL` preset's scoring parameters (contrast partners included) by the
base model of the base_model stage (`--model smollm2-135m-instruct`, or `tiny` for a quick trial):
(a) local: one process, `--threads` torch threads: plan (`plan_scoring`, after loading the model for its
    tokenizer), `mean_span_losses` over the planned batches, `finish_scoring`;
(b) dask: the same plan made in this process, its batches cut into 2 contiguous groups
    (`shard_batches`, as `plan_pool` does) and sent to a `distributed.Client` on a LocalCluster of 2
    worker processes, 1 thread each; each worker loads the model and runs `mean_span_losses` over its
    batches (the body of the `score_shard` task, without its store entry); the means are merged here
    and finished (the `score` stage's merge).
Value = rows / wall seconds of (b), baseline = rows / wall seconds of (a), ratio = value / baseline.
Each path's seconds are split into plan, model load (per worker for dask), forwards (per worker, with
the tokens of its shard: shards hold about equal padded tokens) and merge; the cluster's
start is timed once, outside the repeats. The first repeat's workers are cold (they import torch and
transformers on the first load), as the flow's workers are on every run (the flow starts a LocalCluster
per run); later repeats show warm workers, as on a long-lived cluster. Repeats
interleave (a, b) and every repeat is reported: the machine is shared. The dask means must equal the
local means bit for bit (docs/execution.md), else the run stops.

The flow runs its shards through Prefect's DaskTaskRunner, which needs a Prefect API server
(docs/execution.md); this benchmark measures the computation only, with a plain `distributed.Client`,
so it needs no Prefect server.

Metric `train tokens/s, 2 processes vs 1`: one training round (`curate.training.distributed.train_round`,
as the train stage runs it) of the preset's training parameters on the first `--train-rows` of the same
rows, from the same base model, with `--train-grad-accum` micro-batches per optimizer step:
(a) one process, `--threads` torch threads; (b) `training.processes: 2` under torchrun (gloo), each
process with `--threads` / 2 threads, the micro-batches of every step dealt between them. Value =
tokens trained / wall seconds of (b), the launch of torchrun and both processes' model loads
included; baseline = the same for (a); ratio = value / baseline. Each repeat also records the tokens/s
of the optimizer steps alone (the training's own seconds, no start-up) and the largest weight
difference between (a) and (b) (the gradient sums change order; two runs of (b) give equal bits).

Metric `minhash rows/s, dask 2 workers vs local`: the dedup stage's full pass (exact, MinHash, LSH, exact
verification) over `--minhash-rows` ShareGPT conversations ingested and written as the ingest stage writes
them (`write_parquet`): (a) `dedup_batches` in this process (MinHash on `os.cpu_count()` threads);
(b) `sign_rows` of 2 `shard_rows` groups on a 2-worker Dask LocalCluster (the body of `minhash_shard`,
without its store entry: normalise, hash and sign), then `dedup_batches` with those digests and signatures
(`presigned`: the merge normalises only the candidate pairs' rows). Value = rows / wall
seconds of (b), baseline = rows / wall seconds of (a). Both must keep and remove the same rows with the same
records, else the run stops.

Run: .venv/bin/python bench/scaleout.py [--model smollm2-135m-instruct] [--rows 200] [--repeats 3]
     [--threads 2] [--set KEY=VALUE ...] [--metrics scoring training minhash] [--train-rows 32]
     [--minhash-rows 17000]
     [--out bench/results/scaleout.json]
Trial (an untrained tiny model: the pre-training takes minutes):
     .venv/bin/python bench/scaleout.py --model tiny --set base_model.pretrain.steps=0 --rows 16 --repeats 2
     --out /tmp/scaleout-trial.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from _setup import ROOT  # (offline env, repository root importable)

from _record import machine_info, update, utc_now  # noqa: E402

RESULT = ROOT / "bench" / "results" / "scaleout.json"
WORKERS = 2


def shard_forwards(model_dir: str, bm: dict, seqs: list, batches: list[list[int]], pad_id: int) -> dict:
    """On a worker: load the model, the mean span loss of every sequence of one shard's batches, timed."""
    import torch

    from curate.models.loading import load_causal_lm
    from curate.scoring.ifd import mean_span_losses

    torch.set_num_threads(1)
    start = time.perf_counter()
    lm, _ = load_causal_lm(model_dir, dtype=bm["dtype"], trust_remote_code=bm["trust_remote_code"],
                           chat_template=bm["chat_template"])
    loaded = time.perf_counter()
    means, _ = mean_span_losses(lm, seqs, pad_id, batches=batches)
    return {"means": means, "load_s": loaded - start, "forward_s": time.perf_counter() - loaded, "pid": os.getpid(),
            "tokens": sum(len(x.input_ids) for x in seqs)}


def plan(model_dir: str, bm: dict, s: dict, rows: list[dict]):
    """(model, tokenizer, plan) as `plan_pool` makes it: the model loaded for its tokenizer and context length."""
    from curate.models.loading import load_causal_lm
    from curate.models.truncation import token_budget
    from curate.scoring.ifd import plan_scoring

    lm, tokenizer = load_causal_lm(model_dir, dtype=bm["dtype"], trust_remote_code=bm["trust_remote_code"],
                                   chat_template=bm["chat_template"])
    scoring_plan = plan_scoring(tokenizer, rows, s["system_prompt"],
                                token_budget(s["max_length"], getattr(lm.config, "max_position_embeddings", None)),
                                s["batch_tokens"], s["contrast_seed"] if s["contrast"] else None,
                                s["contrast_partners"], s["response_share"])
    return lm, tokenizer, scoring_plan


def run_local(model_dir: str, bm: dict, s: dict, rows: list[dict]) -> tuple[dict, dict, int]:
    """(result, seconds, tokens through the model) of one pass in this process."""
    from curate.scoring.ifd import finish_scoring, mean_span_losses

    t0 = time.perf_counter()
    lm, tokenizer, p = plan(model_dir, bm, s, rows)
    t1 = time.perf_counter()
    means, _ = mean_span_losses(lm, p.seqs, tokenizer.pad_token_id, batches=p.batches)
    t2 = time.perf_counter()
    result = finish_scoring(p, means, s["variant"], s["precision"])
    t3 = time.perf_counter()
    seconds = {"total_s": t3 - t0, "plan_s": t1 - t0, "forward_s": t2 - t1, "merge_s": t3 - t2}
    return result, seconds, sum(len(x.input_ids) for x in p.seqs)


def run_dask(client, model_dir: str, bm: dict, s: dict, rows: list[dict]) -> tuple[dict, dict]:
    import numpy as np

    from curate.scoring.ifd import batch_costs, finish_scoring
    from curate.sharding import shard_batches

    t0 = time.perf_counter()
    _, tokenizer, p = plan(model_dir, bm, s, rows)
    t1 = time.perf_counter()
    futures, members = [], []
    for group in shard_batches(batch_costs(p), min(WORKERS, len(p.batches))):
        mine = [i for b in group for i in p.batches[b]]  # a shard sees only its own sequences, as score_shard does
        local = {i: k for k, i in enumerate(mine)}
        futures.append(client.submit(shard_forwards, model_dir, bm, [p.seqs[i] for i in mine],
                                     [[local[i] for i in p.batches[b]] for b in group], tokenizer.pad_token_id,
                                     pure=False))
        members.append(mine)
    parts = client.gather(futures)
    t2 = time.perf_counter()
    means = np.full(len(p.seqs), np.nan)
    for mine, part in zip(members, parts):
        means[mine] = part["means"]
    result = finish_scoring(p, means, s["variant"], s["precision"])
    t3 = time.perf_counter()
    return result, {"total_s": t3 - t0, "plan_s": t1 - t0, "shards_s": t2 - t1, "merge_s": t3 - t2,
                    "workers": [{k: part[k] for k in ("pid", "tokens", "load_s", "forward_s")} for part in parts]}


def run_training(model_dir: str, p, rows: list[dict], processes: int, out: Path, grad_accum: int) -> tuple[dict, dict]:
    """(seconds and tokens, weights) of one training round in `processes` processes."""
    from dataclasses import replace

    from safetensors.torch import load_file

    from curate.training.distributed import train_round
    from curate.training.schedule import steps_per_round
    from curate.training.trainer import RoundConfig

    t = p.training
    steps = steps_per_round(len(rows), t.batch_size, grad_accum)
    config = replace(RoundConfig.from_params(t, system_prompt=p.scoring.system_prompt,
                                             chat_template=p.base_model.chat_template, seed=p.project.seed,
                                             round_index=0, total_steps=steps), grad_accum=grad_accum, save_every=0)
    start = time.perf_counter()
    result = train_round(config, Path(model_dir), out, rows, processes=processes)
    wall = time.perf_counter() - start
    tokens = sum(result.log.column("tokens").to_pylist())
    weights = {}
    for f in sorted(out.glob("*.safetensors")):
        weights.update(load_file(str(f)))
    return {"wall_s": wall, "steps_s": sum(result.step_seconds), "tokens": tokens, "steps": result.steps,
            "tokens_per_s": tokens / wall, "step_tokens_per_s": tokens / sum(result.step_seconds)}, weights


def training_entry(args, command: str, model_dir: str, p, rows: list[dict], work: Path) -> dict:
    import torch

    runs, max_diff = [], 0.0
    for k in range(args.repeats):
        one, w_one = run_training(model_dir, p, rows, 1, work / f"train-1-{k}", args.train_grad_accum)
        two, w_two = run_training(model_dir, p, rows, 2, work / f"train-2-{k}", args.train_grad_accum)
        max_diff = max([max_diff] + [float((w_one[n] - w_two[n]).abs().max()) for n in w_one])
        if k and any(not torch.equal(w_two[n], previous[n]) for n in w_two):
            raise SystemExit(f"repeat {k}: two 2-process runs gave different weights")
        previous = w_two
        runs.append({"one_process": rounded(one), "two_processes": rounded(two)})
        print(f"repeat {k}: 1 process {one['tokens_per_s']:.1f} tokens/s, 2 processes {two['tokens_per_s']:.1f}", flush=True)
    best_one = max(r["one_process"]["tokens_per_s"] for r in runs)
    best_two = max(r["two_processes"]["tokens_per_s"] for r in runs)
    t = p.training
    return {"benchmark": "scaleout", "metric": "train tokens/s, 2 processes vs 1",
            "value": round(best_two, 3), "unit": "tokens/s (best repeat, wall time including start-up)",
            "baseline": f"one process, {args.threads} torch threads",
            "baseline_value": round(best_one, 3), "ratio": round(best_two / best_one, 3),
            "ratio_per_repeat": [round(r["two_processes"]["tokens_per_s"] / r["one_process"]["tokens_per_s"], 3) for r in runs],
            "step_ratio_per_repeat": [round(r["two_processes"]["step_tokens_per_s"] / r["one_process"]["step_tokens_per_s"], 3)
                                      for r in runs],
            "rows": len(rows), "batch_size": t.batch_size, "grad_accum": args.train_grad_accum,
            "max_length": t.max_length, "lora": t.lora.enabled, "model": args.model, "overrides": args.set,
            "max_abs_weight_diff_vs_one_process": max_diff, "repeats": runs, "command": command, "date": utc_now(),
            "machine": machine_info(args.threads),
            "note": f"torchrun --standalone --nproc_per_node=2, gloo, {max(1, args.threads // 2)} thread(s) per process; "
                    "shared machine (other processes may run)"}


def rounded(d):
    if isinstance(d, dict):
        return {k: rounded(v) for k, v in d.items()}
    if isinstance(d, list):
        return [rounded(v) for v in d]
    return round(d, 3) if isinstance(d, float) else d


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct", help="a `curate init --model` preset: smollm2-135m-instruct or tiny")
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of the local process")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a preset parameter (a trial: base_model.pretrain.steps=0)")
    ap.add_argument("--out", default=str(RESULT), help="results file (a trial: a temp path)")
    ap.add_argument("--metrics", nargs="+", choices=["scoring", "training", "minhash"],
                    default=["scoring", "training", "minhash"])
    ap.add_argument("--minhash-rows", type=int, default=17_000)
    ap.add_argument("--train-rows", type=int, default=32)
    ap.add_argument("--train-grad-accum", type=int, default=2, help="micro-batches per optimizer step (one per process)")
    args = ap.parse_args()
    command = "python bench/scaleout.py" + "".join(f" {a}" for a in sys.argv[1:])

    import torch

    from curate.config import Params, apply_overrides
    from curate.demo.sharegpt import write_sharegpt_pool
    from curate.env import configure
    from curate.ingest import ingest_path
    from curate.models.loading import model_path
    from curate.project_init import preset, preset_params
    from tasks.base_model import base_model
    from tasks.pipeline import stage_params

    work = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    configure(work)
    torch.set_num_threads(args.threads)
    p = Params.model_validate(apply_overrides(preset_params(preset(args.model)).model_dump(mode="json"), args.set))

    entries = []
    try:
        if {"scoring", "training"} & set(args.metrics):
            write_sharegpt_pool(work / "raw", size=args.rows, seed=0, damaged_share=0.0)
            rows = ingest_path(work / "raw", max_bytes=p.ingest.max_bytes).rows.to_pylist()
            model_dir = str(model_path(base_model.fn(project=str(work), params=stage_params(p, "base_model"))))
            bm, s = p.base_model.model_dump(mode="json"), p.scoring.model_dump(mode="json")
        if "scoring" in args.metrics:
            entries.append(scoring_entry(args, command, model_dir, bm, s, rows))
        if "training" in args.metrics:
            entries.append(training_entry(args, command, model_dir, p, rows[: args.train_rows], work))
        if "minhash" in args.metrics:
            entries.append(minhash_entry(args, command, p, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    update(args.out, entries)
    print(json.dumps(entries, indent=2))


@contextmanager
def local_cluster():
    """A Dask LocalCluster of WORKERS processes of 1 thread each and its client: yields (client, seconds to start)."""
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    with LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client, time.perf_counter() - start


def scoring_entry(args, command: str, model_dir: str, bm: dict, s: dict, rows: list[dict]) -> dict:
    import numpy as np

    runs, bitwise, max_diff = [], True, {}
    hidden = int(json.loads((Path(model_dir) / "config.json").read_text())["hidden_size"])
    with local_cluster() as (client, cluster_s):
        for k in range(args.repeats):
            local, t_local, n_tokens = run_local(model_dir, bm, s, rows)
            sharded, t_dask = run_dask(client, model_dir, bm, s, rows)
            for key in local:
                if local[key].tobytes() == sharded[key].tobytes():
                    continue
                # other torch thread counts (local --threads vs 1 per worker) sum the matmuls in another
                # order: the same up to float32 rounding of the hidden size's sums, else a real difference
                a, b = np.asarray(local[key], dtype=np.float64), np.asarray(sharded[key], dtype=np.float64)
                diff = float(np.nanmax(np.abs(a - b))) if a.size else 0.0
                bitwise = False
                max_diff[key] = max(max_diff.get(key, 0.0), diff)
                if args.threads == 1 or not np.allclose(a, b, rtol=hidden * float(np.finfo(np.float32).eps), atol=0,
                                                        equal_nan=True):
                    raise SystemExit(f"repeat {k}: the dask shards' {key} differ from the local pass by up to {diff:.3g}")
            runs.append({"local": rounded(t_local), "dask": rounded(t_dask)})
            print(f"repeat {k}: local {t_local['total_s']:.2f} s, dask {t_dask['total_s']:.2f} s", flush=True)

    local_s = min(r["local"]["total_s"] for r in runs)
    dask_s = min(r["dask"]["total_s"] for r in runs)
    entry = {"benchmark": "scaleout", "metric": "scoring rows/s, dask 2 workers vs local",
             "value": round(len(rows) / dask_s, 3), "unit": "rows/s (best repeat)",
             "baseline": f"one local process, {args.threads} torch threads, the same plan and batches",
             "baseline_value": round(len(rows) / local_s, 3), "ratio": round(local_s / dask_s, 3),
             "rows": len(rows), "tokens_through_model": n_tokens, "model": args.model, "overrides": args.set,
             "cluster_start_s": round(cluster_s, 2), "repeats": runs,
             "bitwise_equal": bitwise, "max_abs_diff": max_diff, "command": command, "date": utc_now(), "machine": machine_info(args.threads),
             "note": f"LocalCluster of {WORKERS} worker processes, 1 thread each, no Prefect; per repeat both paths "
                     "plan (model load + tokenisation), dask ships each shard's sequences to its worker, "
                     "which loads the model and runs its batches; shared machine (other processes may run)"}
    return entry


def minhash_entry(args, command: str, p, work: Path) -> dict:
    import numpy as np
    import pyarrow.parquet as pq

    from curate.artifacts import iter_batches, write_parquet
    from curate.dedup import ID_COLUMNS, TEXT_COLUMNS, dedup_batches
    from curate.dedup.presign import Presigned, shard_rows, sign_rows
    from curate.demo.sharegpt import write_sharegpt_pool
    from curate.ingest import ingest_path
    from tasks.dedup import settings_of
    from tasks.pipeline import stage_params

    settings = settings_of(stage_params(p, "dedup"))
    write_sharegpt_pool(work / "minhash-raw", size=args.minhash_rows, seed=0, damaged_share=0.0)
    path = write_parquet(ingest_path(work / "minhash-raw", max_bytes=p.ingest.max_bytes).rows, work / "minhash.parquet")
    ids = pq.read_table(path, columns=ID_COLUMNS)
    n = ids.num_rows

    def batches():
        return iter_batches(path, TEXT_COLUMNS)

    def timed_sign(rows) -> tuple[Presigned, float]:
        start = time.perf_counter()
        return sign_rows(path, rows, settings), time.perf_counter() - start

    runs = []
    with local_cluster() as (client, cluster_s):
        for k in range(args.repeats):
            start = time.perf_counter()
            local = dedup_batches(ids, batches(), settings, reread=batches)
            local_s = time.perf_counter() - start
            start = time.perf_counter()
            new = np.ones(n, dtype=bool)  # a full pass examines every row
            signed = client.gather([client.submit(timed_sign, shard_rows(new, i, WORKERS), pure=False)
                                    for i in range(WORKERS)])
            shards_s = time.perf_counter() - start
            sharded = dedup_batches(ids, batches(), settings, reread=batches,
                                    presigned=Presigned.concat([s for s, _ in signed], settings.width))
            dask_s = time.perf_counter() - start
            if not (local.removed.equals(sharded.removed) and np.array_equal(local.keep, sharded.keep)):
                raise SystemExit(f"repeat {k}: the sharded signatures changed what dedup removes")
            runs.append({"local_s": round(local_s, 3), "dask_s": round(dask_s, 3), "shards_s": round(shards_s, 3),
                         "worker_sign_s": [round(t, 3) for _, t in signed], "merge_s": round(dask_s - shards_s, 3)})
            print(f"repeat {k}: local {local_s:.2f} s, dask {dask_s:.2f} s (shards {shards_s:.2f} s)", flush=True)
    local_best, dask_best = min(r["local_s"] for r in runs), min(r["dask_s"] for r in runs)
    return {"benchmark": "scaleout", "metric": "minhash rows/s, dask 2 workers vs local",
            "value": round(n / dask_best, 1), "unit": "rows/s (best repeat)",
            "baseline": f"the dedup stage's full pass in one process (MinHash on {os.cpu_count()} threads)",
            "baseline_value": round(n / local_best, 1), "ratio": round(local_best / dask_best, 3),
            "ratios_per_repeat": [round(r["local_s"] / r["dask_s"], 3) for r in runs],
            "rows": n, "removed": local.removed.num_rows, "cluster_start_s": round(cluster_s, 2), "repeats": runs,
            "command": command, "date": utc_now(), "machine": machine_info(os.cpu_count()),
            "note": f"LocalCluster of {WORKERS} worker processes, 1 thread each, no Prefect; the pool is written as the "
                    "ingest stage writes it (one row group), so each shard decodes the whole text columns; the "
                    "merge does the exact grouping, LSH, the candidates' exact Jaccard and the clusters; shared machine"}


if __name__ == "__main__":
    main()
