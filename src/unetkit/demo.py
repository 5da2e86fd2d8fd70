"""``unetkit demo``: synthetic cells -> a trained U-Net -> predictions -> evaluation, in minutes.

The demo writes the synthetic 2D "cells" data set (EM-like membranes, exact ground truth), trains a
small U-Net on it to a time budget (about 2 minutes on 2 CPU cores), predicts held-out images with
the best checkpoint, evaluates them and writes into the output folder::

    OUT/data/{train,test}/     the generated data sets
    OUT/run/                   the training run (config, metrics.csv, checkpoints, log)
    OUT/predictions/           predicted masks of the held-out images
    OUT/evaluation/            per-case CSV, summary.json and report.html (unetkit.evaluate)
    OUT/overlays.png           held-out images: prediction, ground-truth outline, error map,
                               legend, each captioned with the case and its Dice
    OUT/curves.png             training curves
    OUT/summary.json           the headline numbers and where everything is
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.config import Config, apply_overrides
from unetkit.runtime.atomic import write_atomic, write_text
from unetkit.runtime.outputs import check_folder, refuse_existing

log = logging.getLogger(__name__)

# A small, fast U-Net for the 256x256 membrane task: bf16 + channels-last where the CPU has fast
# bf16, batch norm, Dice + CE, poly schedule planned to the time budget.
DEMO_OVERRIDES = [
    "model.base_width=16", "model.depth=4", "model.norm=batch",
    "data.patch_size=[128, 128]", "data.batch_size=8", "data.val_fraction=0.125",
    "data.foreground_fraction=0.0",
    "data.augment.affine_prob=0.0", "data.augment.elastic_prob=0.0",
    "data.augment.lowres_prob=0.0", "data.augment.blur_prob=0.0",
    "train.optimizer=adamw", "train.lr=0.003", "train.weight_decay=0.0001",
    "train.schedule=poly", "train.steps_per_epoch=20", "train.val_every=2",
    "train.epochs=1000", "infer.window=[256, 256]",
]
# What the demo writes into its folder (replaced only with force=True).
DEMO_OUTPUTS = ("data", "run", "predictions", "evaluation", "overlays.png", "curves.png",
                "summary.json")
# The reduced variant used by the tests: tiny images, a tiny network, a few steps.
QUICK_OVERRIDES = [
    "model.base_width=4", "model.depth=2", "data.patch_size=[32, 32]", "data.batch_size=2",
    "train.steps_per_epoch=3", "train.epochs=2", "train.val_every=1", "infer.window=null",
    "train.precision=fp32", "data.val_fraction=0.34",
]


@dataclass
class DemoResult:
    """Where the demo wrote its outputs and how well the network did."""

    out_dir: Path
    dice: float
    summary: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


def demo_config(time_budget: str | None = "2m", quick: bool = False) -> Config:
    """The demo's config: ``DEMO_OVERRIDES`` with the time budget, or the quick variant.

    The quick variant runs its fixed ``train.epochs`` (a time budget would plan more epochs).
    """
    overrides = DEMO_OVERRIDES + (QUICK_OVERRIDES if quick else [])
    config = apply_overrides(Config(), overrides)
    if time_budget is not None:  # validated in both variants
        timed = apply_overrides(config, [f"train.time_budget={time_budget}"])
        config = config if quick else timed
    return config


def claim_demo_folder(out: Path, force: bool = False) -> None:
    """The output rule for the demo (``unetkit.runtime.outputs``): ``out`` a writable folder,
    holding none of ``DEMO_OUTPUTS`` (an earlier demo's work) unless ``force``; with ``force``
    those entries, and nothing else, are removed (a symbolic link is removed, not followed).

    Raises:
        OutputError: one line naming ``--out`` (nothing removed or written).
    """
    check_folder(out, "--out")
    found = [out / name for name in DEMO_OUTPUTS if (out / name).exists()
             or (out / name).is_symlink()]
    refuse_existing(found, "--out", force)
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def overlay_montage(tiles: list[dict[str, Any]], path: Path, columns: int = 2) -> Path:
    """Overlay pictures (``unetkit.report.overlay_picture``: prediction and ground truth, the
    error map, a legend and a caption with the case name and its Dice) in a grid, as one PNG.

    Args:
        tiles: dicts with ``name``, ``image`` ``(C, H, W)``, ``pred``, ``gt`` and optionally
            ``dice`` (default: computed) and ``names`` (``{label: name}``).
        path: the PNG to write.
        columns: tiles per row.
    """
    from PIL import Image

    from unetkit.report import overlay_picture

    pictures = [overlay_picture(t["image"], t["pred"], t["gt"], title=t["name"],
                                dice=t.get("dice"), names=t.get("names")) for t in tiles]
    height = max(p.shape[0] for p in pictures)
    width = max(p.shape[1] for p in pictures)
    rows = -(-len(pictures) // columns)
    canvas = np.full((rows * height, min(columns, len(pictures)) * width, 3), 255, np.uint8)
    for index, picture in enumerate(pictures):
        top, left = (index // columns) * height, (index % columns) * width
        canvas[top:top + picture.shape[0], left:left + picture.shape[1]] = picture
    Image.fromarray(canvas).save(path)
    return path


def run_demo(
    out_dir: str | Path = "demo_output",
    time_budget: str | None = "2m",
    *,
    n_train: int = 32,
    n_test: int = 6,
    size: int = 256,
    quick: bool = False,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    force: bool = False,
) -> DemoResult:
    """Generate data, train, predict held-out images, evaluate; see the module docstring.

    The budget and ``out_dir`` are checked before anything is written (``claim_demo_folder``).

    Args:
        out_dir: output folder (created); an earlier demo's outputs in it are refused, or
            replaced with ``force``.
        time_budget: training budget such as ``"2m"``; None trains ``train.epochs`` epochs.
        n_train: synthetic training cases (a validation share is held out of them).
        n_test: synthetic held-out cases, predicted and evaluated.
        size: image side in pixels.
        quick: the reduced variant (tiny network, a few steps) used by the tests.
        on_step: progress callback passed to ``fit``.
        force: replace an earlier demo's outputs in ``out_dir``.

    Returns:
        A ``DemoResult`` with the mean foreground Dice on the held-out images.
    """
    from unetkit.data.io import read_image, read_mask, split_suffix
    from unetkit.data.synthetic import write_cells_dataset
    from unetkit.evaluate import case_score, evaluate_folders
    from unetkit.infer.files import collect_inputs, predict_files
    from unetkit.infer.predictor import Predictor
    from unetkit.report import write_html_report
    from unetkit.train.fit import fit

    out = Path(out_dir)
    config = demo_config(time_budget, quick)  # an invalid budget fails before any change
    claim_demo_folder(out, force)
    train_dir = write_cells_dataset(out / "data" / "train", n_train, (size, size), seed=0)
    test_dir = write_cells_dataset(out / "data" / "test", n_test, (size, size), seed=1)
    result = fit(config, train_dir, out / "run", on_step=on_step)

    predictor = Predictor.from_checkpoint(out / "run" / "best.pt")
    images = collect_inputs([test_dir / "images"])
    batch = predict_files(predictor, images, out / "predictions")
    if batch.failed:
        raise RuntimeError(f"demo: prediction failed for {batch.failed}")
    foreground = {k: v for k, v in predictor.labels.items() if k != 0}
    evaluation = evaluate_folders(out / "predictions", test_dir / "masks", out / "evaluation",
                                  labels=foreground, images_dir=test_dir / "images",
                                  report=write_html_report)
    dice = float(evaluation.summary["foreground_mean"]["dice"])

    tiles = []
    for path in images[:4]:
        name = split_suffix(path)[0]
        tiles.append({"name": name, "image": read_image(path)[0],
                      "pred": read_mask(out / "predictions" / path.name)[0],
                      "gt": read_mask(test_dir / "masks" / path.name)[0],
                      "dice": case_score(evaluation, name) if name in evaluation.per_case
                      else None, "names": evaluation.labels})
    files = {
        "overlays": write_atomic(out / "overlays.png",
                                 lambda tmp: overlay_montage(tiles, tmp)),
        "curves": write_atomic(out / "curves.png",
                               lambda tmp: shutil.copyfile(out / "run" / "progress.png", tmp)),
        "report": evaluation.files.get("html", out / "evaluation"),
        "checkpoint": out / "run" / "best.pt",
    }
    summary = {
        "held_out_cases": len(images),
        "mean_foreground_dice": dice,
        "per_class_dice": {evaluation.labels.get(k, str(k)): v["dice"]["mean"]
                           for k, v in evaluation.summary["per_class"].items()},
        "best_val_dice": result.best_metric,
        "epochs": result.epochs, "steps": result.steps, "stopped": result.stopped,
        "train_seconds": sum(row["seconds"] for row in result.history),
        "files": {k: str(v) for k, v in files.items()},
    }
    files["summary"] = out / "summary.json"
    write_text(out / "summary.json", json.dumps(_json_safe(summary), indent=2))
    log.info("demo: mean foreground Dice %.4f on %d held-out images", dice, len(images))
    return DemoResult(out, dice, summary, files)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
