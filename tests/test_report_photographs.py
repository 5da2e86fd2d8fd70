"""The report for colour photographs: images in their colours, text that reads at the width
the report shows it, wording that fits 2D data, whole console headers, named statistics."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from unetkit.report import render_overlay
from unetkit.report.overlays import colour_uint8, error_image
from unetkit.report.page import overlay_explanation
from unetkit.report.picture import SHOWN_WIDTH


def stained_case(size: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An RGB image: left half haematoxylin purple, right half eosin pink; one predicted and
    true square on the right."""
    image = np.zeros((3, size, size), np.uint8)
    image[:, :, : size // 2] = np.array([72, 38, 120])[:, None, None]
    image[:, :, size // 2:] = np.array([242, 178, 212])[:, None, None]
    gt = np.zeros((size, size), np.uint8)
    gt[2:6, 10:14] = 1
    return image, gt.copy(), gt


def panel_pixel(picture, panel: int, row: int, col: int) -> tuple[int, ...]:
    top, left = picture.panels[panel]
    s = picture.scale
    return tuple(int(v) for v in picture.rgb[top + row * s + s // 2, left + col * s + s // 2])


def test_an_rgb_photograph_is_drawn_in_its_colours() -> None:
    image, pred, gt = stained_case()
    picture = render_overlay(image, pred, gt, title="he_01")
    assert panel_pixel(picture, 0, 10, 3) == (72, 38, 120)     # haematoxylin, as stored
    assert panel_pixel(picture, 0, 10, 12) == (242, 178, 212)  # eosin
    dimmed = panel_pixel(picture, 1, 10, 3)                    # the error map dims it
    assert dimmed == tuple(round(0.6 * v) for v in (72, 38, 120))
    grey = render_overlay(image[:1], pred, gt)                 # one channel stays grey
    assert len(set(panel_pixel(grey, 0, 10, 3))) == 1
    errors = error_image(image, pred, gt)
    assert tuple(errors[10, 3]) == tuple(round(0.6 * v) for v in (72, 38, 120))


def test_colours_of_other_ranges_keep_their_balance() -> None:
    unit = np.full((2, 2, 3), 0.5, np.float32)
    unit[0, 0] = (1.0, 0.0, 0.25)
    assert tuple(colour_uint8(unit)[0, 0]) == (255, 0, 64)      # 0..1 -> 0..255
    wide = np.zeros((4, 4, 3), np.float32)
    wide[..., 0] = 4000.0                                       # 16-bit: stretched together
    wide[..., 1] = 2000.0
    stretched = colour_uint8(wide).astype(int)
    assert stretched[0, 0, 0] > stretched[0, 0, 1] > stretched[0, 0, 2]


def ink_height(rgb: np.ndarray) -> int:
    """Rows of the first run of dark (text) rows from the top of ``rgb``."""
    dark = (rgb.sum(-1) < 300).any(axis=1)
    rows = np.flatnonzero(dark)
    end = rows[0]
    while end + 1 < len(dark) and dark[end + 1]:
        end += 1
    return int(end - rows[0] + 1)


@pytest.mark.parametrize("size", [1000, 2000])
def test_caption_text_reads_at_the_width_the_report_shows(size) -> None:
    """A 1000x1000 photograph with its error map is 2026 pixels wide; the report shows it
    ``SHOWN_WIDTH`` wide. Its caption used to be 14-pixel text, 6 pixels of ink on screen;
    14-pixel text on screen has about 10.5 (ascenders to descenders)."""
    labels = np.zeros((size, size), np.uint8)
    labels[10:40, 10:40] = 1
    picture = render_overlay(np.zeros((3, size, size), np.uint8), labels, labels,
                             title="worst: case_07 · Dice 0.8123")
    shown = SHOWN_WIDTH / picture.rgb.shape[1]
    caption = picture.rgb[: picture.panels[0][0]]
    assert ink_height(caption) * shown >= 10
    legend = picture.rgb[picture.legend_top:]
    assert ink_height(legend) * shown >= 10  # "prediction:" and its swatches


def overlay_items(volume: bool = False, affine: bool = False) -> list[dict]:
    image, pred, gt = stained_case()
    if volume:
        image, pred, gt = (np.stack([a] * 4, axis=-1) for a in (image[:1], pred, gt))
    return [{"kind": "best", "case": "c", "score": 1.0, "image": image, "pred": pred,
             "gt": gt, "affine": np.eye(4) if affine else None}]


def test_the_explanation_speaks_of_the_data_shown() -> None:
    text = overlay_explanation(overlay_items(), "Overlays drawn on the images of x.")
    assert "their own colours" in text and text.endswith("images of x.")
    for word in ("axial", "patient", "slice", "Volumes", "wrong class", "grey"):
        assert word not in text, word
    text = overlay_explanation(overlay_items(volume=True, affine=True))
    assert "axial slice" in text and "patient's right on the left" in text
    assert "contrast-stretched" in text and "own colours" not in text
    text = overlay_explanation(overlay_items(volume=True))
    assert "last array axis, as stored" in text and "patient" not in text


def test_the_report_of_2d_photographs_has_no_3d_wording(tmp_path) -> None:
    from unetkit.data.io import write_image, write_mask
    from unetkit.evaluate import evaluate_folders
    from unetkit.report import write_html_report

    image, pred, gt = stained_case(32)
    for folder, array in (("pred", pred), ("gt", gt)):
        write_mask(tmp_path / folder / "he_01.png", array)
    write_image(tmp_path / "images" / "he_01.png", image)
    evaluate_folders(tmp_path / "pred", tmp_path / "gt", tmp_path / "eval",
                     images_dir=tmp_path / "images", report=write_html_report)
    page = (tmp_path / "eval" / "report.html").read_text()
    assert "shown in their own colours" in page
    for words in ("axial", "patient", "radiological", "Volumes"):
        assert words not in page, words


def test_console_headers_are_whole_in_an_80_column_terminal() -> None:
    from rich.console import Console

    from unetkit.cli.report_commands import _metrics_table
    from unetkit.evaluate import EVAL_METRICS
    from unetkit.evaluate.folders import EvaluationResult
    from unetkit.metrics import aggregate

    per_case = {"a": {1: {m: 0.5 for m in EVAL_METRICS}}}
    result = EvaluationResult(per_case, aggregate(per_case), {1: "nucleus"},
                              units={"hd95": "pixels", "assd": "pixels",
                                     "volume_difference": "pixels"})
    for width in (80, 64):  # a row per label at 80 columns, a row per metric at 64
        out = io.StringIO()
        Console(file=out, width=width).print(_metrics_table(result, "", width))
        text = out.getvalue()
        assert "…" not in text and "..." not in text
        for word in ("dice", "iou", "hd95", "assd", "surface_", "volume_", "difference",
                     "[pixels]", "1 nucleus"):
            assert word in text, (width, word)
        assert ("1 case · mean over cases" in text) and (("metric" in text) == (width == 64))


def test_summary_json_says_which_standard_deviation(tmp_path) -> None:
    from unetkit.data.io import write_mask
    from unetkit.evaluate import evaluate_folders

    for name, size in (("a", 4), ("b", 6)):
        gt = np.zeros((16, 16), np.uint8)
        gt[2:2 + size, 2:2 + size] = 1
        pred = np.zeros_like(gt)
        pred[2:6, 2:6] = 1
        write_mask(tmp_path / "gt" / f"{name}.png", gt)
        write_mask(tmp_path / "pred" / f"{name}.png", pred)
    evaluate_folders(tmp_path / "pred", tmp_path / "gt", tmp_path / "e")
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert "population standard deviation" in summary["statistics"]["std"]
    dice = [1.0, 2 * 16 / (16 + 36)]
    stats = summary["per_class"]["1"]["dice"]
    assert stats["std"] == pytest.approx(np.std(dice))  # ddof=0, as stated
    assert not math.isclose(stats["std"], np.std(dice, ddof=1))


def test_the_threshold_free_table_keeps_its_headers_whole() -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from unetkit.cli.report_commands import _probability_table
    from unetkit.evaluate import PROBABILITY_METRICS

    values = {m: 0.9 for m in PROBABILITY_METRICS}
    result = SimpleNamespace(probability=SimpleNamespace(pooled=values, mean=values),
                             probability_cases=["a", "b"])
    for width in (100, 80, 60):
        out = io.StringIO()
        Console(file=out, width=width).print(_probability_table(result, "", width))
        text = out.getvalue()
        assert "…" not in text and "threshold-free scores of 2 cases" in text
        for word in ("sensitivity", "specificity", "precision", "accuracy", "pooled pixels"
                     if width == 60 else "pooled"):
            assert word in text, (width, word)
