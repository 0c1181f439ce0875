"""A verdict in plain words that accounts for how many variants were tried (docs/selection-baselines.md §4).

Comparing m strategies with the baseline on the same pool, one of them will look better by chance.
Each strategy's difference of mean held-out loss from the baseline's gets a one-sided Welch t-test
(from mean, sample std and number of seeds); the p-value is multiplied by m (Bonferroni), where m
counts the strategies compared with the baseline in this spec plus `tried_before` (variants the
user says were tried on these pools earlier). A strategy "beats" the baseline when the corrected
p-value is below `ALPHA`. With 3 seeds the test has little power: "no clear difference" is the
expected answer for small effects, and says so.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from scipy import stats

ALPHA = 0.05


def welch_p(candidate: Mapping[str, Any], baseline: Mapping[str, Any]) -> float | None:
    """One-sided p-value of "candidate's mean loss is lower than the baseline's" (None: < 2 seeds on a side)."""
    if None in (candidate.get("std"), baseline.get("std"), candidate.get("mean"), baseline.get("mean")):
        return None
    vc, vb = candidate["std"] ** 2 / candidate["n"], baseline["std"] ** 2 / baseline["n"]
    diff = baseline["mean"] - candidate["mean"]
    if vc + vb == 0:
        return 0.0 if diff > 0 else 1.0
    t = diff / math.sqrt(vc + vb)
    df = (vc + vb) ** 2 / (vc ** 2 / (candidate["n"] - 1) + vb ** 2 / (baseline["n"] - 1))
    return float(stats.t.sf(t, df))


def verdicts(summary: Mapping[str, dict], baseline: str, tried_before: int = 0,
             chosen_after: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Per strategy other than the baseline: the difference, p, corrected p and one sentence."""
    base = summary[baseline]["final_loss"]
    others = [s for s in summary if s != baseline]
    m = len(others) + tried_before
    out = {}
    for s in others:
        x = summary[s]["final_loss"]
        p = welch_p(x, base)
        worse_p = welch_p(base, x)
        corrected = None if p is None else min(1.0, p * m)
        worse_corrected = None if worse_p is None else min(1.0, worse_p * m)
        diff = None if None in (x["mean"], base["mean"]) else base["mean"] - x["mean"]
        if corrected is None:
            words = "cannot be judged (fewer than 2 seeds)"
        elif corrected < ALPHA:
            words = (f"beats {baseline}: {diff:+.4f} nats of held-out loss, p = {p:.2g}, {corrected:.2g} after correcting "
                     f"for {m} variants tried")
        elif worse_corrected is not None and worse_corrected < ALPHA:
            words = (f"is worse than {baseline}: {diff:+.4f} nats, p = {worse_p:.2g}, {worse_corrected:.2g} after correcting "
                     f"for {m} variants tried")
        else:
            words = (f"shows no clear difference from {baseline} ({diff:+.4f} nats; p = {min(p, worse_p):.2g} one-sided, "
                     f"{min(corrected, worse_corrected):.2g} after correcting for {m} variants tried)")
        if chosen_after and s in chosen_after:
            words += f"; chosen after looking at earlier results ({chosen_after[s]})"
        out[s] = {"gain": diff, "p": p, "p_corrected": corrected, "p_worse": worse_p,
                  "p_worse_corrected": worse_corrected, "variants_tried": m, "words": words}
    return out
