"""`curate compare`: every curation strategy side by side on demo pools with ground truth, with a
report in pictures (docs/compare.md). The runs are app/compare.py; here: the spec
(spec.py), the numbers (facts.py, metrics.py, summary.py), the paired statistics and verdicts
(paired.py, verdict.py), the compute-matched arm (matched.py), the cost of selecting (cost.py) and MLflow
logging (tracking.py); curate/report/page.py draws the page (docs/comparison-statistics.md)."""
from __future__ import annotations

from curate.compare.spec import CompareSpec, load_spec
from curate.config import Params

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


__all__ = ["model_aware", "CompareSpec", "load_spec"]
