"""Data-set layout and the doctor: every problem reported at once, each naming its file."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from unetkit.data.dataset import DatasetError, discover_cases, load_case, scan_dataset
from unetkit.data.doctor import check_dataset
from unetkit.data.io import Geometry, write_image, write_mask

RNG = np.random.default_rng(1)


def _image(shape=(16, 20)):
    return RNG.integers(0, 255, (1, *shape), dtype=np.uint8)


def _mask(shape=(16, 20), labels=(0, 1)):
    mask = np.zeros(shape, np.uint8)
    mask[4:10, 5:12] = labels[1]
    return mask


def _dataset(root, n=3):
    for i in range(n):
        write_image(root / "images" / f"c{i}.png", _image())
        write_mask(root / "masks" / f"c{i}.png", _mask())
    return root


def _snapshot(root):
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_clean_dataset_is_ok_with_summary(tmp_path):
    report = check_dataset(_dataset(tmp_path))
    assert report.ok and report.errors == [] and report.warnings == []
    summary = report.summary
    assert summary["case_count"] == 3 and summary["channels"] == 1
    assert summary["size"]["median"] == (16.0, 20.0)
    assert summary["spacing"]["min"] == (1.0, 1.0)
    fg = 6 * 7 / (16 * 20)
    assert summary["class_frequencies"][1]["voxel_fraction"] == pytest.approx(fg)
    assert summary["class_frequencies"][1]["cases"] == 3
    assert 0 <= summary["intensity"][0]["p0.5"] < summary["intensity"][0]["p99.5"] <= 255
    assert any(name == "class 1" for name, _ in report.summary_rows())


def test_all_problems_reported_at_once_and_nothing_changes(tmp_path):
    root = _dataset(tmp_path, n=2)
    write_image(root / "images" / "lonely.png", _image())                      # no mask
    write_mask(root / "masks" / "orphan.png", _mask())                         # no image
    write_image(root / "images" / "small.png", _image())
    write_mask(root / "masks" / "small.png", _mask((8, 8)))                    # shape mismatch
    write_image(root / "images" / "scaled.png", _image())
    write_mask(root / "masks" / "scaled.png", _mask(), png_values="255")       # 0/255 warning
    write_image(root / "images" / "extra.png", _image())
    write_mask(root / "masks" / "extra.png", _mask(labels=(0, 7)))             # undeclared 7
    write_image(root / "images" / "colour.png", _image())
    rgb = np.zeros((3, 16, 20), np.uint8)
    rgb[0, :8] = 200
    rgb[1, 8:] = 100
    write_image(root / "masks" / "colour.png", rgb)                            # RGB mask
    write_image(root / "images" / "soft.png", _image())
    soft = _mask(labels=(0, 255))
    soft[4, 5:12], soft[9, 5:12], soft[4:10, 5] = 128, 64, 191                 # anti-aliased
    write_image(root / "masks" / "soft.png", soft[None])
    write_image(root / "images" / "nan.npy", np.full((1, 16, 20), np.nan, np.float32))
    write_mask(root / "masks" / "nan.npy", _mask())                            # non-finite
    (root / "images" / "broken.png").write_bytes(b"\x89PNG broken")            # unreadable
    write_mask(root / "masks" / "broken.png", _mask())
    write_image(root / "images" / "empty.png", _image())
    write_mask(root / "masks" / "empty.png", np.zeros((16, 20), np.uint8))     # no foreground
    (root / "masks" / "notes.txt").write_text("hello")                         # ignored file
    before = _snapshot(root)

    report = check_dataset(root, labels=[0, 1])

    assert _snapshot(root) == before
    assert not report.ok
    errors, warnings = "\n".join(report.errors), "\n".join(report.warnings)
    expectations = [
        (errors, "lonely.png", "without a matching mask"),
        (errors, "orphan.png", "without a matching image"),
        (errors, "small.png", "mask shape (8, 8) differs from image shape (16, 20)"),
        (warnings, "scaled.png", "0/255"),
        (errors, "extra.png", "[7] are not among the declared labels"),
        (errors, "colour.png", "colour (RGB) mask"),
        (errors, "soft.png", "anti-aliased"),
        (errors, "nan.npy", "non-finite"),
        (errors, "broken.png", "unreadable image"),
        (warnings, "empty.png", "no foreground"),
        (warnings, "notes.txt", "not a supported image"),
    ]
    for text, name, phrase in expectations:
        lines = [line for line in text.splitlines() if name in line]
        assert lines, f"nothing reported for {name}"
        assert any(phrase in line for line in lines), (name, lines)
    assert report.summary["case_count"] == 11


def test_geometry_mismatch_names_both_files(tmp_path):
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    write_image(tmp_path / "images" / "a.nii.gz", np.zeros((1, 4, 5, 6), np.int16),
                Geometry(spacing=(1.0, 1.0, 2.0), affine=affine))
    write_mask(tmp_path / "masks" / "a.nii.gz", np.ones((4, 5, 6), np.uint8),
               Geometry(spacing=(1.0, 1.0, 3.0), affine=np.diag([1.0, 1.0, 3.0, 1.0])))
    shifted = affine.copy()
    shifted[0, 3] = 40.0
    write_image(tmp_path / "images" / "b.nii.gz", np.zeros((1, 4, 5, 6), np.int16),
                Geometry(spacing=(1.0, 1.0, 2.0), affine=affine))
    write_mask(tmp_path / "masks" / "b.nii.gz", np.ones((4, 5, 6), np.uint8),
               Geometry(spacing=(1.0, 1.0, 2.0), affine=shifted))
    report = check_dataset(tmp_path)
    assert any("a.nii.gz" in e and "spacing 1x1x3 differs" in e for e in report.errors)
    assert any("b.nii.gz" in e and "affine" in e for e in report.errors)


def test_empty_and_missing_dataset(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    report = check_dataset(tmp_path)
    assert not report.ok and any("empty data set" in e for e in report.errors)
    report = check_dataset(tmp_path / "nope")
    assert not report.ok and "nope" in report.errors[0] and "not found" in report.errors[0]
    with pytest.raises(DatasetError, match="no images/"):
        scan_dataset(tmp_path / "images")


def test_all_background_dataset_is_an_error(tmp_path):
    for i in range(2):
        write_image(tmp_path / "images" / f"c{i}.png", _image())
        write_mask(tmp_path / "masks" / f"c{i}.png", np.zeros((16, 20), np.uint8))
    report = check_dataset(tmp_path)
    assert any("every mask is all background" in e for e in report.errors)


def test_rgb_mask_with_palette_is_a_warning(tmp_path):
    write_image(tmp_path / "images" / "a.png", _image())
    rgb = np.zeros((3, 16, 20), np.uint8)
    rgb[1, 4:10, 5:12] = 255
    write_image(tmp_path / "masks" / "a.png", rgb)
    report = check_dataset(tmp_path, palette={(0, 0, 0): 0, (0, 255, 0): 1})
    assert report.ok, report.errors
    assert any("a.png" in w and "palette" in w for w in report.warnings)


def test_pairing_by_stem_across_suffixes_and_channels(tmp_path):
    write_image(tmp_path / "images" / "a_0000.png", _image())
    write_image(tmp_path / "images" / "a_0001.tif", _image())
    write_mask(tmp_path / "masks" / "a.tif", _mask())
    write_image(tmp_path / "images" / "b_0000.png", _image())
    write_image(tmp_path / "images" / "b_0001.bmp", _image())
    write_mask(tmp_path / "masks" / "b.npy", _mask())
    cases = discover_cases(tmp_path)
    assert [c.case_id for c in cases] == ["a", "b"]
    assert [p.name for p in cases[0].image_paths] == ["a_0000.png", "a_0001.tif"]
    image, mask, geometry = load_case(cases[0])
    assert image.shape == (2, 16, 20) and image.dtype == np.float32
    assert mask.dtype == np.int64 and mask.shape == (16, 20)
    assert geometry.format == "png"
    assert check_dataset(tmp_path).ok
    (tmp_path / "images" / "b_0001.bmp").unlink()
    errors = check_dataset(tmp_path).errors
    assert any("case 'b' misses channel file(s) _0001" in e for e in errors)
    assert any("different channel counts" in e and "images/b_0000.png" in e for e in errors)


def test_nnunet_layout_with_dataset_json(tmp_path):
    for i in range(2):
        for channel in range(2):
            write_image(tmp_path / "imagesTr" / f"case_{i:03d}_{channel:04d}.nii.gz",
                        RNG.random((1, 5, 6, 4)).astype(np.float32))
        write_mask(tmp_path / "labelsTr" / f"case_{i:03d}.nii.gz", RNG.integers(0, 3, (5, 6, 4)))
    meta = {"channel_names": {"0": "T1", "1": "T2"},
            "labels": {"background": 0, "edema": 1, "tumour": 2}, "file_ending": ".nii.gz"}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    scan = scan_dataset(tmp_path)
    assert scan.labels == {0: "background", 1: "edema", 2: "tumour"}
    assert scan.channel_names == ["T1", "T2"]
    cases = discover_cases(tmp_path)
    assert [c.case_id for c in cases] == ["case_000", "case_001"]
    image, mask, _ = load_case(cases[1], labels=[0, 1, 2])
    assert image.shape == (2, 5, 6, 4)
    report = check_dataset(tmp_path)
    assert report.ok, report.errors
    assert report.summary["channels"] == 2 and report.summary["spatial_dims"] == 3
    (tmp_path / "dataset.json").write_text(json.dumps({**meta, "labels": {"background": 0,
                                                                          "edema": 1}}))
    report = check_dataset(tmp_path)
    assert any("case_000.nii.gz" in e and "[2]" in e for e in report.errors)


def test_load_case_rejects_undeclared_labels(tmp_path):
    _dataset(tmp_path, n=1)
    case = discover_cases(tmp_path)[0]
    with pytest.raises(DatasetError, match=r"c0\.png.*\[1\]"):
        load_case(case, labels=[0])


def test_discover_cases_drops_unpaired_with_warning(tmp_path, caplog):
    _dataset(tmp_path, n=2)
    write_image(tmp_path / "images" / "alone.png", _image())
    assert [c.case_id for c in discover_cases(tmp_path)] == ["c0", "c1"]
    assert "alone.png" in caplog.text
    assert len(discover_cases(tmp_path, require_masks=False)) == 3


def test_repeated_warnings_are_grouped_but_name_files(tmp_path):
    for i in range(7):
        write_image(tmp_path / "images" / f"c{i}.png", _image())
        write_mask(tmp_path / "masks" / f"c{i}.png", _mask(), png_values="255")
    report = check_dataset(tmp_path)
    assert report.ok
    assert len(report.warnings) == 1
    assert report.warnings[0].startswith("7 files: binary mask stored as 0/255")
    assert "masks/c0.png" in report.warnings[0] and "and 2 more" in report.warnings[0]
