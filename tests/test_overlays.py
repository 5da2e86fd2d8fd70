"""Overlay pictures: error-map colours at known pixels, the legend, the caption with the Dice,
the slice through the largest structure and the radiological orientation of volumes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from unetkit.infer.files import PALETTE
from unetkit.report import overlay_image, render_overlay
from unetkit.report.overlays import (
    CORRECT,
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    GT_OUTLINE,
    WRONG_CLASS,
    error_image,
)
from unetkit.report.picture import caption_lines, legend_entries
from unetkit.report.slices import View, cut, display_planes, pick_slice, radiological_view


def thin_line_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A one-pixel-wide structure: the prediction misses its end and adds one pixel."""
    image = np.zeros((1, 12, 16), np.float32)
    gt = np.zeros((12, 16), np.uint8)
    gt[5, 2:13] = 1
    pred = gt.copy()
    pred[5, 10:13] = 0  # false negatives at (5, 10..12)
    pred[6, 4] = 1      # a false positive at (6, 4)
    return image, pred, gt


def pixel(picture, panel: int, row: int, col: int) -> tuple[int, ...]:
    """The centre of image pixel ``(row, col)`` in panel ``panel`` of a ``Picture``."""
    top, left = picture.panels[panel]
    s = picture.scale
    return tuple(int(v) for v in picture.rgb[top + row * s + s // 2, left + col * s + s // 2])


def colours_in(region: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in c) for c in np.unique(region.reshape(-1, 3), axis=0)}


def test_error_map_colours_false_positives_and_negatives_on_a_thin_structure() -> None:
    image, pred, gt = thin_line_case()
    errors = error_image(image, pred, gt)
    assert tuple(errors[6, 4]) == FALSE_POSITIVE
    assert all(tuple(errors[5, c]) == FALSE_NEGATIVE for c in (10, 11, 12))
    correct = errors[5, 6].astype(int)
    assert correct[1] > 80 and correct[0] < 30 and correct[2] < 30  # green, blended
    assert tuple(errors[0, 0]) == (0, 0, 0)


def test_picture_has_both_panels_legend_and_caption() -> None:
    image, pred, gt = thin_line_case()
    picture = render_overlay(image, pred, gt, title="case7", names={1: "membrane"})
    assert len(picture.panels) == 2 and picture.scale >= 16  # small images are enlarged
    assert pixel(picture, 1, 6, 4) == FALSE_POSITIVE
    assert pixel(picture, 1, 5, 11) == FALSE_NEGATIVE
    # truth outlined in the first panel, just outside the one-pixel line: the display pixel
    # rows above and below the line, never the line itself (the prediction stays visible)
    top, left = picture.panels[0]
    s, centre = picture.scale, left + 11 * picture.scale + picture.scale // 2
    assert tuple(picture.rgb[top + 5 * s - 1, centre]) == GT_OUTLINE
    assert tuple(picture.rgb[top + 6 * s, centre]) == GT_OUTLINE
    assert tuple(picture.rgb[top + 5 * s, centre]) != GT_OUTLINE
    assert pixel(picture, 0, 5, 11) == (0, 0, 0)         # missed: the (black) image shows
    assert pixel(picture, 0, 4, 11) == (0, 0, 0)         # the outline is a third of a pixel
    for row, col in ((6, 4), (5, 6)):                    # prediction filled (PALETTE[1]) ...
        red = pixel(picture, 0, row, col)
        assert red[0] > 80 and red[1] < red[0] and red != GT_OUTLINE  # ... on the line too
    legend = colours_in(picture.rgb[picture.legend_top:])
    for colour in (CORRECT, FALSE_POSITIVE, FALSE_NEGATIVE, GT_OUTLINE, PALETTE[1]):
        assert colour in legend, colour
    assert WRONG_CLASS not in legend                     # one class: no wrong-class entry
    caption = picture.rgb[:picture.panels[0][0] - 20]
    assert (caption.sum(-1) < 200).any()                 # text drawn above the panels


@pytest.mark.parametrize("width", [272, 300, 360, 420, 520, 640, 900])  # panels >= 256
def test_legend_never_leaves_a_heading_at_the_end_of_a_line(width) -> None:
    from unetkit.report.picture import _legend_layout

    gt = np.array([[0, 1], [2, 3]], np.uint8)
    placed, height = _legend_layout(legend_entries(gt, gt), width)
    headings = [i for i, (*_, colour) in enumerate(placed) if colour is None]
    assert len(headings) == 3
    for i in headings:                       # each heading on the line of its first entry
        assert placed[i][1] == placed[i + 1][1] and placed[i + 1][0] > placed[i][0]
    assert height > max(y for _, y, *_ in placed)


def test_prediction_only_picture_has_no_error_legend() -> None:
    image, pred, _ = thin_line_case()
    picture = render_overlay(image, pred, title="x")
    assert len(picture.panels) == 1
    legend = colours_in(picture.rgb[picture.legend_top:])
    assert PALETTE[1] in legend and FALSE_POSITIVE not in legend
    assert [text for text, _ in legend_entries(pred, None, {1: "membrane"})] == [
        "prediction:", "membrane"]


def test_caption_prints_the_dice_of_the_case() -> None:
    _, pred, gt = thin_line_case()
    dice = 2 * 8 / (9 + 11)
    assert caption_lines("case7", pred, gt) == [f"case7 · Dice {dice:.4f}"]
    assert caption_lines("case7", pred, gt, dice=0.25, where="axial") == [
        "case7 · Dice 0.2500", "axial"]
    assert caption_lines("case7", pred, None) == ["case7"]


def test_wrong_class_has_its_own_colour() -> None:
    gt = np.zeros((6, 6), np.uint8)
    gt[1:4, 1:4] = 2
    pred = gt.copy()
    pred[2, 2] = 1
    assert tuple(error_image(np.zeros((1, 6, 6)), pred, gt)[2, 2]) == WRONG_CLASS
    assert ("wrong class", WRONG_CLASS) in legend_entries(pred, gt)


def test_slice_goes_through_the_largest_ground_truth_structure() -> None:
    gt = np.zeros((10, 12, 14), np.uint8)
    gt[2:6, 2:6, 3:9] = 1
    gt[1:7, 1:7, 5] = 1          # the big structure is widest at slice 5
    gt[0:10, 8:12, 11] = 2       # a flat small one: the most foreground of any single slice
    assert pick_slice(np.zeros_like(gt), gt) == 5
    pred = np.zeros_like(gt)
    pred[0:3, 0:3, 12] = 1
    assert pick_slice(pred, np.zeros_like(gt)) == 12   # empty truth: the prediction's
    assert pick_slice(pred, None) == 12
    assert pick_slice(np.zeros_like(gt)) == 7          # nothing: the middle


def test_radiological_orientation_puts_the_patients_right_on_the_left() -> None:
    volume = np.zeros((4, 5, 3), np.uint8)
    volume[3, 4, 1] = 1   # RAS: largest x = patient's right, largest y = anterior
    volume[0, 0, 1] = 2
    ras = radiological_view(np.eye(4))
    assert (ras.axis, ras.rows, ras.cols) == (2, 1, 0)
    plane = cut(volume, ras, 1)
    assert plane.shape == (5, 4) and plane[0, 0] == 1 and plane[-1, -1] == 2
    las = radiological_view(np.diag([-1.0, 1.0, 1.0, 1.0]))  # x grows to the patient's left
    plane = cut(volume, las, 1)
    assert plane[0, -1] == 1 and plane[-1, 0] == 2
    # array axes stored as (S, A, R): the first axis is sliced
    swapped = radiological_view(np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0],
                                          [0, 0, 0, 1]], float))
    assert (swapped.axis, swapped.rows, swapped.cols) == (0, 1, 2)
    assert radiological_view(None) == View() == radiological_view(np.zeros((4, 4)))
    assert cut(volume, View(), 1)[3, 4] == 1  # no affine: as stored


def test_volume_overlay_uses_affine_and_names_the_slice() -> None:
    gt = np.zeros((6, 8, 5), np.uint8)
    gt[4:6, 6:8, 1:4] = 1       # right-anterior corner in RAS
    image = np.zeros((1, *gt.shape), np.float32)
    rgb = overlay_image(image, np.zeros_like(gt), gt, affine=np.eye(4))
    assert rgb.shape == (8, 6, 3)
    outline = {(int(r), int(c)) for r, c in np.argwhere((rgb == GT_OUTLINE).all(-1))}
    # the structure is the top-left 2 x 2 (right-anterior), outlined just outside it
    assert outline == {(0, 2), (1, 2), (2, 0), (2, 1)}
    assert tuple(rgb[1, 1]) == tuple(rgb[6, 4]) == (0, 0, 0)
    picture = render_overlay(image, gt, gt, affine=np.eye(4), title="vol")
    assert pixel(picture, 1, 0, 0)[1] > 80               # correct (green) at the top left
    assert pixel(picture, 1, 7, 5) == (0, 0, 0)
    *_, where = display_planes(image[0], gt, gt, np.eye(4))
    assert where == ("axial slice 1 of 0..4 (array axis 2), patient's right on the left")
    *_, where = display_planes(image[0], gt, gt, None)
    assert where.startswith("slice 1 of 0..4 along array axis 2 (no orientation known")


@pytest.mark.parametrize("size", [(24, 33), (300, 280)])
def test_saved_overlay_is_enlarged_only_when_small(tmp_path, size) -> None:
    from unetkit.report import save_overlay

    labels = np.zeros(size, np.uint8)
    labels[2:8, 3:9] = 1
    path = save_overlay(tmp_path / "o.png", np.zeros((1, *size)), labels, title="o")
    width, height = Image.open(path).size
    scale = max(1, -(-256 // max(size)))
    assert width == size[1] * scale + 16 and height > size[0] * scale


def test_demo_montage_captions_each_tile_with_name_and_dice(tmp_path, monkeypatch) -> None:
    import unetkit.report as report
    from unetkit.demo import overlay_montage

    image, pred, gt = thin_line_case()
    seen, draw = [], report.overlay_picture

    def spy(*args, **options):
        seen.append(options)
        return draw(*args, **options)

    monkeypatch.setattr(report, "overlay_picture", spy)
    tiles = [{"name": f"cell_{i}", "image": image, "pred": pred, "gt": gt, "dice": 0.5 + i / 10}
             for i in range(3)]
    path = overlay_montage(tiles, tmp_path / "overlays.png")
    assert [(o["title"], o["dice"]) for o in seen] == [("cell_0", 0.5), ("cell_1", 0.6),
                                                       ("cell_2", 0.7)]
    tile = draw(image, pred, gt, title="cell_0", dice=0.5)
    montage = np.asarray(Image.open(path))
    assert montage.shape == (2 * tile.shape[0], 2 * tile.shape[1], 3)
    assert np.array_equal(montage[:tile.shape[0], :tile.shape[1]], tile)
