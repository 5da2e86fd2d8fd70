"""``unetkit evaluate`` (scores and the HTML report) and ``unetkit export``."""

from __future__ import annotations

from typing import Any

import typer

from unetkit.cli.app import (  # noqa: F401
    app,
    console,
    err_console,
    fail,
    log_to_console,
    require_positive,
)


def _parse_labels(text: str) -> dict[int, str]:
    """``'1,2'`` or ``'1=liver,2=tumour'`` -> ``{1: name or '', ...}`` (an empty name is
    filled from dataset.json or ``classN`` by the library)."""
    labels = {}
    for item in (p.strip() for p in text.split(",") if p.strip()):
        value, _, name = item.partition("=")
        if not value.strip().isdigit():
            raise ValueError(f"--labels {text!r}: expected e.g. 1,2 or 1=liver,2=tumour")
        labels[int(value)] = name.strip()
    return labels


def _parse_regions(items: list[str]) -> Any:
    """``["whole=1,2,3", "core=2,3"]`` -> regions (``unetkit.config.regions.Region``)."""
    from unetkit.config.regions import Region

    regions = []
    for item in items:
        name, _, values = item.partition("=")
        numbers = [v.strip() for v in values.split(",")]
        if not name.strip() or not all(v.isdigit() for v in numbers):
            raise ValueError(f"--region {item!r}: expected NAME=LABELS, e.g. whole_tumor=1,2,3")
        regions.append(Region(name=name.strip(), labels=[int(v) for v in numbers]))
    return regions


def _fitting_table(title: str, corner: str, metrics: list[str], rows: dict[str, list[str]],
                   width: int) -> Any:
    """A table of ``rows`` ``{name: a value per metric}``, one row per name when every header
    word fits in ``width`` characters, else one row per metric. Headers break after ``_`` and
    before a unit (``[mm]``) and are never cut (``volume_d…``): a column too narrow folds."""
    from rich.box import SIMPLE_HEAD
    from rich.markup import escape
    from rich.table import Table

    def table(columns: list[str], cells: list[list[str]]) -> Table:
        out = Table(title=title, box=SIMPLE_HEAD)
        for index, name in enumerate(columns):
            out.add_column(escape(name), justify="left" if index == 0 else "right",
                           overflow="fold")
        for row in cells:
            out.add_row(*map(escape, row))
        return out

    headers = [m.replace("_", "_\n").replace(" [", "\n[") for m in metrics]
    wide = [[name, *values] for name, values in rows.items()]
    if _least_width([corner, *headers], wide) <= width:
        return table([corner, *headers], wide)
    return table(["metric", *rows], [[metric, *(values[i] for values in rows.values())]
                                     for i, metric in enumerate(metrics)])


def _least_width(columns: list[str], rows: list[list[str]]) -> int:
    """Characters a table needs to show every word of its headers and cells whole (one space
    either side of each column, a rule between columns)."""
    words = [[w for text in (column, *(row[i] for row in rows)) for w in text.split()]
             for i, column in enumerate(columns)]
    return sum(max(map(len, column), default=1) + 3 for column in words) + 1


def _cases(count: int) -> str:
    return f"{count} case{'' if count == 1 else 's'}"


def _probability_table(result: Any, inside: str, width: int = 80) -> Any:
    """Threshold-free scores: pooled over all pixels, and the mean over cases."""
    from unetkit.evaluate import PROBABILITY_METRICS

    rows = {name: [f"{values[m]:.4f}" for m in PROBABILITY_METRICS]
            for name, values in (("pooled pixels", result.probability.pooled),
                                 ("mean of cases", result.probability.mean))}
    return _fitting_table(f"threshold-free scores of {_cases(len(result.probability_cases))}"
                          f"{inside}", "over", list(PROBABILITY_METRICS), rows, width)


def _metrics_table(result: Any, inside: str, width: int = 80) -> Any:
    """The mean over cases of every metric, per label (``_fitting_table``)."""
    from unetkit.evaluate import EVAL_METRICS, format_value, header

    rows = {}
    for label, name in sorted(result.labels.items()):
        stats = result.summary["per_class"].get(label, {})
        rows[f"{label} {name}"] = [format_value(stats[m]["mean"]) if m in stats else "-"
                                   for m in EVAL_METRICS]
    corner = "region" if result.regions else "label"
    return _fitting_table(f"{_cases(len(result.per_case))} · mean over cases{inside}", corner,
                          [header(m, result.units) for m in EVAL_METRICS], rows, width)


@app.command()
def evaluate(
    pred_dir: str = typer.Argument(..., help="folder of predicted masks"),
    gt_dir: str = typer.Argument(..., help="folder of ground-truth masks (or data folder)"),
    labels: str = typer.Option(None, "--labels", help="labels to score: 1,2 or 1=liver,2=tumour "
                               "(default: dataset.json's labels, found in GT_DIR or its parent, "
                               "and every non-zero label of the ground truth)"),
    spacing: str = typer.Option(None, "--spacing", help="voxel size in mm, e.g. 0.8,0.8,2.5 "
                                "(default: from each ground-truth file)"),
    out: str = typer.Option(None, "--out", "-o",
                            help="report folder (default PRED_DIR/evaluation)"),
    images: str = typer.Option(None, "--images", help="images folder for the overlays "
                               "(default: the inputs unetkit predict recorded in "
                               "PRED_DIR/predict.json)"),
    tau: float = typer.Option(1.0, "--tau", help="surface Dice tolerance (mm, or voxels "
                              "without a spacing)"),
    roi: str = typer.Option(None, "--roi", help="folder of regions of interest (nonzero = "
                            "inside) named like the masks: only pixels inside are scored"),
    probabilities: str = typer.Option(None, "--probabilities", help="probability maps for ROC/PR "
                                      "AUC of two-class tasks (default: PRED_DIR/probabilities "
                                      "when present)"),
    ignore_label: int = typer.Option(None, "--ignore-label", help="ground-truth value of "
                                     "unlabelled pixels, scored nowhere (default: the label "
                                     "named ignore in dataset.json, if any)"),
    force: bool = typer.Option(False, "--force", help="replace the tables and report of an "
                               "earlier evaluation in --out"),
    region: list[str] = typer.Option([], "--region", metavar="NAME=LABELS", help="score an "
                                     "overlapping region, the union of labels, e.g. "
                                     "whole_tumor=1,2,3 (repeatable; default: the regions "
                                     "dataset.json declares, unless --labels)"),
) -> None:
    """Score predictions against ground truth: CSV, summary JSON and an HTML report."""
    from pathlib import Path

    from rich.markup import escape

    from unetkit.config import parse_spacing
    from unetkit.evaluate import evaluate_folders
    from unetkit.report import write_html_report

    out_dir = Path(out) if out else Path(pred_dir) / "evaluation"
    if not (tau >= 0 and tau != float("inf")):
        fail(f"--tau {tau:g}: expected a tolerance of 0 or more (mm, or voxels without a "
             "spacing)", code=2)
    try:
        spacing_values = parse_spacing(spacing) if spacing else None
        result = evaluate_folders(pred_dir, gt_dir, out_dir,
                                  labels=_parse_labels(labels) if labels else None,
                                  spacing=spacing_values, tau=tau, images_dir=images,
                                  report=write_html_report, roi_dir=roi,
                                  probabilities_dir=probabilities, ignore_label=ignore_label,
                                  force=force, regions=_parse_regions(region) or None)
    except (FileNotFoundError, ValueError) as error:  # OutputError included
        fail(escape(str(error)), code=2)
    except OSError as error:  # disk full, permission: no partial file left
        fail(escape(str(error)), code=1)
    inside = " · inside the regions of interest" if roi else ""
    console.print(_metrics_table(result, inside, console.width))
    if result.probability is not None:
        console.print(_probability_table(result, inside, console.width))
    for kind, path in result.files.items():
        console.print(f"{kind}: {path}")
    if result.failed:
        for case, error in result.failed:
            err_console.print(f"[yellow]not evaluated:[/] {escape(case)}: {escape(error)}")
        raise typer.Exit(1)


@app.command()
def export(
    checkpoint: str = typer.Argument(..., help="checkpoint .pt or run folder"),
    format: str = typer.Option("onnx", "--format", "-f", help="onnx | torchscript"),
    out: str = typer.Option(None, "--out", "-o", help="output file (default: next to the "
                            "checkpoint, .onnx or .ts)"),
    tolerance: float = typer.Option(1e-4, "--tolerance", help="max abs difference allowed"),
    dynamo: bool = typer.Option(False, "--dynamo", help="ONNX via torch.export"),
    force: bool = typer.Option(False, "--force", help="replace an existing --out file (never "
                               "the checkpoint)"),
) -> None:
    """Export to ONNX or TorchScript (dynamic axes), verified against PyTorch."""
    from rich.markup import escape

    from unetkit.export import ExportError, export_checkpoint
    from unetkit.runtime.checkpoint import CheckpointError

    require_positive(tolerance, "--tolerance", " (the largest max abs difference to PyTorch "
                     "accepted, e.g. 1e-4)")
    try:
        result = export_checkpoint(checkpoint, out, format, tolerance=tolerance, dynamo=dynamo,
                                   force=force)
    except (CheckpointError, ValueError, ImportError) as error:  # OutputError included
        fail(escape(str(error)), code=2)
    except (ExportError, OSError) as error:  # OSError: disk full, permission (WriteError)
        fail(escape(str(error)))
    console.print(f"wrote {result.path} ({result.format})")
    for size, diff in result.max_abs_diff.items():
        console.print(f"  input {'x'.join(map(str, size))}: max abs difference to PyTorch "
                      f"{diff:.3g}")
