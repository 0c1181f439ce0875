"""PNG plots of the curation report (matplotlib, Agg backend): held-out loss over rounds with seed
bands, per-skill bars, subset composition, IFD histograms by noise kind, round-to-round overlap.

Every function takes plain dicts (the comparison summary or one run's metrics) and writes one PNG.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["text.parse_math"] = False  # labels are set and skill names from the data: `$` is a character
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LOSS_UNIT = "held-out loss (nats / response token)"
TRUTH_COLOURS = {"clean": "#4c956c", "exact_dup": "#bcbd22", "near_dup": "#dbdb8d", "shuffled": "#d62728",
                 "garbage": "#8c564b", "truncated": "#ff7f0e", "empty": "#7f7f7f", "unknown": "#9edae5"}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def loss_over_rounds(series: Mapping[str, Sequence[Mapping]], base_loss: float, path: Path, title: str) -> Path:
    """`series`: strategy -> per round {"mean", "std"}; the base model is drawn at x = 0, round r at r + 1."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, points in series.items():
        x = np.arange(len(points) + 1)
        mean = np.array([base_loss] + [p["mean"] for p in points], dtype=float)
        std = np.array([0.0] + [p["std"] or 0.0 for p in points], dtype=float)
        (line,) = ax.plot(x, mean, marker="o", label=name)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    ax.set_xticks(np.arange(max(len(v) for v in series.values()) + 1))
    ax.set_xticklabels(["base"] + [f"round {r}" for r in range(max(len(v) for v in series.values()))])
    ax.set_xlabel("checkpoint (after each round of selection + training)")
    ax.set_ylabel(LOSS_UNIT)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def grouped_bars(values: Mapping[str, Mapping[str, Mapping]], path: Path, title: str, ylabel: str,
                 reference: Mapping[str, float] | None = None, reference_label: str = "base model") -> Path:
    """`values`: series (strategy) -> group (skill) -> {"mean", "std"}; optional reference line per group."""
    series = list(values)
    groups = sorted({g for v in values.values() for g in v})
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(7.5, 1.4 * len(groups) + 2), 4.5))
    x = np.arange(len(groups))
    for i, name in enumerate(series):
        mean = [values[name].get(g, {}).get("mean") or 0.0 for g in groups]
        std = [values[name].get(g, {}).get("std") or 0.0 for g in groups]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, mean, width, yerr=std, capsize=2, label=name)
    if reference:
        ax.scatter(x, [reference.get(g, np.nan) for g in groups], marker="_", s=600, color="black", zorder=3,
                   label=reference_label)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=15)
    ax.set_xlabel("held-out set (skill)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def stacked_shares(shares: Mapping[str, Mapping[str, float]], path: Path, title: str, what: str,
                   colours: Mapping[str, str] | None = None) -> Path:
    """`shares`: bar (strategy or "pool") -> label -> share of the selected rows; one stacked bar each."""
    bars = list(shares)
    labels = sorted({k for v in shares.values() for k in v}, key=lambda k: (k != "clean", k))
    fig, ax = plt.subplots(figsize=(max(7.5, 0.9 * len(bars) + 3), 4.5))
    bottom = np.zeros(len(bars))
    for label in labels:
        h = np.array([100 * shares[b].get(label, 0.0) for b in bars])
        ax.bar(bars, h, bottom=bottom, label=label, color=(colours or {}).get(label))
        bottom += h
    ax.set_ylabel("share of selected rows (%)")
    ax.set_xlabel("strategy (all rounds and seeds)")
    ax.set_title(title)
    ax.set_ylim(0, 100)
    ax.tick_params(axis="x", rotation=20)
    ax.legend(title=what, fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    return _save(fig, path)


def ifd_histograms(panels: Sequence[tuple[str, Mapping[str, Sequence[int]]]], edges: Sequence[float], path: Path,
                   title: str) -> Path:
    """One panel per (label, {noise kind: counts}); the kinds are stacked."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), sharey=True, squeeze=False)
    centres = (np.asarray(edges[:-1]) + np.asarray(edges[1:])) / 2
    width = float(np.diff(edges)[0])
    for ax, (label, hist) in zip(axes[0], panels):
        bottom = np.zeros(len(centres))
        for kind in sorted(hist, key=lambda k: (k != "clean", k)):
            counts = np.asarray(hist[kind], dtype=float)
            ax.bar(centres, counts, width, bottom=bottom, label=kind, color=TRUTH_COLOURS.get(kind))
            bottom += counts
        ax.axvline(1.0, color="black", lw=0.8, ls="--")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("IFD = PPL(y|x) / PPL(y)  (dashed: eligibility bound 1)")
    axes[0][0].set_ylabel("rows")
    axes[0][-1].legend(title="noise kind", fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def overlap_over_rounds(series: Mapping[str, Sequence[Mapping | None]], path: Path, title: str) -> Path:
    """`series`: strategy -> per round {"mean", "std"} of the share kept from the previous round (None in round 0)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, points in series.items():
        xs = [r for r, p in enumerate(points) if p and p["mean"] is not None]
        if not xs:
            continue
        ax.errorbar(xs, [100 * points[r]["mean"] for r in xs], yerr=[100 * (points[r]["std"] or 0) for r in xs],
                    marker="o", capsize=3, label=name)
    ax.set_xlabel("round (compared with the round before)")
    ax.set_ylabel("rows also selected in the previous round (%)")
    ax.set_ylim(-5, 105)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)
