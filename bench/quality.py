"""Does curation help? Every strategy vs random at the same budget and optimizer steps (docs/compare.md).

Runs `curate compare` with params/compare.yaml (three demo pool variants of 1,800 rows: balanced
low-noise, imbalanced, noisy; seven strategies; three seeds; the demo's tiny model), writes the report
(report.md + PNGs + results.json) to bench/results/quality/, logs it to MLflow (this project's
.curate/mlflow.db, experiment curate-compare), and records in bench/results/quality.json, per pool:

- metric `<strategy> vs random heldout loss`: value = the strategy's mean final held-out loss over
  seeds (nats per response token, mean over skills), baseline_value = random's, ratio = random / strategy
  (higher is better), std and baseline_std over seeds;
- metric `best model-aware vs random heldout loss`: the model-aware strategy with the lowest mean.

Run: .venv/bin/python bench/quality.py [--compare params/compare.yaml] [--out bench/results/quality]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from curate.env import configure  # noqa: E402

RESULT = ROOT / "bench" / "results" / "quality.json"


def entries(results: dict, summary: dict, command: str, date: str, machine: str) -> list[dict]:
    """quality.json entries: every strategy vs the baseline, and the best model-aware one, per pool."""
    baseline = results["spec"]["baseline"]
    out = []
    for pool, strategies in summary.items():
        base = strategies[baseline]["final_loss"]

        def entry(metric: str, strategy: str) -> dict:
            s = strategies[strategy]["final_loss"]
            return {"benchmark": "quality", "pool": pool, "metric": metric, "strategy": strategy,
                    "value": round(s["mean"], 5), "unit": "nats/token (held-out loss, mean over skills)",
                    "std": None if s["std"] is None else round(s["std"], 5), "n_seeds": s["n"],
                    "baseline": baseline, "baseline_value": round(base["mean"], 5),
                    "baseline_std": None if base["std"] is None else round(base["std"], 5),
                    "ratio": round(base["mean"] / s["mean"], 4), "command": command, "date": date,
                    "machine": machine}

        out += [entry(f"{s} vs {baseline} heldout loss", s) for s in strategies]
        aware = [s for s in results["model_aware"] if s in strategies]
        if aware:
            best = min(aware, key=lambda s: strategies[s]["final_loss"]["mean"])
            out.append(entry(f"best model-aware vs {baseline} heldout loss", best))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compare", default="params/compare.yaml")
    ap.add_argument("--out", default="bench/results/quality")
    ap.add_argument("--result", default=str(RESULT.relative_to(ROOT)))
    args = ap.parse_args()
    configure(ROOT)
    from _record import machine_info, record, utc_now

    from app.compare import compare

    command = "python bench/quality.py" + "".join(f" {a}" for a in sys.argv[1:])
    start = time.perf_counter()
    result = compare(ROOT, ROOT / args.compare, None, ROOT / args.out, command)
    record(ROOT / args.result, entries(result["results"], result["summary"], command, utc_now(), machine_info(1)))
    print(f"report {result['page']}, results {args.result}, MLflow run {result['mlflow_run_id']}, "
          f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
