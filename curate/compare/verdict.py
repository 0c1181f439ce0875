"""The verdict of every arm against the baseline, in plain words, from the paired per-row statistics
(curate/compare/paired.py; docs/comparison-statistics.md).

Every arm is evaluated on the same held-out rows, so each arm is compared with the baseline row by row:
the difference of the final held-out loss (arm minus baseline: negative is better) with a bootstrap 95%
interval over rows and seeds, a two-sided p-value, the per-row win rate, and an equivalence test
against `equivalence_margin`. The p-values of all arms are Holm-adjusted over the arms compared with the
baseline plus `tried_before` (variants tried on the same pools before this spec). An arm *beats* the
baseline when its adjusted p < ALPHA and the difference is negative, is *worse* when it is positive, is
*equivalent* when the adjusted equivalence p < ALPHA (the difference lies within the margin), and
otherwise the data cannot tell. The spec's `primary` arm is named before the run: the comparison's question.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from curate.compare.paired import ALPHA, holm, outcome, paired_contrast


def row_losses(runs: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """(seeds x rows losses, tokens, sets, (set, row_id) keys) of the runs' final evaluations (`final_rows`).
    Rows without a response token (NaN loss) are left out; every run must hold the same rows."""
    keys = None
    losses = []
    for run in runs:
        rows = run["final_rows"]
        these = list(zip(rows["set"], rows["row_id"]))
        if keys is not None and these != keys:
            raise ValueError(f"run {run['strategy']} seed {run['seed']} was evaluated on other held-out rows than the "
                             f"first run: a paired comparison needs the same rows for every run")
        keys = these
        losses.append(np.asarray(rows["loss"], dtype=np.float64))
    tokens = np.asarray(runs[0]["final_rows"]["tokens"], dtype=np.float64)
    matrix = np.vstack(losses)
    keep = np.isfinite(matrix).all(axis=0) & (tokens > 0)
    sets = np.asarray([s for s, _ in keys])
    return matrix[:, keep], tokens[keep], sets[keep], [k for k, ok in zip(keys, keep) if ok]


def _words(arm: str, baseline: str, c: Mapping[str, Any]) -> str:
    lo, hi = c["ci95"]
    numbers = (f"{c['difference']:+.4f} nats (95% CI {lo:+.4f} to {hi:+.4f}), lower on {c['win_rate']:.0%} of rows, "
               f"p = {c['p']:.2g}, Holm {c['p_holm']:.2g} over {c['variants_tried']} variants")
    verb = {"better": f"beats {baseline}", "worse": f"is worse than {baseline}",
            "equivalent": f"is equivalent to {baseline} within ±{c['margin']:g} nats (TOST Holm p = {c['p_equivalence_holm']:.2g})",
            "inconclusive": f"shows no clear difference from {baseline}, and is not shown equivalent within "
                            f"±{c['margin']:g} nats"}[c["outcome"]]
    return f"{verb}: {numbers}"


def verdicts(runs_by_arm: Mapping[str, Sequence[dict]], baseline: str, spec: Mapping[str, Any]) -> dict[str, dict]:
    """Per arm other than the baseline (arms with runs only): the paired contrast, the Holm-adjusted p-values,
    the outcome and one sentence. `spec`: the comparison spec (its statistics fields) as a dict."""
    others = [a for a in runs_by_arm if a != baseline and runs_by_arm[a]]
    base = row_losses(runs_by_arm[baseline])
    margin = spec.get("equivalence_margin", 0.005)
    out: dict[str, dict] = {}
    for arm in others:
        losses = row_losses(runs_by_arm[arm])
        if losses[3] != base[3]:
            raise ValueError(f"{arm} and {baseline} were evaluated on other held-out rows: they cannot be paired")
        out[arm] = paired_contrast(losses[0], base[0], base[1], base[2], margin,
                                   spec.get("bootstrap_samples", 10_000), spec.get("bootstrap_seed", 0))
    tried = spec.get("tried_before", 0)
    adjusted = holm({a: c["p"] for a, c in out.items()}, tried)
    equivalent = holm({a: c["p_equivalence"] for a, c in out.items()}, tried)
    chosen = spec.get("chosen_after_results") or {}
    for arm, c in out.items():
        c.update(p_holm=adjusted[arm], p_equivalence_holm=equivalent[arm], variants_tried=len(out) + tried,
                 primary=arm == spec.get("primary"), gain=-c["difference"], p_corrected=adjusted[arm])
        c["outcome"] = outcome(c, ALPHA)
        c["words"] = _words(arm, baseline, c) + (f"; chosen after looking at earlier results ({chosen[arm]})"
                                                 if arm in chosen else "")
    return out
