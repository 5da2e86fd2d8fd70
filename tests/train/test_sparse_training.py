"""Sparse annotations through training, validation, calibration, prediction and evaluation:
an ignored pixel changes no gradient, no loss, no metric and no threshold, and is never
predicted."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest
import torch
from PIL import Image
from tests.train.sparse import write_sparse
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.config.run_schema import BINARY_LOSSES, LossConfig
from unetkit.data.ignore import IGNORE
from unetkit.evaluate import evaluate_folders
from unetkit.infer.calibration import calibrate_threshold
from unetkit.losses import build_loss
from unetkit.runtime.checkpoint import build_model_from_config, load_checkpoint
from unetkit.runtime.device import resolve_precision
from unetkit.train import builders
from unetkit.train.data import prepare_data
from unetkit.train.fit import fit
from unetkit.train.validation import validate

LOSSES = get_args(LossConfig.model_fields["name"].annotation)
runner = CliRunner()


def ignored_target(channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(target (2, 12, 10) with IGNORE on the right half and one more pixel, ignored)``."""
    torch.manual_seed(0)
    target = torch.randint(0, max(channels, 2), (2, 12, 10))
    ignored = torch.zeros(12, 10, dtype=torch.bool)
    ignored[:, 6:] = True
    ignored[2, 1] = True
    target[:, ignored] = IGNORE
    return target, ignored


@pytest.mark.parametrize("name", LOSSES)
def test_an_ignored_pixel_changes_no_gradient_and_no_loss(name):
    channels = 1 if name in BINARY_LOSSES else 3
    loss_fn = build_loss(LossConfig(name=name, ignore_index=IGNORE), channels)
    target, ignored = ignored_target(channels)
    logits = (3 * torch.randn(2, channels, 12, 10)).requires_grad_()
    loss = loss_fn(logits, target)
    loss.backward()
    value = float(loss.detach())
    assert torch.count_nonzero(logits.grad[:, :, ignored]) == 0  # exactly zero there
    assert torch.count_nonzero(logits.grad[:, :, ~ignored]) > 0
    changed = logits.detach().clone()
    changed[:, :, ignored] = 40 * torch.randn_like(changed[:, :, ignored])
    assert float(loss_fn(changed, target)) == value
    if not name.startswith("cldice"):  # pixel-wise losses: as if the pixels did not exist
        kept = float(loss_fn(logits.detach()[:, :, ~ignored], target[:, ~ignored]))
        assert kept == pytest.approx(value, rel=1e-6)


def test_training_masks_carry_the_ignore_label_and_it_is_no_class(tmp_path, tiny_config):
    root, dense, ignored = write_sparse(tmp_path / "d", n_cases=4, ignore=2)
    data = prepare_data(tiny_config("data.val_fraction=0.25"), root)
    assert data.labels == {0: "background", 1: "disk"} and data.ignore_index == IGNORE
    assert data.mask_values == {0: 0, 1: 1}  # predictions are written without the ignore value
    for cid, mask in zip(data.train_ids + data.val_ids, data.train_masks + data.val_masks,
                         strict=True):
        i = int(cid[1:])
        assert np.array_equal(mask == IGNORE, ignored[i])
        assert np.array_equal(mask[~ignored[i]], dense[i][~ignored[i]])
    config = builders.resolve_data_config(tiny_config(), data)
    assert config.train.loss.ignore_index == IGNORE
    plain, *_ = write_sparse(tmp_path / "p", n_cases=4, ignore=9, nnunet=False)
    png = prepare_data(tiny_config("data.ignore_label=9"), plain)
    assert sorted(png.labels) == [0, 1] and png.ignore_index == IGNORE
    assert all(np.array_equal(a, b) for a, b in zip(png.train_masks, data.train_masks,
                                                    strict=True))


def constant_model(config, foreground: bool):
    """The tiny network with a head that predicts foreground (or background) everywhere."""
    torch.manual_seed(0)
    model = build_model_from_config(config).eval()
    with torch.no_grad():
        model.head.main.weight.zero_()
        model.head.main.bias.copy_(torch.tensor([0.0, 5.0] if foreground else [5.0, 0.0]))
    return model


def test_validation_dice_counts_only_labelled_pixels(tmp_path, tiny_config):
    root, dense, ignored = write_sparse(tmp_path / "d", n_cases=3, ignore=2)
    config = tiny_config("data.val_fraction=0", "model.out_channels=2")
    data = prepare_data(config, root)
    config = builders.resolve_data_config(builders.resolve_model_config(config, data), data)
    model = constant_model(config, foreground=True)
    device, plan = torch.device("cpu"), resolve_precision("fp32", "off", torch.device("cpu"))
    metrics = validate(model, data.train_images, data.train_masks,
                       builders.build_loss_fn(config), config, device, plan, data.labels)
    # everything predicted foreground: Dice = 2 F / (L + F) over the L labelled pixels, F of
    # them foreground (hand-computed from the masks as written)
    expected = []
    for mask, region in zip(dense, ignored, strict=True):
        labelled, foreground = int((~region).sum()), int((mask[~region] == 1).sum())
        expected.append(2 * foreground / (labelled + foreground))
    assert metrics["dice_1"] == pytest.approx(np.mean(expected))
    everything = [2 * m.sum() / (m.size + m.sum()) for m in dense]  # ignored pixels counted
    assert metrics["dice_1"] != pytest.approx(np.mean(everything), abs=1e-3)


class FixedLogits:
    """A stand-in predictor whose logits are given (``calibrate_threshold`` asks no more)."""

    labels = {0: "background", 1: "foreground"}
    region_order = None  # a label model (a region model has no threshold to calibrate)

    def __init__(self, probabilities: np.ndarray) -> None:
        p = torch.as_tensor(probabilities, dtype=torch.float32)
        self.logits = torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))])

    def predict_logits(self, image):  # noqa: ANN001, ANN201
        return self.logits


def test_calibration_ignores_them():
    probabilities = np.array([[0.9, 0.8, 0.6, 0.3, 0.2, 0.95]])
    mask = np.array([[1, 1, 0, 0, IGNORE, IGNORE]])
    record = calibrate_threshold(FixedLogits(probabilities), [np.zeros((1, 1, 6))], [mask],
                                 preprocessed=True, ignore_index=IGNORE)
    # on the four labelled pixels a threshold in (0.6, 0.8] separates them: F1 = 1
    assert record.score == pytest.approx(1.0) and 0.6 < record.threshold <= 0.8
    counted = calibrate_threshold(FixedLogits(probabilities), [np.zeros((1, 1, 6))], [mask],
                                  preprocessed=True)  # IGNORE taken as foreground
    assert counted.score < 0.9


@pytest.mark.slow
def test_a_sparse_run_trains_predicts_and_evaluates_without_the_ignore_label(tmp_path,
                                                                            tiny_config):
    root, dense, ignored = write_sparse(tmp_path / "d", n_cases=4, ignore=2)
    result = fit(tiny_config("data.val_fraction=0.25", "infer.threshold=auto"), root,
                 tmp_path / "run")
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["labels"] == {0: "background", 1: "disk"}
    assert best["config"]["train"]["loss"]["ignore_index"] == IGNORE
    assert result.calibration is not None
    out = tmp_path / "pred"
    predicted = runner.invoke(app, ["predict", str(tmp_path / "run" / "best.pt"),
                                    str(root / "imagesTr"), "-o", str(out), "--quiet"])
    assert predicted.exit_code == 0, predicted.output
    for path in sorted(out.glob("*.png")):
        assert set(np.unique(np.asarray(Image.open(path))).tolist()) <= {0, 1}
    # evaluate finds dataset.json's ignore label next to labelsTr and scores labelled pixels
    scored = evaluate_folders(out, root / "labelsTr")
    assert sorted(scored.labels) == [1] and scored.summary["ignore_label"] == 2
    for i in range(4):
        pred = np.asarray(Image.open(out / f"c{i}.png")).astype(np.int64)
        keep = ~ignored[i]
        tp = int(((pred == 1) & (dense[i] == 1) & keep).sum())
        fp = int(((pred == 1) & (dense[i] == 0) & keep).sum())
        fn = int(((pred == 0) & (dense[i] == 1) & keep).sum())
        assert scored.per_case[f"c{i}"][1]["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))


def test_ignore_255_survives_masks_that_read_as_0_255(tmp_path, tiny_config):
    from unetkit.data.doctor import check_dataset

    root, dense, ignored = write_sparse(tmp_path / "d", n_cases=3, ignore=255, nnunet=False)
    only = np.where(ignored[1], 255, 0).astype(np.uint8)  # background strokes and ignore only
    Image.fromarray(only).save(root / "masks" / "c1.png")  # a 0/255 file: read as 0/1 alone
    data = prepare_data(tiny_config("data.ignore_label=255", "data.val_fraction=0"), root)
    mask = data.train_masks[data.train_ids.index("c1")]
    assert np.array_equal(mask == IGNORE, ignored[1]) and set(np.unique(mask)) == {0, IGNORE}
    report = check_dataset(root, ignore_label=255)
    assert report.summary["labelled"]["c1"] == pytest.approx(1 - ignored[1].mean())
