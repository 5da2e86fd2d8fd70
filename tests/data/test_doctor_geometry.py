"""The doctor across cases: mixed spacings (one summarising warning) and mixed orientations
(a warning naming the files), also through ``unetkit check``."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.data.doctor import check_dataset
from unetkit.data.synthetic import write_blobs_dataset

runner = CliRunner()


def flat(text: str) -> str:
    return " ".join(text.split())


def test_mixed_spacings_give_one_warning_with_count_and_range(tmp_path) -> None:
    spacings = [(1.0, 1.0, 1.0), (1.05, 1.0, 1.0), (1.0, 1.0, 1.0), (2.0, 1.0, 1.0),
                (1.0, 0.5, 1.0)]
    root = write_blobs_dataset(tmp_path / "d", 5, (16, 16, 12), spacing=spacings)
    report = check_dataset(root)
    assert report.ok, report.errors
    mixed = [w for w in report.warnings if "mixed spacings" in w]
    assert len(mixed) == 1, report.warnings
    message = mixed[0]
    assert "2 of 5 cases" in message and "median spacing 1x1x1" in message
    assert "range 1x0.5x1 to 2x1x1" in message
    assert "blobs_003_0000.nii.gz" in message and "blobs_004_0000.nii.gz" in message
    assert "blobs_001" not in message  # 5% off: within the tolerance
    assert "resamples" in message


def test_equal_spacings_and_orientations_give_no_warning(tmp_path) -> None:
    root = write_blobs_dataset(tmp_path / "d", 3, (16, 16, 12), spacing=(0.8, 0.8, 2.5))
    assert check_dataset(root).warnings == []


def flip_case(root, case: str, affine: np.ndarray) -> None:
    """Rewrite a case's image and mask with another affine (same voxels)."""
    for path in (root / "imagesTr" / f"{case}_0000.nii.gz", root / "labelsTr" / f"{case}.nii.gz"):
        image = nib.load(path)
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine), path)


def test_flipped_orientation_is_a_warning_naming_the_files(tmp_path) -> None:
    root = write_blobs_dataset(tmp_path / "d", 4, (16, 16, 12))
    flip_case(root, "blobs_002", np.diag([-1.0, 1.0, 1.0, 1.0]))          # LAS
    flip_case(root, "blobs_003", np.diag([-1.0, -1.0, 1.0, 1.0]))         # LPS
    report = check_dataset(root)
    assert report.ok, report.errors
    (message,) = [w for w in report.warnings if "mixed orientations" in w]
    assert "most images are RAS (2 of 4" in message
    assert "LAS: imagesTr/blobs_002_0000.nii.gz" in message
    assert "LPS: imagesTr/blobs_003_0000.nii.gz" in message
    assert "blobs_000" not in message and "blobs_001" not in message


def test_check_prints_spacing_and_orientation_warnings(tmp_path) -> None:
    root = write_blobs_dataset(tmp_path / "d", 3, (16, 16, 12),
                               spacing=[(1.0, 1.0, 1.0), (1.0, 1.0, 1.0), (1.0, 1.0, 3.0)])
    flip_case(root, "blobs_001", np.diag([-1.0, 1.0, 1.0, 1.0]))
    done = runner.invoke(app, ["check", str(root)])
    assert done.exit_code == 0, done.output
    text = flat(done.output)
    assert "warning: " in text and "mixed spacings: 1 of 3 cases" in text
    assert "mixed orientations" in text and "LAS: imagesTr/blobs_001_0000.nii.gz" in text
    assert "2 warning(s)" in text
