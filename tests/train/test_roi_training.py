"""Training inside regions of interest: ignore label in the masks and the loss, the sampler,
validation and threshold calibration count only pixels inside."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit.config import load_config
from unetkit.data.roi import ROI_IGNORE
from unetkit.infer.calibration import calibrate_checkpoint, calibrate_threshold
from unetkit.infer.decision import foreground_probability
from unetkit.metrics import case_metrics
from unetkit.metrics.threshold import best_threshold
from unetkit.runtime.checkpoint import build_model_from_config, load_checkpoint
from unetkit.runtime.device import resolve_precision
from unetkit.runtime.distributed import DistInfo
from unetkit.train import builders
from unetkit.train.data import DataError, prepare_data
from unetkit.train.fit import fit
from unetkit.train.validation import live_predictor, validate

INSIDE = np.zeros((32, 32), bool)
INSIDE[:, :22] = True  # the region of interest: the left 22 columns


def write_roi(root, folder="roi"):
    """A region of interest for every case of a ``disks`` data set, plus a bright disk in each
    mask and image outside it (foreground that must not count)."""
    (root / folder).mkdir()
    for path in sorted((root / "masks").iterdir()):
        Image.fromarray((INSIDE * 255).astype(np.uint8)).save(root / folder / path.name)
    return root


def paint_outside(root, value=255):
    """Foreground in every mask's outside strip (images unchanged)."""
    for path in sorted((root / "masks").iterdir()):
        mask = np.array(Image.open(path))
        mask[10:20, 24:30] = value
        Image.fromarray(mask).save(path)


def test_training_masks_ignore_outside_and_config_records_it(tmp_path, disks, tiny_config):
    root = write_roi(disks(tmp_path / "data", n_cases=4))
    config = tiny_config("data.val_fraction=0.25")
    data = prepare_data(config, root)
    assert data.ignore_index == ROI_IGNORE
    for mask in data.train_masks + data.val_masks:
        assert np.all(mask[~INSIDE] == ROI_IGNORE)
        assert set(np.unique(mask[INSIDE]).tolist()) <= {0, 1}
    assert data.labels == {0: "background", 1: "class1"}  # 255 is no class
    resolved = builders.resolve_data_config(config, data)
    assert resolved.train.loss.ignore_index == ROI_IGNORE
    sampler = builders.build_sampler(resolved, data, DistInfo())
    assert all(set(locations) == {1} for locations in sampler.locations if locations)
    for _ in range(3):  # foreground patches are centred on foreground, never on the outside
        _, masks = sampler.sample_batch(np.random.default_rng(_))
        assert set(torch.unique(masks).tolist()) <= {0, 1, ROI_IGNORE}
    # foreground drawn outside the region changes nothing that training sees
    paint_outside(root)
    again = prepare_data(config, root)
    for a, b in zip(data.train_masks + data.val_masks, again.train_masks + again.val_masks,
                    strict=True):
        assert np.array_equal(a, b)


def test_a_conflicting_ignore_index_is_refused(tmp_path, disks, tiny_config):
    root = write_roi(disks(tmp_path / "data", n_cases=3))
    data = prepare_data(tiny_config(), root)
    same = builders.resolve_data_config(tiny_config("train.loss.ignore_index=255"), data)
    assert same.train.loss.ignore_index == 255
    with pytest.raises(ValueError, match="ignore_index 3 conflicts with the regions of interest"):
        fit(tiny_config("train.loss.ignore_index=3"), root, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides", [("train.loss.name=dice_ce",),
                                       ("train.loss.name=dice_bce",),
                                       ("model.deep_supervision=true",)])
def test_the_loss_ignores_outside_pixels(overrides, tiny_config):
    config = tiny_config("model.out_channels=2" if "dice_bce" not in overrides[0]
                         else "model.out_channels=1", "train.loss.ignore_index=255", *overrides)
    loss_fn = builders.build_loss_fn(config)
    model = build_model_from_config(config)
    torch.manual_seed(0)
    x = torch.randn(2, 1, 32, 32)
    target = torch.zeros(2, 32, 32, dtype=torch.int64)
    target[:, 8:14, 4:12] = 1
    target[:, :, 22:] = ROI_IGNORE
    with torch.no_grad():
        outputs = model(x)
    loss = float(loss_fn(outputs, target))
    # other network outputs outside the region: the loss does not move
    changed = [o.clone() for o in outputs] if isinstance(outputs, list) else outputs.clone()
    for out in changed if isinstance(changed, list) else [changed]:
        columns = out.shape[-1] * 22 // 32
        out[..., columns + 1:] = 40.0 * torch.randn_like(out[..., columns + 1:])
    assert float(loss_fn(changed, target)) == pytest.approx(loss, rel=1e-6)
    # while a change inside does
    moved = outputs[0].clone() if isinstance(outputs, list) else outputs.clone()
    moved[:, 0, :, :4] += 5.0
    head = [moved, *outputs[1:]] if isinstance(outputs, list) else moved
    assert float(loss_fn(head, target)) != pytest.approx(loss, rel=1e-3)


def test_validation_and_calibration_count_only_inside(tmp_path, disks, tiny_config):
    root = write_roi(disks(tmp_path / "data", n_cases=3))
    paint_outside(root)
    config = tiny_config("data.val_fraction=0")
    data = prepare_data(config, root)
    config = builders.resolve_data_config(builders.resolve_model_config(config, data), data)
    torch.manual_seed(1)
    model = build_model_from_config(config).eval()
    device, plan = torch.device("cpu"), resolve_precision("fp32", "off", torch.device("cpu"))
    images, masks = data.train_images, data.train_masks
    metrics = validate(model, images, masks, builders.build_loss_fn(config), config, device,
                       plan, data.labels)
    predictor = live_predictor(model, config, data.labels, device, plan)
    expected, maps = [], []
    for image, mask in zip(images, masks, strict=True):
        logits = predictor.predict_logits(torch.from_numpy(image))
        maps.append(foreground_probability(logits).numpy())
        classes = predictor.postprocess(predictor.decide(logits))
        # pixels outside: background in both, neither true nor false positives
        expected.append(case_metrics(np.where(INSIDE, classes, 0), np.where(INSIDE, mask, 0),
                                     [1], metrics=("dice",))[1]["dice"])
    assert metrics["val_dice"] == pytest.approx(np.mean(expected))
    record = calibrate_threshold(predictor, images, masks, preprocessed=True,
                                 ignore_index=ROI_IGNORE)
    inside_only = best_threshold([m[INSIDE] for m in maps], [k[INSIDE] == 1 for k in masks])
    assert (record.threshold, record.score) == pytest.approx(inside_only[:2])
    outside_counted = best_threshold(maps, [k > 0 for k in masks])  # 255 taken as foreground
    assert record.score != pytest.approx(outside_counted[1])


@pytest.mark.slow
def test_a_run_trains_inside_the_roi_and_calibrates_there(tmp_path, disks, tiny_config):
    root = write_roi(disks(tmp_path / "data", n_cases=4), folder="fov")
    paint_outside(root)
    config = tiny_config("infer.threshold=auto", "model.deep_supervision=true",
                         "data.val_fraction=0")
    result = fit(config, root, tmp_path / "run")
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["config"]["train"]["loss"]["ignore_index"] == ROI_IGNORE
    assert best["labels"] == {0: "background", 1: "class1"}
    assert load_config(tmp_path / "run" / "config.yaml").train.loss.ignore_index == ROI_IGNORE
    assert result.calibration is not None and result.calibration["source"] == "training"
    assert all(np.isfinite(row["train_loss"]) for row in result.history)
    # `unetkit calibrate` on the folder finds fov/ and scores inside it, as training did
    again = calibrate_checkpoint(tmp_path / "run" / "best.pt", root, device="cpu")
    assert again.threshold == pytest.approx(result.calibration["threshold"])
    assert again.score == pytest.approx(result.calibration["score"], abs=1e-6)


def test_an_unreadable_roi_names_its_file(tmp_path, disks, tiny_config):
    root = write_roi(disks(tmp_path / "data", n_cases=3))
    Image.fromarray(np.ones((20, 20), np.uint8)).save(root / "roi" / "c1.png")
    with pytest.raises(DataError, match=r"c1.png: region of interest shape \(20, 20\)"):
        prepare_data(tiny_config(), root, check=False)
    with pytest.raises(DataError, match="c1.png"):
        prepare_data(tiny_config(), root)  # the doctor's error
