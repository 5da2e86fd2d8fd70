"""Training curves (``RUN/progress.png``), drawn from metrics.csv rows with Matplotlib (Agg).

The file is written atomically (``unetkit.runtime.atomic``: temporary file + rename, mode as the
umask allows), so a crash while drawing never leaves a half-written picture behind.
"""

from __future__ import annotations

import math
from os import PathLike
from pathlib import Path

import matplotlib

from unetkit.runtime.atomic import atomic_path

matplotlib.use("Agg")


def plot_training_curves(rows: list[dict], path: str | PathLike) -> PathLike:
    """Draw nnU-Net-style progress curves from metrics.csv rows and save them as a PNG.

    Top panel: train and validation loss (left axis) and validation Dice per class and mean
    (right axis) per epoch; bottom panels: learning rate and seconds per epoch.

    Args:
        rows: dicts with ``epoch``, ``train_loss``, ``val_loss``, ``val_dice``, ``dice_<name>``,
            ``lr``, ``seconds`` (NaN where not measured), as ``read_metrics`` returns.
        path: output PNG path.

    Returns:
        The written path.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    epochs = [r["epoch"] for r in rows]

    def series(key: str) -> tuple[list, list]:
        pairs = [(r["epoch"], r[key]) for r in rows if key in r and not math.isnan(r[key])]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    fig, axes = plt.subplots(3, 1, figsize=(9, 9), height_ratios=[3, 1, 1], sharex=True)
    ax = axes[0]
    ax.plot(*series("train_loss"), color="tab:blue", label="train loss")
    ax.plot(*series("val_loss"), color="tab:red", label="val loss")
    ax.set_ylabel("loss")
    dice_ax = ax.twinx()
    per_class = sorted(k for k in (rows[0] if rows else {}) if k.startswith("dice_"))
    for key in per_class:
        dice_ax.plot(*series(key), linestyle=":", marker=".", label=key.replace("_", " "))
    dice_ax.plot(*series("val_dice"), color="tab:green", marker="o", markersize=3,
                 label="val Dice (mean fg)")
    dice_ax.set_ylabel("Dice")
    dice_ax.set_ylim(0, 1)
    handles = ax.get_legend_handles_labels()[0] + dice_ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="center right", fontsize=8)
    axes[1].plot(*series("lr"), color="black")
    axes[1].set_ylabel("learning rate")
    axes[2].plot(*series("seconds"), color="gray", marker=".")
    axes[2].set_ylabel("s / epoch")
    axes[2].set_xlabel("epoch")
    if epochs:
        axes[2].set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path
