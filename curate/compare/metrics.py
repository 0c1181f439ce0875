"""Metric helpers of a strategy comparison: subset composition, round-to-round
overlap, IFD histograms by noise kind, and mean ± sample std over seeds.

Ground truth (`truth`, `skill`) is read here only, to describe what a strategy selected; no
selection code sees it.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Mapping, Sequence

import numpy as np

IFD_BINS = tuple(np.round(np.linspace(0.0, 1.5, 31), 6).tolist())  # IFD histogram edges; above 1.5 -> last bin
UNKNOWN = "unknown"  # rows without a label (pools that carry no ground truth)


def composition(labels: Iterable[str | None]) -> dict[str, int]:
    """Count of each label (None -> "unknown"), sorted by label."""
    return dict(sorted(Counter(UNKNOWN if x is None else x for x in labels).items()))


def shares(counts: Mapping[str, float]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: (v / total if total else 0.0) for k, v in counts.items()}


def overlap(previous: Iterable[str], current: Iterable[str]) -> dict[str, float]:
    """How much of this round's selection the previous round already held.

    `kept` = |prev ∩ cur| / |cur| (share of this round's rows selected last round too),
    `jaccard` = |prev ∩ cur| / |prev ∪ cur|.
    """
    a, b = set(previous), set(current)
    inter, union = len(a & b), len(a | b)
    return {"kept": inter / len(b) if b else 0.0, "jaccard": inter / union if union else 0.0}


def mean_std(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean and sample standard deviation (ddof = 1) of the finite values; std is None for fewer than 2."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return {"mean": None, "std": None, "n": 0}
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else None
    return {"mean": float(np.mean(finite)), "std": std, "n": len(finite)}


def ifd_histogram(ifd: Sequence[float], labels: Sequence[str | None], bins: Sequence[float] = IFD_BINS) -> dict[str, list[int]]:
    """Histogram counts of the finite IFD values per label; values above the last edge go to the last bin."""
    values = np.asarray(ifd, dtype=np.float64)
    names = np.asarray([UNKNOWN if x is None else x for x in labels], dtype=object)
    edges = np.asarray(bins, dtype=np.float64)
    finite = np.isfinite(values)
    out: dict[str, list[int]] = {}
    for name in sorted(set(names.tolist())):
        v = np.clip(values[finite & (names == name)], edges[0], edges[-1])
        out[name] = np.histogram(v, bins=edges)[0].astype(int).tolist()
    return out


def beats(candidate: Mapping[str, float | None], baseline: Mapping[str, float | None], k: float = 2.0) -> bool:
    """True when the candidate's mean loss is below the baseline's by more than k times the larger std
    (both need a mean and a std, i.e. at least two seeds)."""
    if None in (candidate.get("mean"), baseline.get("mean"), candidate.get("std"), baseline.get("std")):
        return False
    return baseline["mean"] - candidate["mean"] > k * max(candidate["std"], baseline["std"])
