"""Anti-aliased masks and odd masks in a binary data set are doctor errors, naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.morphology import skeletonize
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.data.doctor import check_dataset
from unetkit.data.mask_checks import looks_antialiased, odd_masks
from unetkit.data.synthetic import make_cells

SIZE = 96


def membranes(seed: int = 0, thin: bool = True) -> np.ndarray:
    """0/255 cell membranes (1 pixel wide when ``thin``), uint8 ``(SIZE, SIZE)``."""
    mask = make_cells((SIZE, SIZE), seed=seed)[1] > 0
    return (skeletonize(mask) if thin else mask).astype(np.uint8) * 255


def resized(mask: np.ndarray, factor: float, resample=Image.BILINEAR) -> np.ndarray:
    """``mask`` resized by ``factor`` and back to SIZE (what a careless preprocessing does)."""
    side = round(SIZE * factor)
    there = Image.fromarray(mask).resize((side, side), resample)
    return np.array(there.resize((SIZE, SIZE), resample))


def write_case(root, name: str, mask: np.ndarray) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(0).integers(0, 256, mask.shape, dtype=np.uint8)
    Image.fromarray(image).save(root / "images" / name)
    Image.fromarray(mask).save(root / "masks" / name)


def errors_about(report, name: str) -> list[str]:
    return [e for e in report.errors if name in e]


@pytest.mark.parametrize("factor", [0.5, 0.75, 1.5, 2.0])
@pytest.mark.parametrize("inverted", [False, True], ids=["white_membranes", "black_membranes"])
def test_thin_antialiased_membranes_are_errors(tmp_path, factor, inverted) -> None:
    for i in range(3):
        mask = resized(membranes(seed=i), factor)
        write_case(tmp_path, f"m{i}.png", 255 - mask if inverted else mask)
    report = check_dataset(tmp_path)
    for i in range(3):
        assert any("anti-aliased" in e for e in errors_about(report, f"m{i}.png")), report.errors


@pytest.mark.parametrize("make", [
    lambda: resized(membranes(), 0.5, Image.NEAREST),              # resized without smoothing
    lambda: membranes(thin=False),                                 # plain 0/255
    lambda: make_cells((SIZE, SIZE), seed=3, multiclass=True)[1].astype(np.uint8),  # 3 classes
    lambda: ndimage.label(make_cells((SIZE, SIZE), seed=4)[1] == 0)[0].astype(np.uint8),  # cells
], ids=["nearest", "binary", "three_classes", "instances"])
def test_label_masks_are_not_taken_for_antialiased(make) -> None:
    assert not looks_antialiased(make())


def test_one_antialiased_mask_among_six_is_named(tmp_path) -> None:
    for i in range(6):
        mask = membranes(seed=i)
        write_case(tmp_path, f"m{i}.png", resized(mask, 0.75) if i == 4 else mask)
    report = check_dataset(tmp_path)
    assert [e.split(": ")[0] for e in report.errors] == [str(tmp_path / "masks" / "m4.png")]
    assert "anti-aliased" in report.errors[0]
    result = CliRunner().invoke(app, ["check", str(tmp_path)])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "m4.png: anti-aliased mask edges" in text and "1 error(s)" in text


def test_a_many_valued_mask_among_binary_ones_is_named(tmp_path) -> None:
    instances = np.zeros((SIZE, SIZE), np.uint8)  # 36 objects of 10x10 pixels, numbered
    for k in range(36):
        y, x = 16 * (k // 6) + 3, 16 * (k % 6) + 3
        instances[y:y + 10, x:x + 10] = k + 1
    assert not looks_antialiased(instances)
    for i in range(6):
        write_case(tmp_path, f"m{i}.png", instances if i == 2 else membranes(seed=i, thin=False))
    report = check_dataset(tmp_path)
    assert len(report.errors) == 1, report.errors
    assert report.errors[0].startswith(f"{tmp_path / 'masks' / 'm2.png'}: ")
    assert "where most masks are binary" in report.errors[0]
    declared = check_dataset(tmp_path, labels=list(range(40)))
    assert declared.ok, declared.errors  # declared labels: the values are classes


def test_odd_masks_rule() -> None:
    binary = {f"b{i}": {0, 1} for i in range(4)}
    assert odd_masks({**binary, "x": set(range(30))}) == ["x"]
    assert odd_masks({**binary, "x": set(range(10))}) == []  # few values in all
    assert odd_masks({"a": set(range(30)), "b": set(range(25)), "c": {0, 1}}) == []
