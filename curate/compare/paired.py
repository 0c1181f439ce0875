"""Paired statistics of a comparison: every arm is evaluated on the same held-out rows, so a strategy
is compared with the baseline row by row (docs/comparison-statistics.md).

Inputs per arm: a (seeds x rows) matrix of per-row held-out losses (mean cross-entropy over the
row's response tokens), the rows' token counts (the same for every arm: same rows, same tokenizer)
and the rows' held-out set. The statistic is the difference of the final held-out loss the report
shows, arm minus baseline:

    delta = mean over sets g of  sum_{i in g} n_i (mean_s L_arm[s, i] - mean_s L_base[s, i]) / sum_{i in g} n_i

(token-weighted within a set, sets weighted equally, seeds averaged): negative = the arm is better.

Uncertainty: a bootstrap that resamples rows (within each set) and seeds (each arm's seeds on their
own: seed s of two arms shares no randomness that pairs them), `samples` times with a fixed seed.
From the bootstrap distribution of delta:
- the 95% percentile interval;
- a two-sided p-value for delta = 0, p = min(1, 2 min(#{d* >= 0} + 1, #{d* <= 0} + 1) / (B + 1))
  (the interval inverted: p < alpha exactly when the 1 - alpha percentile interval excludes 0, up to
  the +1 of the count);
- an equivalence test (TOST) against a margin m: p = max(#{d* >= m} + 1, #{d* <= -m} + 1) / (B + 1),
  small when the whole distribution sits inside (-m, m);
- the per-row win rate: the share of rows whose seed-mean loss is lower under the arm (ties 1/2).
Several arms against one baseline: `holm` adjusts the p-values (Holm 1979), counting `extra`
hypotheses tested before (variants tried on the same pools) as never rejected.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

ALPHA = 0.05


def holm(pvalues: Mapping[str, float], extra: int = 0) -> dict[str, float]:
    """Holm step-down adjusted p-values over `pvalues` plus `extra` untested hypotheses (taken as p = 1,
    so they come last and only raise the multiplier): adj_(j) = max_{k <= j} min(1, (m - k + 1) p_(k))."""
    m = len(pvalues) + extra
    running, out = 0.0, {}
    for k, (name, p) in enumerate(sorted(pvalues.items(), key=lambda kv: kv[1])):
        running = max(running, min(1.0, (m - k) * p))
        out[name] = running
    return out


def point_difference(arm: np.ndarray, base: np.ndarray, tokens: np.ndarray, sets: np.ndarray) -> float:
    """delta (module docstring) of `arm` and `base` (seeds x rows), without resampling."""
    diff = arm.mean(axis=0) - base.mean(axis=0)
    return float(np.mean([np.sum(tokens[sets == g] * diff[sets == g]) / np.sum(tokens[sets == g])
                          for g in np.unique(sets)]))


def _row_counts(rng: np.random.Generator, sets: np.ndarray, samples: int) -> np.ndarray:
    """Bootstrap multiplicities of every row (samples x rows): rows resampled with replacement within their set."""
    counts = np.zeros((samples, len(sets)))
    for g in np.unique(sets):
        members = np.flatnonzero(sets == g)
        counts[:, members] = rng.multinomial(len(members), np.full(len(members), 1.0 / len(members)), size=samples)
    return counts


def _seed_picks(rng: np.random.Generator, seeds: int, samples: int) -> np.ndarray:
    """Which seeds each bootstrap sample uses (samples x seeds, with replacement): one draw per sample for
    every set, since a seed is a whole run."""
    return rng.integers(0, seeds, size=(samples, seeds))


def bootstrap_differences(arm: np.ndarray, base: np.ndarray, tokens: np.ndarray, sets: np.ndarray,
                          samples: int = 10_000, seed: int = 0) -> np.ndarray:
    """`samples` bootstrap replicates of delta: rows resampled within sets (the same rows for both arms:
    the pairing), each arm's seeds resampled on their own."""
    rng = np.random.default_rng(seed)
    arm, base = np.atleast_2d(np.asarray(arm, float)), np.atleast_2d(np.asarray(base, float))
    tokens, sets = np.asarray(tokens, float), np.asarray(sets)
    counts = _row_counts(rng, sets, samples)
    picks = {"arm": _seed_picks(rng, arm.shape[0], samples), "base": _seed_picks(rng, base.shape[0], samples)}
    out = np.zeros(samples)
    groups = np.unique(sets)
    for g in groups:
        w = counts[:, sets == g] * tokens[sets == g]  # samples x rows of the set
        total = w.sum(axis=1, keepdims=True)
        means = {name: np.take_along_axis((w @ losses[:, sets == g].T) / total, picks[name], axis=1).mean(axis=1)
                 for name, losses in (("arm", arm), ("base", base))}
        out += (means["arm"] - means["base"]) / len(groups)
    return out


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(replicates, [tail, 100.0 - tail])
    return float(lo), float(hi)


def bootstrap_p(replicates: np.ndarray) -> float:
    """Two-sided p-value of delta = 0 from the bootstrap replicates (module docstring)."""
    b = len(replicates)
    tail = min(int(np.sum(replicates >= 0)), int(np.sum(replicates <= 0))) + 1
    return min(1.0, 2.0 * tail / (b + 1))


def tost_p(replicates: np.ndarray, margin: float) -> float:
    """Equivalence p-value (two one-sided tests) for |delta| < margin from the bootstrap replicates."""
    b = len(replicates)
    return (max(int(np.sum(replicates >= margin)), int(np.sum(replicates <= -margin))) + 1) / (b + 1)


def win_rate(arm: np.ndarray, base: np.ndarray) -> float:
    """Share of rows whose seed-mean loss is lower under the arm than under the baseline (ties count 1/2)."""
    a, b = np.atleast_2d(arm).mean(axis=0), np.atleast_2d(base).mean(axis=0)
    return float(np.mean((a < b) + 0.5 * (a == b)))


def paired_contrast(arm: np.ndarray, base: np.ndarray, tokens: Sequence[int], sets: Sequence[str], margin: float,
                    samples: int = 10_000, seed: int = 0) -> dict:
    """Everything the report says about one arm against the baseline, before the multiplicity correction."""
    arm, base = np.atleast_2d(np.asarray(arm, float)), np.atleast_2d(np.asarray(base, float))
    tokens, sets = np.asarray(tokens, float), np.asarray(sets)
    replicates = bootstrap_differences(arm, base, tokens, sets, samples, seed)
    lo, hi = percentile_interval(replicates)
    lo90, hi90 = percentile_interval(replicates, 1.0 - 2.0 * ALPHA)
    return {"difference": point_difference(arm, base, tokens, sets), "ci95": [lo, hi], "ci90": [lo90, hi90],
            "se": float(np.std(replicates, ddof=1)), "p": bootstrap_p(replicates), "margin": margin,
            "p_equivalence": tost_p(replicates, margin), "win_rate": win_rate(arm, base),
            "rows": int(arm.shape[1]), "seeds": [int(arm.shape[0]), int(base.shape[0])], "samples": samples}


def outcome(contrast: Mapping, alpha: float = ALPHA) -> str:
    """`better`, `worse` (Holm-adjusted p < alpha), `equivalent` (adjusted TOST p < alpha: |delta| < margin),
    or `inconclusive`; needs `p_holm` and `p_equivalence_holm`."""
    if contrast["p_holm"] < alpha:
        return "better" if contrast["difference"] < 0 else "worse"
    if contrast["p_equivalence_holm"] < alpha:
        return "equivalent"
    return "inconclusive"
