"""Overlapping regions with sparse annotations: a data set whose dataset.json declares nnU-Net's
regions and its "ignore" label trains with the ignored pixels in no region's loss and no
region's validation Dice, predicts no ignore value and is evaluated on the labelled pixels; the
ignore label is never a region; the doctor and the planner's fingerprint read both."""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.config import Config, apply_overrides
from unetkit.data.doctor import check_dataset
from unetkit.data.ignore import IGNORE
from unetkit.data.synthetic_regions import NESTED_LABELS, write_nested_dataset
from unetkit.evaluate import evaluate_folders
from unetkit.metrics.regions import region_masks
from unetkit.plan.fingerprint import fingerprint_dataset
from unetkit.runtime.checkpoint import build_model_from_config, load_checkpoint
from unetkit.runtime.device import resolve_precision
from unetkit.train import builders
from unetkit.train.data import DataError, prepare_data
from unetkit.train.fit import fit
from unetkit.train.validation import case_dice, validate

BRATS = [[1, 2, 3], [2, 3], [3]]
NAMES = ["whole_tumor", "tumor_core", "enhancing_tumor"]
LABELS = {0: "background", 1: "whole_tumor", 2: "tumor_core", 3: "enhancing_tumor"}
UNLABELLED = 4  # dataset.json's "ignore", the highest value


def ignored_region(shape: tuple[int, int], case: int) -> np.ndarray:
    """The unlabelled pixels of case ``case``: the right third of the columns and a band of
    rows through the middle that moves with the case (through every nested object)."""
    ignored = np.zeros(shape, bool)
    ignored[:, 2 * shape[1] // 3:] = True
    ignored[shape[0] // 2 - 2 + case:shape[0] // 2 + 1 + case, :] = True
    return ignored


def write_nested_ignore(root, n_cases: int = 3, shape: tuple[int, int] = (32, 32)):
    """Nested regions (``write_nested_dataset``) whose masks hold ``UNLABELLED`` on
    ``ignored_region`` and whose dataset.json names it ``ignore``.

    Returns:
        ``(root, dense masks, ignored pixels)``, one per case ``nested_NNN``.
    """
    root = write_nested_dataset(root, n_cases, shape, labels={**NESTED_LABELS, "ignore": 4})
    dense, ignored = [], []
    for i in range(n_cases):
        path = root / "labelsTr" / f"nested_{i:03d}.nii.gz"
        stored = nib.load(path)
        mask = np.asarray(stored.dataobj).astype(np.uint8)
        region = ignored_region(shape, i)
        assert mask[region].any() and mask[~region].any()  # labels on both sides
        nib.save(nib.Nifti1Image(np.where(region, UNLABELLED, mask).astype(np.uint8),
                                 stored.affine), path)
        dense.append(mask.astype(np.int64))
        ignored.append(region)
    return root, dense, ignored


def region_dice(pred: np.ndarray, truth: np.ndarray, keep: np.ndarray) -> list[float]:
    """Hand-computed Dice of each BraTS region on the ``keep`` pixels (NaN if in neither)."""
    out = []
    for p, g in zip(region_masks(pred, BRATS), region_masks(truth, BRATS), strict=True):
        p, g = p & keep, g & keep
        total = int(p.sum() + g.sum())
        out.append(2 * int((p & g).sum()) / total if total else float("nan"))
    return out


def test_training_masks_mark_ignored_pixels_and_every_region_loss_leaves_them_out(
        tmp_path, tiny_config) -> None:
    root, dense, ignored = write_nested_ignore(tmp_path / "d")
    config = tiny_config("data.val_fraction=0")
    data = prepare_data(config, root)
    assert data.labels == LABELS  # the ignore label is no class, and never a region
    assert [r.labels for r in data.regions] == BRATS and data.ignore_index == IGNORE
    for cid, mask in zip(data.train_ids, data.train_masks, strict=True):
        i = int(cid[-3:])
        assert np.array_equal(mask == IGNORE, ignored[i])
        assert np.array_equal(mask[~ignored[i]], dense[i][~ignored[i]])
    config = builders.resolve_data_config(builders.resolve_model_config(config, data), data)
    assert config.train.loss.ignore_index == IGNORE and config.model.out_channels == 3
    loss_fn = builders.build_loss_fn(config)
    mask = torch.from_numpy(data.train_masks[0])[None]
    keep = mask[0] != IGNORE
    torch.manual_seed(0)
    logits = (3 * torch.randn(1, 3, *mask.shape[1:])).requires_grad_()
    loss = loss_fn(logits, mask)
    loss.backward()
    assert torch.count_nonzero(logits.grad[:, :, ~keep]) == 0  # no region moves there
    assert all(torch.count_nonzero(logits.grad[:, r, keep]) > 0 for r in range(3))
    changed = logits.detach().clone()
    changed[:, :, ~keep] = 40 * torch.randn_like(changed[:, :, ~keep])
    assert float(loss_fn(changed, mask)) == float(loss.detach())
    # as if the ignored pixels did not exist: the loss of the labelled pixels alone
    alone = loss_fn(logits.detach()[:, :, keep], mask[:, keep])
    assert float(alone) == pytest.approx(float(loss.detach()), rel=1e-6)


def test_region_validation_dice_counts_only_labelled_pixels(tmp_path, tiny_config) -> None:
    root, dense, ignored = write_nested_ignore(tmp_path / "d")
    config = tiny_config("data.val_fraction=0")
    data = prepare_data(config, root)
    config = builders.resolve_data_config(builders.resolve_model_config(config, data), data)
    torch.manual_seed(0)
    model = build_model_from_config(config).eval()
    with torch.no_grad():  # whole tumour everywhere, tumour core and enhancing tumour nowhere
        model.head.main.weight.zero_()
        model.head.main.bias.copy_(torch.tensor([5.0, -5.0, -5.0]))
    device, plan = torch.device("cpu"), resolve_precision("fp32", "off", torch.device("cpu"))
    metrics = validate(model, data.train_images, data.train_masks,
                       builders.build_loss_fn(config), config, device, plan, data.labels)
    cases = [int(cid[-3:]) for cid in data.train_ids]
    painted = np.ones_like(dense[0])  # the whole tumour's label everywhere
    expected = np.array([region_dice(painted, dense[i], ~ignored[i]) for i in cases])
    assert [metrics[f"dice_{k}"] for k in (1, 2, 3)] == pytest.approx(
        list(np.nanmean(expected, axis=0)))
    assert metrics["dice_2"] == 0.0  # a region with labelled truth and no prediction
    counted = np.mean([region_dice(painted, dense[i], np.ones_like(ignored[i]))[0]
                       for i in cases])  # the ignored pixels counted as labelled
    assert metrics["dice_1"] != pytest.approx(counted, abs=1e-3)


def test_an_ignored_pixel_is_off_in_every_region_even_one_holding_the_background() -> None:
    config = apply_overrides(Config(), ["data.regions={field: [0, 1], core: [2]}",
                                        "data.regions_class_order=[1, 2]",
                                        f"train.loss.ignore_index={IGNORE}"])
    mask = np.array([[0, 1, 2, IGNORE], [0, 0, IGNORE, IGNORE]])
    decided = np.array([[1, 1, 2, 0], [2, 0, 0, 2]])  # wrong on every ignored pixel
    # field {0, 1} on the 5 labelled pixels: truth 4, predicted 3, overlap 3; core {2}: 1, 2, 1
    scores = case_dice(decided, mask, config, [1, 2])
    assert scores[1]["dice"] == pytest.approx(2 * 3 / 7)
    assert scores[2]["dice"] == pytest.approx(2 * 1 / 3)


@pytest.mark.slow
def test_a_region_run_with_an_ignore_label_predicts_and_evaluates_labelled_pixels(
        tmp_path, tiny_config) -> None:
    root, dense, ignored = write_nested_ignore(tmp_path / "d", n_cases=4)
    split = tmp_path / "split.yaml"
    split.write_text(yaml.safe_dump({"train": ["nested_000", "nested_001", "nested_002"],
                                     "val": ["nested_003"]}))
    result = fit(tiny_config("train.epochs=1", "train.steps_per_epoch=3",
                             f"data.split_file={split}"), root, tmp_path / "run")
    assert {f"dice_{n}" for n in NAMES} <= set(result.history[-1])
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["labels"] == LABELS and best["config"]["model"]["out_channels"] == 3
    assert best["config"]["train"]["loss"]["ignore_index"] == IGNORE
    assert [r["labels"] for r in best["config"]["data"]["regions"]] == BRATS
    out = tmp_path / "pred"
    done = CliRunner().invoke(app, ["predict", str(tmp_path / "run" / "best.pt"),
                                    str(root / "imagesTr"), "-o", str(out), "--quiet"])
    assert done.exit_code == 0, done.output
    scored = evaluate_folders(out, root / "labelsTr")  # regions and ignore from dataset.json
    assert scored.labels == dict(enumerate(NAMES, start=1))
    assert scored.summary["ignore_label"] == UNLABELLED
    for i in range(4):
        pred = np.asarray(nib.load(out / f"nested_{i:03d}.nii.gz").dataobj).astype(np.int64)
        assert set(np.unique(pred).tolist()) <= {0, 1, 2, 3}  # never the ignore value
        hand = region_dice(pred, dense[i], ~ignored[i])
        got = [scored.per_case[f"nested_{i:03d}"][k]["dice"] for k in (1, 2, 3)]
        assert got == pytest.approx(hand, nan_ok=True)


def test_the_doctor_and_the_fingerprint_read_regions_and_the_ignore_label(tmp_path) -> None:
    root, dense, ignored = write_nested_ignore(tmp_path / "d")
    report = check_dataset(root)
    assert report.ok, report.errors
    assert report.summary["ignore_label"] == UNLABELLED
    assert report.summary["labelled"]["nested_000"] == pytest.approx(1 - ignored[0].mean())
    assert [r["name"] for r in report.summary["regions"]] == NAMES
    assert sorted(report.summary["class_frequencies"]) == [0, 1, 2, 3]  # labelled pixels only
    fp = fingerprint_dataset(root)
    assert fp.labels == LABELS and sorted(fp.label_fractions) == [0, 1, 2, 3]
    assert fp.regions[0] == {"name": "whole_tumor", "labels": [1, 2, 3]}
    labelled = sum(int((~m).sum()) for m in ignored)
    core = sum(int(np.isin(d[~m], [2, 3]).sum()) for d, m in zip(dense, ignored, strict=True))
    assert fp.label_fractions[2] + fp.label_fractions[3] == pytest.approx(core / labelled)


@pytest.mark.parametrize(("labels", "order", "named"), [
    # the ignore label is the highest value, but a region holds it
    ({"background": 0, "outer": [1, 2], "inner": 1, "ignore": 2}, [1, 1],
     "region 'outer' holds the ignore label 2"),
    # ... or paints it
    ({"background": 0, "outer": [1, 3], "mid": 1, "inner": 3, "ignore": 2}, [2, 1, 3],
     "regions_class_order paints the ignore label 2"),
    # painted labels count: 3 is above the ignore label
    ({"background": 0, "outer": [1, 3], "inner": 3, "ignore": 2}, [1, 3],
     "the label 'ignore' (2) must have the highest value"),
])
def test_an_ignore_label_inside_a_region_is_refused_in_one_line(tmp_path, labels, order,
                                                                named) -> None:
    root, *_ = write_nested_ignore(tmp_path / "d", n_cases=2)
    (root / "dataset.json").write_text(json.dumps({"labels": labels,
                                                   "regions_class_order": order}))
    with pytest.raises(DataError, match=rf"dataset.json: .*{re.escape(named)}"):
        prepare_data(apply_overrides(Config(), ["train.device=cpu"]), root, check=False)
    report = check_dataset(root)
    assert any(named in error and "dataset.json" in error for error in report.errors)
    done = CliRunner().invoke(app, ["plan", str(root)])
    assert done.exit_code != 0 and named in done.output and "Traceback" not in done.output


def test_a_configured_ignore_label_in_a_region_is_refused_by_the_config() -> None:
    with pytest.raises(ValueError, match=r"data.regions: region 'outer' holds the ignore label"
                                         r" 5; unlabelled pixels are in no region"):
        apply_overrides(Config(), ["data.regions={outer: [1, 5], inner: [1]}",
                                   "data.regions_class_order=[1, 1]", "data.ignore_label=5"])
    with pytest.raises(ValueError, match="regions_class_order paints the ignore label 2"):
        apply_overrides(Config(), ["data.regions=[[1, 3], [3]]",
                                   "data.regions_class_order=[2, 3]", "data.ignore_label=2"])


@pytest.mark.slow
def test_cross_validation_scores_regions_on_labelled_pixels_as_evaluate_does(
        tmp_path, tiny_config) -> None:
    """Out-of-fold scores of a region data set with an ignore label: per region, keyed and
    named as ``unetkit evaluate`` keys them, the ignored pixels scored nowhere; the folds
    predict as an ensemble that averages each region's sigmoid."""
    from unetkit.train.cross_validation import cross_validate

    root, dense, ignored = write_nested_ignore(tmp_path / "d", n_cases=4)
    result = cross_validate(tiny_config("train.epochs=1", "train.steps_per_epoch=2"), root,
                            tmp_path / "cv", folds=2)
    summary = result.summary
    assert summary["labels"] == {str(k): n for k, n in enumerate(NAMES, start=1)}
    for k, fold in enumerate(summary["per_fold"]):
        out = tmp_path / f"pred_{k}"
        done = CliRunner().invoke(app, ["predict", str(tmp_path / "cv" / f"fold_{k}" /
                                                       "best.pt"),
                                        str(root / "imagesTr"), "-o", str(out), "--quiet"])
        assert done.exit_code == 0, done.output
        scored = evaluate_folders(out, root / "labelsTr")  # regions, ignore: dataset.json
        for case in fold["cases"]:
            got = summary["per_case"][case]["dice"]
            expected = [scored.per_case[case][r]["dice"] for r in (1, 2, 3)]
            assert [got[str(r)] for r in (1, 2, 3)] == pytest.approx(
                [None if np.isnan(v) else v for v in expected])
            i = int(case[-3:])
            pred = np.asarray(nib.load(out / f"{case}.nii.gz").dataobj).astype(np.int64)
            assert [got[str(r)] for r in (1, 2, 3)] == pytest.approx(
                region_dice(pred, dense[i], ~ignored[i]), nan_ok=True)
    done = CliRunner().invoke(app, ["predict", str(tmp_path / "cv"), str(root / "imagesTr"),
                                    "-o", str(tmp_path / "ensemble"), "--quiet"])
    assert done.exit_code == 0, done.output
    pred = np.asarray(nib.load(tmp_path / "ensemble" / "nested_000.nii.gz").dataobj)
    assert set(np.unique(pred).tolist()) <= {0, 1, 2, 3}
