"""`curate compare`: every curation strategy side by side on demo pools with ground truth, with a
report in pictures (README, "Does curation help?"). See run.py (the runs), metrics.py / summary.py (the numbers),
curate/report/page.py (the page) and tracking.py (MLflow)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from curate.artifacts import write_json
from curate.compare.spec import CompareSpec, load_spec
from curate.config import Params, load_params

MODEL_AWARE_SELECTION = ("iterit", "ifd-only", "static-ifd")  # rank by the model's IFD
MODEL_AWARE_ONLINE = ("adapt", "filter-then-weight", "greats")  # weigh / filter by the model's states or gradients


def model_aware(spec: CompareSpec, base: Params) -> list[str]:
    """Strategies whose choice of rows depends on the model being trained (not random, full or TF-IDF only)."""
    out = []
    for name in spec.strategies:
        p = spec.run_params(base, name, spec.seeds[0])
        online = getattr(getattr(p.training, "online", None), "policy", "uniform")
        if p.selection.strategy in MODEL_AWARE_SELECTION or online in MODEL_AWARE_ONLINE:
            out.append(name)
    return out


def compare(project: Path, spec_file: Path, params_file: Path | None, out_dir: Path, command: str,
            workspace: Path | None = None, log_to_mlflow: bool = True, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run the comparison, write results.json + report.md + PNGs under `out_dir`, log them to MLflow.
    `overrides` (`--set KEY=VALUE`) apply over `params_file` (or the defaults) before the strategies'."""
    from curate.compare.run import run_comparison
    from curate.compare.summary import summarise
    from curate.env import mlflow_artifact_root, state_dir
    from curate.report.page import write_comparison_report

    spec = load_spec(spec_file)
    base = load_params(params_file, overrides)
    workspace = workspace or state_dir(project) / "compare" / spec.name
    results = run_comparison(spec, base, workspace)
    results["model_aware"] = model_aware(spec, base)
    results["command"] = command
    summary = summarise(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(results, out_dir / "results.json")
    write_json(summary, out_dir / "summary.json")
    page = write_comparison_report(results, summary, out_dir, command)
    run_id = None
    if log_to_mlflow:
        from curate.compare.tracking import log_comparison

        run_id = log_comparison(spec.experiment, mlflow_artifact_root(project), spec.name,
                                spec.model_dump(mode="json"), summary, out_dir)
    return {"results": results, "summary": summary, "page": page, "mlflow_run_id": run_id}


__all__ = ["compare", "model_aware", "CompareSpec", "load_spec"]
