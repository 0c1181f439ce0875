"""The dedup removal report's plot: how many duplicate clusters of each size the pool had.

A cluster is a kept row with the rows removed as its duplicates (`duplicate_of`); its size counts
both. Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend change).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from curate.artifacts import atomic_path


def plot_cluster_sizes(sizes: np.ndarray, path: Path | str) -> Path:
    """Write a PNG histogram of cluster sizes (clusters of >= 2 rows), y on a log scale, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    sizes = np.asarray(sizes, dtype=np.int64)
    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if len(sizes):
        largest = int(sizes.max())
        edges = (np.arange(2, largest + 2) - 0.5 if largest <= 50
                 else np.unique(np.geomspace(2, largest + 1, 40).astype(np.int64)) - 0.5)
        axes.hist(sizes, bins=edges, color="#4c72b0", edgecolor="white")
        axes.set_yscale("log")
        if largest > 50:
            axes.set_xscale("log")
        else:
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        axes.text(0.5, 0.5, "no duplicate clusters", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("cluster size (kept row + its removed duplicates)")
    axes.set_ylabel("clusters")
    axes.set_title(f"dedup: {len(sizes)} clusters, {int(sizes.sum() - len(sizes))} rows removed")
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})
    return path
