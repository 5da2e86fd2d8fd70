"""``unetkit evaluate`` (scores and the HTML report) and ``unetkit export``."""

from __future__ import annotations

from typing import Any

import typer

from unetkit.cli.app import app, console, err_console, fail, log_to_console  # noqa: F401


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


def _probability_table(result: Any, inside: str) -> Any:
    """Threshold-free scores: pooled over all pixels, and the mean over cases."""
    from rich.table import Table

    from unetkit.evaluate import PROBABILITY_METRICS

    table = Table(title=f"threshold-free scores of {len(result.probability_cases)} cases{inside}")
    table.add_column("over", justify="left")
    for metric in PROBABILITY_METRICS:
        table.add_column(metric, justify="right")
    for name, values in (("pooled pixels", result.probability.pooled),
                         ("mean of cases", result.probability.mean)):
        table.add_row(name, *(f"{values[m]:.4f}" for m in PROBABILITY_METRICS))
    return table


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
    images: str = typer.Option(None, "--images", help="images folder for the overlays"),
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
) -> None:
    """Score predictions against ground truth: CSV, summary JSON and an HTML report."""
    from pathlib import Path

    from rich.markup import escape
    from rich.table import Table

    from unetkit.evaluate import EVAL_METRICS, evaluate_folders, format_value, header
    from unetkit.report import write_html_report

    out_dir = Path(out) if out else Path(pred_dir) / "evaluation"
    try:
        spacing_values = [float(v) for v in spacing.split(",")] if spacing else None
        result = evaluate_folders(pred_dir, gt_dir, out_dir,
                                  labels=_parse_labels(labels) if labels else None,
                                  spacing=spacing_values, tau=tau, images_dir=images,
                                  report=write_html_report, roi_dir=roi,
                                  probabilities_dir=probabilities, ignore_label=ignore_label)
    except (FileNotFoundError, ValueError) as error:
        fail(escape(str(error)), code=2)
    inside = " · inside the regions of interest" if roi else ""
    table = Table(title=f"{len(result.per_case)} cases · mean over cases{inside}")
    table.add_column("label", justify="left")
    for metric in EVAL_METRICS:
        table.add_column(escape(header(metric, result.units)), justify="right")
    for label, name in sorted(result.labels.items()):
        stats = result.summary["per_class"].get(label, {})
        table.add_row(escape(f"{label} {name}"), *(format_value(stats[m]["mean"])
                                                   if m in stats else "-" for m in EVAL_METRICS))
    console.print(table)
    if result.probability is not None:
        console.print(_probability_table(result, inside))
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
) -> None:
    """Export to ONNX or TorchScript (dynamic axes), verified against PyTorch."""
    from rich.markup import escape

    from unetkit.export import ExportError, export_checkpoint
    from unetkit.runtime.checkpoint import CheckpointError

    try:
        result = export_checkpoint(checkpoint, out, format, tolerance=tolerance, dynamo=dynamo)
    except (CheckpointError, ValueError, ImportError) as error:
        fail(escape(str(error)), code=2)
    except ExportError as error:
        fail(escape(str(error)))
    console.print(f"wrote {result.path} ({result.format})")
    for size, diff in result.max_abs_diff.items():
        console.print(f"  input {'x'.join(map(str, size))}: max abs difference to PyTorch "
                      f"{diff:.3g}")
