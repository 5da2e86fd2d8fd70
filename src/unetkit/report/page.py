"""The evaluation report: one self-contained HTML page (inline CSS, JS and images)."""

from __future__ import annotations

import base64
import html
import io as _bytes_io
import math
from os import PathLike
from typing import Any

from unetkit.report.curves import roc_pr_png
from unetkit.report.picture import render_overlay

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:13px}th,td{padding:4px 8px;border-bottom:1px solid #ddd;
text-align:right}th{background:#f3f3f3;cursor:pointer;user-select:none;position:sticky;top:0}
td:first-child,th:first-child,td:nth-child(3),th:nth-child(3){text-align:left}
#summary td:nth-child(2),#summary th:nth-child(2){text-align:left}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
img{max-width:100%}.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;
padding:8px;border-radius:6px;max-width:100%;box-sizing:border-box}
.card img{display:block;height:auto;image-rendering:pixelated}
.muted{color:#777}.bad{color:#b00}
"""

# Click a header to sort by that column (numbers numerically, empty cells last).
_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var table = th.closest('table'), body = table.tBodies[0];
    var asc = !th.classList.contains('asc');
    table.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
    th.classList.add(asc ? 'asc' : 'desc');
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function(a, b){
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      if (x === '') return 1; if (y === '') return -1;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function(r){body.appendChild(r);});
  });
});
"""


def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _cell(value: Any) -> str:
    """A table cell: numbers shown as ``format_value`` writes them, sorted by their value."""
    from unetkit.evaluate.units import format_value

    if isinstance(value, float):
        if math.isnan(value):
            return '<td data-v="" class="muted">–</td>'
        return f'<td data-v="{value!r}">{html.escape(format_value(value))}</td>'
    text = html.escape(str(value))
    return f'<td data-v="{text}">{text}</td>'


def _box_plots_png(result: Any, metrics: tuple[str, ...]) -> bytes:
    """One box plot per metric, one box per class, over cases (NaN left out)."""
    import matplotlib.pyplot as plt

    labels = sorted(result.labels)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        data = []
        for label in labels:
            values = [case[label][metric] for case in result.per_case.values() if label in case]
            data.append([v for v in values if not math.isnan(v)])
        ax.boxplot([d if d else [math.nan] for d in data], showmeans=True)
        ax.set_xticks(range(1, len(labels) + 1),
                      [result.labels[label] for label in labels], rotation=30, fontsize=8)
        unit = result.units.get(metric)
        ax.set_title(metric.replace("_", " ") + (f" [{unit}]" if unit else ""), fontsize=10)
    fig.tight_layout()
    buffer = _bytes_io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def _overlay_cards(overlays: list[dict[str, Any]], names: dict[int, str]) -> str:
    """One card per case: the overlay picture (caption with the case and its Dice, legend)."""
    from PIL import Image

    cards = []
    for item in overlays:
        buffer = _bytes_io.BytesIO()
        picture = render_overlay(item["image"], item["pred"], item["gt"],
                                 affine=item.get("affine"), names=names,
                                 title=f"{item['kind']}: {item['case']}", dice=item["score"])
        Image.fromarray(picture.rgb).save(buffer, format="PNG")
        score = "n/a" if math.isnan(item["score"]) else f"{item['score']:.4f}"
        text = f"{item['kind']}: {item['case']} – Dice {score}"
        cards.append(f'<div class="card"><img alt="{html.escape(text)}" '
                     f'width="{picture.rgb.shape[1]}" '
                     f'src="{_png_data_uri(buffer.getvalue())}"></div>')
    return '<div class="cards">' + "".join(cards) + "</div>"


def overlay_explanation(overlays: list[dict[str, Any]], images_note: str = "") -> str:
    """What the report's pictures show, said only of the data shown: how the images are
    drawn (colour photographs, grey, or black when unknown), the slice of volumes (their
    orientation only when the files carry one), and where the images come from."""
    import numpy as np

    from unetkit.report.overlays import is_colour

    several = any(len((set(np.unique(item["gt"])) | set(np.unique(item["pred"]))) - {0}) > 1
                  for item in overlays)
    text = ["Left: the prediction filled in its class colours, the ground truth outlined in "
            "yellow. Right: the errors: green correct, magenta false positive (predicted, not "
            "in the ground truth), cyan false negative (missed)"
            + (", orange wrong class." if several else ".")]
    colour = [is_colour(item["image"]) for item in overlays if np.any(item["image"])]
    if any(colour):
        text.append("The images are shown in their own colours.")
    if not all(colour):
        text.append("The images are shown in grey, contrast-stretched between their 1st and "
                    "99th percentiles.")
    volumes = [item for item in overlays if item["pred"].ndim == 3]
    if any(item.get("affine") is not None for item in volumes):
        text.append("Volumes show the axial slice through the largest ground-truth structure, "
                    "the patient's right on the left (radiological convention).")
    if any(item.get("affine") is None for item in volumes):
        text.append("Volumes without an orientation (NumPy, TIFF stacks) show the slice "
                    "through the largest ground-truth structure along the last array axis, as "
                    "stored.")
    return " ".join(text + ([images_note] if images_note else []))


def _head(metric: str, units: dict[str, str]) -> str:
    from unetkit.evaluate.units import header

    return f"<th>{html.escape(header(metric, units))}</th>"


def _summary_table(result: Any, metrics: tuple[str, ...]) -> str:
    head = "".join(_head(m, result.units) for m in metrics)
    rows = []
    for label in sorted(result.labels):
        stats = result.summary["per_class"].get(label, {})
        cells = "".join(
            _cell(stats[m]["mean"]) if m in stats else _cell(math.nan) for m in metrics)
        rows.append(f"<tr>{_cell(label)}{_cell(result.labels[label])}{cells}</tr>")
    fg = result.summary.get("foreground_mean", {})
    cells = "".join(_cell(float(fg.get(m, math.nan))) for m in metrics)
    rows.append(f"<tr><td><b>mean</b></td><td>foreground</td>{cells}</tr>")
    return (f'<table id="summary"><thead><tr><th>label</th><th>name</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _probability_section(result: Any) -> str:
    """Threshold-free scores (pooled and mean over cases) and their ROC / PR curves."""
    from unetkit.evaluate import PROBABILITY_METRICS

    scores = result.probability
    if scores is None:
        return ""
    head = "".join(f"<th>{m}</th>" for m in PROBABILITY_METRICS)
    rows = ""
    for name, values in (("pooled pixels", scores.pooled), ("mean of cases", scores.mean)):
        cells = "".join(_cell(float(values[m])) for m in PROBABILITY_METRICS)
        rows += f"<tr><td>{name}</td>{cells}</tr>"
    where = " inside the regions of interest" if result.summary.get("roi_dir") else ""
    return (f"<h2>Threshold-free scores ({len(result.probability_cases)} cases)</h2>"
            f'<p class="muted">From the probability maps, every pixel{where}; pooled: all '
            "cases' pixels as one set (the published vessel protocol). Accuracy to F1 score the "
            "masks as written.</p>"
            f'<table id="probability"><thead><tr><th>over</th>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table>"
            f'<img alt="ROC and precision-recall curves" '
            f'src="{_png_data_uri(roc_pr_png(scores))}">')


def render_html_report(result: Any, overlays: list[dict[str, Any]], title: str = "") -> str:
    """The evaluation report as one self-contained HTML page (inline CSS, JS and images).

    Args:
        result: an ``unetkit.evaluate.EvaluationResult``.
        overlays: dicts with ``kind``, ``case``, ``score``, ``image``, ``pred``, ``gt`` and
            optionally ``affine`` (of a volume: radiological display).
        title: page title (default: "unetkit evaluation").
    """
    from unetkit.evaluate import EVAL_METRICS, PROBABILITY_METRICS, table_rows

    title = html.escape(title or "unetkit evaluation")
    columns = ("case", "label", "name", *EVAL_METRICS,
               *(PROBABILITY_METRICS if result.probability is not None else ()))
    head = "".join(_head(name, result.units) for name in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(k, math.nan)) for k in columns) + "</tr>"
                   for row in table_rows(result))
    plots = _png_data_uri(_box_plots_png(result, ("dice", "iou", "hd95", "assd",
                                                  "surface_dice")))
    failed = "".join(f"<li class='bad'>{html.escape(c)}: {html.escape(e)}</li>"
                     for c, e in result.failed)
    scope = (f", {len(result.failed)} failed" if failed else "") + (
        " inside their regions of interest" if result.summary.get("roi_dir") else "")
    length = result.units.get("hd95", "the units of the spacing")
    tolerance = result.summary.get("surface_dice_tolerance")
    tolerance = f" (surface Dice tolerance {html.escape(tolerance)})" if tolerance else ""
    volume = result.units.get("volume_difference")
    if volume:
        litres = " (1 ml = 1,000 mm³)" if volume == "mm³" else ""
        tolerance += f", volumes in {html.escape(volume)}{litres}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{_CSS}</style></head><body>
<h1>{title}</h1>
<p>{len(result.per_case)} cases evaluated{scope}.
Distances in {html.escape(length)}{tolerance}; NaN (–) where a label is absent from both masks.</p>
<h2>Summary (mean over cases)</h2>{_summary_table(result, EVAL_METRICS)}
{_probability_section(result)}
<h2>Distribution over cases</h2><img alt="box plots" src="{plots}">
<h2>Best and worst cases</h2>
<p class="muted">{html.escape(overlay_explanation(overlays, result.images_note))}</p>
{_overlay_cards(overlays, result.labels)}
<h2>Per case</h2><p class="muted">Click a column header to sort.</p>
<table id="cases" class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
{f"<h2>Failed cases</h2><ul>{failed}</ul>" if failed else ""}
<script>{_JS}</script></body></html>
"""


def write_html_report(out_dir: str | PathLike, result: Any,
                      overlays: list[dict[str, Any]]) -> PathLike:
    """Write ``render_html_report`` to ``out_dir/report.html``; returns the path."""
    from pathlib import Path

    from unetkit.runtime.atomic import write_text

    return write_text(Path(out_dir) / "report.html", render_html_report(result, overlays))
