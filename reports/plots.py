"""What every report's figures share: a smoothed training column, and how a figure is finished."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def smoothed(rows: list[dict], key: str, window: int) -> tuple[list[int], np.ndarray]:
    """(steps, mean of ``key`` over the last ``window`` rows) for every row with a full window
    behind it: batches differ (lengths, episodes), so single rows are noise."""
    window = max(1, min(window, len(rows)))
    means = np.convolve([r[key] for r in rows], np.ones(window) / window, mode="valid")
    return [r["step"] for r in rows][window - 1:], means


def finish(fig, path: Path, *legend_axes, dpi: int = 120, **legend) -> None:
    """Legend and grid on ``legend_axes``, then save ``fig`` to ``path`` and free it."""
    for ax in legend_axes:
        ax.legend(**legend)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight")   # "tight": a legend placed outside the axes stays in
    plt.close(fig)
