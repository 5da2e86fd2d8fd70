"""Training curves (``RUN/progress.png``), drawn from metrics.csv rows with Matplotlib (Agg).

Only curves with data are drawn and named in the legend; a run without validation says why in
the picture instead of showing an empty Dice axis (``no_validation_reason``). The file is
written atomically (``unetkit.runtime.atomic``: temporary file + rename, mode as the umask
allows), so a crash while drawing never leaves a half-written picture behind.
"""

from __future__ import annotations

import math
from os import PathLike
from pathlib import Path
from typing import Any

import matplotlib

from unetkit.runtime.atomic import atomic_path

matplotlib.use("Agg")


def no_validation_reason(data: Any, cases: int) -> str:
    """Why a run has no validation cases, for ``progress.png`` and the log.

    Args:
        data: the run's ``DataConfig`` (``split_file``, ``val_fraction``).
        cases: the number of cases in the data folder (all of them train).
    """
    if data.split_file is not None:
        why = f"the split file {Path(data.split_file).name} names no validation case"
    elif data.val_fraction <= 0:
        why = f"data.val_fraction is 0: all {cases} cases train"
    else:
        why = f"{cases} case(s): none to spare"
    return f"no validation ({why}); best.pt holds the last epoch's weights"


def _series(rows: list[dict], key: str) -> tuple[list, list]:
    """``(epochs, values)`` of the rows where ``key`` was measured (not NaN)."""
    pairs = [(r["epoch"], r[key]) for r in rows if key in r and not math.isnan(r[key])]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _draw_losses_and_dice(ax: Any, rows: list[dict], note: str | None) -> None:
    """Top panel: losses on the left axis, Dice on the right one when validation ran."""
    for key, colour, label in (("train_loss", "tab:blue", "train loss"),
                               ("val_loss", "tab:red", "val loss")):
        epochs, values = _series(rows, key)
        if epochs:
            ax.plot(epochs, values, color=colour, marker=".", markersize=4, label=label)
    ax.set_ylabel("loss")
    per_class = sorted(k for k in (rows[0] if rows else {}) if k.startswith("dice_"))
    dice = [(key, _series(rows, key)) for key in [*per_class, "val_dice"]]
    dice = [(key, series) for key, series in dice if series[0]]
    handles = ax.get_legend_handles_labels()[0]
    if dice:
        dice_ax = ax.twinx()
        for key, (epochs, values) in dice:
            if key == "val_dice":
                dice_ax.plot(epochs, values, color="tab:green", marker="o", markersize=3,
                             label="val Dice (mean fg)")
            else:
                dice_ax.plot(epochs, values, linestyle=":", marker=".",
                             label=key.replace("_", " "))
        dice_ax.set_ylabel("Dice")
        dice_ax.set_ylim(0, 1)
        handles += dice_ax.get_legend_handles_labels()[0]
    else:
        ax.set_title(note or "no validation in these epochs", fontsize=10, color="0.3")
    if handles:
        ax.legend(handles=handles, loc="center right", fontsize=8)


def training_figure(rows: list[dict], note: str | None = None) -> Any:
    """The Matplotlib figure of ``plot_training_curves`` (closed by the caller).

    Top panel: train and validation loss (left axis) and validation Dice per class and mean
    (right axis) per epoch, each only where it was measured; without any validation, ``note``
    (why: ``no_validation_reason``) as the panel's title instead of a Dice axis. Bottom
    panels: learning rate and seconds per epoch.
    """
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), height_ratios=[3, 1, 1], sharex=True)
    _draw_losses_and_dice(axes[0], rows, note)
    axes[1].plot(*_series(rows, "lr"), color="black", marker=".", markersize=3)
    axes[1].set_ylabel("learning rate")
    axes[2].plot(*_series(rows, "seconds"), color="gray", marker=".")
    axes[2].set_ylabel("s / epoch")
    axes[2].set_xlabel("epoch")
    if epochs:
        axes[2].set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    fig.tight_layout()
    return fig


def plot_training_curves(rows: list[dict], path: str | PathLike,
                         note: str | None = None) -> PathLike:
    """Draw nnU-Net-style progress curves (``training_figure``) and save them as a PNG.

    Args:
        rows: dicts with ``epoch``, ``train_loss``, ``val_loss``, ``val_dice``, ``dice_<name>``,
            ``lr``, ``seconds`` (NaN where not measured), as ``read_metrics`` returns.
        path: output PNG path.
        note: the reason there is no validation, shown when no row has a Dice.

    Returns:
        The written path.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    fig = training_figure(rows, note)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path
