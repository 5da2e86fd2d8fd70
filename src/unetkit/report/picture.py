"""The overlay pictures users get: panels, a caption and a colour legend in one RGB image.

Layout, top to bottom on white: the caption (the case, its Dice when the ground truth is known,
the slice of a volume), the panel titles, the panels side by side (``overlay_panel``, and
``error_panel`` when there is a ground truth), and the legend (every colour used: the classes of
the prediction, the ground-truth outline, the error colours). Small images are enlarged by a
whole factor (nearest neighbour, so each pixel stays a sharp square) to at least
``MIN_PANEL`` pixels on their longer side; larger ones keep their size. The text grows with
a picture wider than ``SHOWN_WIDTH``, the width the report shows pictures at (its page in a
1400-pixel window), so that it still reads at ``_FONT_SIZE`` pixels there: a 1000x1000 image
with its error map is 2026 pixels wide and gets 25-pixel text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from os import PathLike
from typing import Any

import numpy as np

from unetkit.report.overlays import (
    CORRECT,
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    GT_OUTLINE,
    WRONG_CLASS,
    display_image,
    error_panel,
    overlay_panel,
    palette,
)
from unetkit.report.slices import display_planes

MIN_PANEL = 256
SHOWN_WIDTH = 1150  # pixels: the report's cards at most (unetkit.report.page)
_PAD, _GAP, _SWATCH, _FONT_SIZE = 8, 10, 14, 14
_INK, _PAPER = (34, 34, 34), (255, 255, 255)


@dataclass
class Picture:
    """A composed picture: ``rgb`` ``(H, W, 3)`` uint8, the enlargement ``scale``, the top-left
    ``(row, col)`` of each panel in ``panels`` and the first row of the legend."""

    rgb: np.ndarray
    scale: int
    panels: list[tuple[int, int]] = field(default_factory=list)
    legend_top: int = 0


@lru_cache(maxsize=4)
def _font(size: int = _FONT_SIZE) -> Any:
    """DejaVu Sans from matplotlib's data (always installed with it); PIL's default otherwise."""
    from pathlib import Path

    import matplotlib
    from PIL import ImageFont

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:
        return ImageFont.load_default()


@dataclass(frozen=True)
class Style:
    """Text size and the spacing that goes with it (``_FONT_SIZE`` and the ``_PAD`` etc.
    constants times ``size / _FONT_SIZE``)."""

    size: int = _FONT_SIZE

    def px(self, base: int) -> int:
        """``base`` pixels at ``_FONT_SIZE``, scaled to this size."""
        return max(base, round(base * self.size / _FONT_SIZE))


_BASE = Style()


def style_for(width: int) -> Style:
    """The ``Style`` of a picture ``width`` pixels wide: ``_FONT_SIZE`` up to
    ``SHOWN_WIDTH``, proportionally larger beyond (module doc)."""
    return Style(max(_FONT_SIZE, math.ceil(_FONT_SIZE * width / SHOWN_WIDTH)))


def _text_width(text: str, style: Style = _BASE) -> int:
    return int(math.ceil(_font(style.size).getlength(text)))


def _wrap(text: str, width: int, style: Style = _BASE) -> list[str]:
    """Words of ``text`` in lines no wider than ``width`` pixels (a long word stays whole)."""
    lines: list[str] = []
    for word in text.split():
        if lines and _text_width(f"{lines[-1]} {word}", style) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def case_dice(labels: np.ndarray, gt: np.ndarray) -> float:
    """Mean Dice over the foreground labels in either map (NaN when both are empty)."""
    from unetkit.metrics import case_metrics, foreground_mean

    values = sorted({int(v) for v in np.unique(labels)} | {int(v) for v in np.unique(gt)})
    values = [v for v in values if v != 0]
    if not values:
        return math.nan
    return foreground_mean(case_metrics(labels, gt, values, metrics=("dice",)))["dice"]


def legend_entries(labels: np.ndarray, gt: np.ndarray | None,
                   names: dict[int, str] | None = None) -> list[tuple[str, Any]]:
    """``(text, colour)`` items of the legend; colour None for a group heading, ``"outline"``
    for the ground-truth outline swatch."""
    colours = palette()
    present = {int(v) for v in np.unique(labels)} | (
        {int(v) for v in np.unique(gt)} if gt is not None else set())
    items: list[tuple[str, Any]] = [("prediction:", None)]
    for value in sorted(present - {0}):
        name = (names or {}).get(value) or f"class {value}"
        items.append((name, tuple(int(c) for c in colours[value % len(colours)])))
    if gt is None:
        return items
    items += [("ground truth:", None), ("outline", "outline"), ("errors:", None),
              ("correct", CORRECT), ("false positive", FALSE_POSITIVE),
              ("false negative", FALSE_NEGATIVE)]
    if len(present - {0}) > 1:
        items.append(("wrong class", WRONG_CLASS))
    return items


def _legend_layout(items: list[tuple[str, Any]], width: int, style: Style = _BASE
                   ) -> tuple[list[tuple[int, int, str, Any]], int]:
    """Positions ``(x, y, text, colour)`` of the legend items, wrapped to ``width``; height."""
    pad, swatch, line = style.px(_PAD), style.px(_SWATCH), style.size + style.px(8)
    sizes = [_text_width(text, style) + (swatch + style.px(5) if colour is not None else 0)
             + style.px(14) for text, colour in items]
    x, y, placed = _PAD, pad, []  # flush with the panels' left edge
    for index, (text, colour) in enumerate(items):
        # a heading starts a new line unless its first entry fits beside it too
        needed = sizes[index] + (sizes[index + 1] if colour is None and index + 1 < len(items)
                                 else 0)
        if x > _PAD and x + needed > width - _PAD:
            x, y = _PAD, y + line
        placed.append((x, y, text, colour))
        x += sizes[index]
    return placed, y + line + pad // 2


def _draw_legend(draw: Any, placed: list[tuple[int, int, str, Any]], top: int,
                 style: Style) -> None:
    swatch = style.px(_SWATCH)
    for x, y, text, colour in placed:
        y += top
        box = [x, y + 1, x + swatch - 1, y + swatch]
        if colour == "outline":
            draw.rectangle(box, outline=GT_OUTLINE, width=style.px(3))
        elif colour is not None:
            draw.rectangle(box, fill=tuple(colour))
        left = x + (swatch + style.px(5) if colour is not None else 0)
        draw.text((left, y), text, fill=_INK, font=_font(style.size))


def display_scale(shape: tuple[int, ...]) -> int:
    """The whole enlargement factor (1..16) of a ``(H, W)`` plane: at least ``MIN_PANEL``
    display pixels on its longer side, 1 for planes that large already."""
    return max(1, min(16, math.ceil(MIN_PANEL / max(*shape[:2], 1))))


def compose(panels: list[tuple[str, np.ndarray]], caption: list[str],
            items: list[tuple[str, Any]], scale: int = 1) -> Picture:
    """Panels ``(title, (h, w, 3) uint8)`` of one size, already enlarged ``scale`` times
    (``display_scale``), side by side with the ``caption`` lines above and the legend
    ``items`` below."""
    from PIL import Image, ImageDraw

    ph, pw = panels[0][1].shape[:2]
    total = 2 * _PAD + len(panels) * pw + (len(panels) - 1) * _GAP
    style = style_for(total)
    pad, font = style.px(_PAD), _font(style.size)
    lines = [w for text in caption for w in _wrap(text, total - 2 * _PAD, style)]
    line = style.size + style.px(6)
    titles_top = pad + line * len(lines)
    panel_top = titles_top + line
    placed, legend_height = _legend_layout(items, total, style)
    legend_top = panel_top + ph + pad // 2
    canvas = Image.new("RGB", (total, legend_top + legend_height), _PAPER)
    draw = ImageDraw.Draw(canvas)
    for index, text in enumerate(lines):
        draw.text((_PAD, pad + index * line), text, fill=_INK, font=font)
    origins = []
    for index, (title, rgb) in enumerate(panels):
        left = _PAD + index * (pw + _GAP)
        draw.text((left, titles_top), title, fill=_INK, font=font)
        canvas.paste(Image.fromarray(rgb), (left, panel_top))
        origins.append((panel_top, left))
    _draw_legend(draw, placed, legend_top, style)
    return Picture(np.asarray(canvas), scale, origins, legend_top)


def caption_lines(title: str, labels: np.ndarray, gt: np.ndarray | None,
                  dice: float | None = None, where: str = "") -> list[str]:
    """The caption: ``"<title> · Dice 0.8123"`` (Dice only with a ground truth; computed by
    ``case_dice`` when not given), then the slice of a volume (``where``)."""
    head = [title] if title else []
    if gt is not None:
        dice = case_dice(labels, gt) if dice is None else dice
        head.append("Dice n/a" if math.isnan(dice) else f"Dice {dice:.4f}")
    return ([" · ".join(head)] if head else []) + ([where] if where else [])


def render_overlay(image: np.ndarray, labels: np.ndarray, gt: np.ndarray | None = None, *,
                   affine: np.ndarray | None = None, names: dict[int, str] | None = None,
                   title: str = "", dice: float | None = None) -> Picture:
    """The overlay picture of one case (module docstring).

    Args:
        image: ``(C, *spatial)`` intensities: a 2-D image of 3 or 4 channels in its colours,
            else channel 0 in grey (``unetkit.report.overlays.display_image``).
        labels: ``(*spatial)`` prediction.
        gt: ``(*spatial)`` ground truth, or None (then no error map and no Dice).
        affine: voxel -> RAS+ affine of a volume (radiological display), or None.
        names: ``{label: name}`` for the legend (default "class N").
        title: the caption's first words, e.g. the case id.
        dice: the case's Dice for the caption (default: computed from ``labels`` and ``gt``).
    """
    grey, pred, truth, where = display_planes(display_image(image), labels, gt, affine)
    caption = caption_lines(title, labels, gt, dice, where)
    scale = display_scale(pred.shape)
    if truth is None:
        panels = [("prediction", overlay_panel(grey, pred, scale=scale))]
    else:
        panels = [("prediction + truth outline", overlay_panel(grey, pred, truth, scale=scale)),
                  ("errors", error_panel(grey, pred, truth, scale=scale))]
    return compose(panels, caption, legend_entries(labels, gt, names), scale)


def overlay_picture(image: np.ndarray, labels: np.ndarray, gt: np.ndarray | None = None,
                    **options: Any) -> np.ndarray:
    """``render_overlay(...).rgb``: the picture as ``(H, W, 3)`` uint8."""
    return render_overlay(image, labels, gt, **options).rgb


def save_overlay(path: str | PathLike, image: np.ndarray, labels: np.ndarray,
                 gt: np.ndarray | None = None, **options: Any) -> PathLike:
    """Write ``overlay_picture(image, labels, gt, **options)`` as a PNG at ``path``; options
    as ``render_overlay`` (``affine``, ``names``, ``title``, ``dice``). Returns the path."""
    from pathlib import Path

    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay_picture(image, labels, gt, **options)).save(path)
    return path
