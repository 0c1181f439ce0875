"""Record a comparison in MLflow: one parent run (tag curate.kind = comparison) with the spec as
parameters, each strategy's mean final held-out loss, selection and training seconds, gain per
selection-hour and paired contrast with the baseline (difference, 95% interval, win rate, Holm p) per pool
as metrics, and the report directory
(page, PNGs, results.json) as artifacts. MLflow is imported here only, when a comparison is logged."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from curate.tracking.keys import safe_key as mlflow_key  # e.g. the `+` of `random+adapt` becomes `_`


def _paired_metrics(prefix: str, verdict: dict[str, Any] | None) -> dict[str, float]:
    """The paired contrast with the baseline (curate/compare/verdict.py) as metrics; none for the baseline."""
    if not verdict:
        return {}
    return {f"{prefix}.paired.difference": verdict["difference"], f"{prefix}.paired.ci95_low": verdict["ci95"][0],
            f"{prefix}.paired.ci95_high": verdict["ci95"][1], f"{prefix}.paired.win_rate": verdict["win_rate"],
            f"{prefix}.paired.p_holm": verdict["p_holm"], f"{prefix}.paired.p_equivalence_holm": verdict["p_equivalence_holm"]}


def log_comparison(experiment: str, artifact_root: str, run_name: str, spec: dict[str, Any],
                   summary: dict[str, Any], report_dir: Path) -> str:
    import mlflow

    from curate.tracking.mlflow_tracking import TAG_KIND, _flat, experiment_id

    exp_id = experiment_id(experiment, artifact_root)
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags={TAG_KIND: "comparison"}) as run:
        mlflow.log_params({mlflow_key(k): str(v)[:6000] for k, v in _flat(spec).items()})
        metrics = {}
        for pool, strategies in summary.items():
            for strategy, s in strategies.items():
                for what in ("final_loss", "final_exact_match", "selection_seconds", "train_seconds"):
                    for stat in ("mean", "std"):
                        if s[what][stat] is not None:
                            metrics[f"{pool}.{strategy}.{what}.{stat}"] = float(s[what][stat])
                if s.get("gain_per_selection_hour") is not None:
                    metrics[f"{pool}.{strategy}.gain_per_selection_hour"] = float(s["gain_per_selection_hour"])
                metrics.update(_paired_metrics(f"{pool}.{strategy}", s.get("verdict")))
        mlflow.log_metrics({mlflow_key(k): v for k, v in metrics.items()})
        mlflow.log_artifacts(str(report_dir), artifact_path="report")
        return run.info.run_id
