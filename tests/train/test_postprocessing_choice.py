"""``infer.postprocess.keep_largest: auto``: each validation also scores the largest component
per class; the end of the run keeps it in ``best.pt`` only when it raised the best epoch's Dice,
and ``unetkit predict`` + ``evaluate`` then give exactly the Dice the choice was made on."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.config import apply_overrides
from unetkit.losses import build_loss
from unetkit.runtime.checkpoint import load_checkpoint
from unetkit.runtime.device import resolve_precision
from unetkit.train.fit import fit
from unetkit.train.postprocessing import keep_largest_choice
from unetkit.train.validation import validate

runner = CliRunner()
VAL = ["c3", "c4"]


def test_the_choice_keeps_the_clean_up_only_when_it_raises_the_dice():
    assert keep_largest_choice({"val_dice": 0.80, "val_dice_largest": 0.81})["keep_largest"]
    assert not keep_largest_choice({"val_dice": 0.80, "val_dice_largest": 0.80})["keep_largest"]
    assert not keep_largest_choice({"val_dice": 0.80, "val_dice_largest": 0.7})["keep_largest"]
    missing = keep_largest_choice({"val_dice": math.nan})
    assert not missing["keep_largest"] and "no validation Dice" in missing["reason"]


class Thresholding(torch.nn.Module):
    """Two-class logits that say 'foreground' wherever the image is bright."""

    out_channels = 2

    def forward(self, x):
        return torch.cat([-(x[:, :1] - 0.5), x[:, :1] - 0.5], dim=1) * 20


def test_validation_scores_the_largest_component_beside_the_map(tiny_config):
    image = np.zeros((1, 32, 32), np.float32)
    image[0, 4:9, 4:9] = 1.0  # the structure, 25 pixels
    image[0, 20:22, 20:22] = 1.0  # a 4-pixel false positive
    mask = (image[0] > 0).astype(np.int64)
    mask[20:22, 20:22] = 0
    config = tiny_config("infer.postprocess.keep_largest=auto", "infer.tta_axes=[]")
    cpu = torch.device("cpu")
    fp32 = resolve_precision("fp32", "off", cpu)
    metrics = validate(Thresholding(), [image], [mask], build_loss(config.train.loss, 2),
                       config, cpu, fp32)
    assert metrics["val_dice"] == pytest.approx(2 * 25 / (29 + 25))
    assert metrics["val_dice_largest"] == pytest.approx(1.0)
    plain = validate(Thresholding(), [image], [mask], build_loss(config.train.loss, 2),
                     apply_overrides(config, ["infer.postprocess.keep_largest=false"]),
                     cpu, fp32)
    assert "val_dice_largest" not in plain


@pytest.mark.slow
def test_the_run_stores_the_choice_and_predict_reproduces_its_dice(tmp_path, disks, tiny_config,
                                                                   precision):
    data = disks(tmp_path / "data", n_cases=5, size=44, seed=3)
    split = tmp_path / "split.yaml"
    split.write_text(yaml.safe_dump({"train": ["c0", "c1", "c2"], "val": VAL}))
    config = tiny_config(f"data.split_file={split}", "model.base_width=8", "train.epochs=3",
                         "train.steps_per_epoch=6", "infer.postprocess.keep_largest=auto",
                         *precision.overrides)
    result = fit(config, data, tmp_path / "run")
    record = result.postprocessing
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["postprocessing"] == record
    assert record["keep_largest"] == (record["val_dice_largest"] > record["val_dice"])
    assert best["config"]["infer"]["postprocess"]["keep_largest"] is record["keep_largest"]
    assert record["val_dice"] == pytest.approx(result.best_metric)
    assert json.loads((tmp_path / "run" / "postprocessing.json").read_text()) == record

    for folder in ("images", "masks"):
        (tmp_path / "val" / folder).mkdir(parents=True)
        for case in VAL:
            shutil.copy(data / folder / f"{case}.png", tmp_path / "val" / folder / f"{case}.png")
    for flag, expected in ((["--keep-largest"], record["val_dice_largest"]),
                           ([], record["val_dice_largest"] if record["keep_largest"]
                            else record["val_dice"])):
        out = tmp_path / f"pred{len(flag)}"
        done = runner.invoke(app, ["predict", str(tmp_path / "run" / "best.pt"),
                                   str(tmp_path / "val" / "images"), "-o", str(out), "-q", *flag])
        assert done.exit_code == 0, done.output
        evaluated = runner.invoke(app, ["evaluate", str(out), str(tmp_path / "val" / "masks")])
        assert evaluated.exit_code == 0, evaluated.output
        summary = json.loads((out / "evaluation" / "summary.json").read_text())
        assert summary["per_class"]["1"]["dice"]["mean"] == pytest.approx(expected, abs=1e-9)
