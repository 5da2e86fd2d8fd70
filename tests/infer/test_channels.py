"""nnU-Net-layout prediction: channel files grouped by case id, masks named by case id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unetkit.infer.files import input_cases, predict_files
from unetkit.infer.predictor import Predictor


def _write(folder: Path, names: list[str]) -> list[Path]:
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        nib.save(nib.Nifti1Image(rng.normal(size=(9, 10, 8)).astype(np.float32), np.eye(4)),
                 folder / name)
    return [folder / n for n in names]


def test_channel_files_group_by_case_when_every_case_is_complete(tmp_path):
    folder = tmp_path / "imagesTs"
    _write(folder, ["a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz", "b_0001.nii.gz"])
    cases = input_cases([folder], channels=2)
    assert [(c.case_id, [p.name for p in c.paths]) for c in cases] == [
        ("a", ["a_0000.nii.gz", "a_0001.nii.gz"]), ("b", ["b_0000.nii.gz", "b_0001.nii.gz"])]
    one = input_cases([folder / "a_0000.nii.gz", folder / "b_0000.nii.gz"], channels=1)
    assert [c.case_id for c in one] == ["a", "b"]  # nnU-Net's single-channel names
    # numbered slices are not channels: a 1-channel model sees each file as a case
    slices = _write(tmp_path / "stack", ["s_0000.nii.gz", "s_0001.nii.gz", "s_0002.nii.gz"])
    assert [c.case_id for c in input_cases(slices, channels=1)] == [
        "s_0000", "s_0001", "s_0002"]


@pytest.mark.parametrize("channels", [1, 2])
def test_predict_writes_one_mask_per_case_named_by_case_id(tmp_path, make_checkpoint, channels):
    import nibabel as nib

    names = [f"{case}_{c:04d}.nii.gz" for case in ("c1", "c2") for c in range(channels)]
    folder = tmp_path / "imagesTs"
    _write(folder, names)
    predictor = Predictor.from_checkpoint(make_checkpoint(spatial_dims=3, out_channels=3,
                                                          in_channels=channels))
    result = predict_files(predictor, [folder], tmp_path / "pred")
    assert not result.failed
    assert sorted(p.name for p in result.written) == ["c1.nii.gz", "c2.nii.gz"]
    assert nib.load(str(tmp_path / "pred" / "c1.nii.gz")).shape == (9, 10, 8)
