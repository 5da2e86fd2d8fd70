"""The ``unetkit`` command line: arguments -> config -> library calls; no logic of its own."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="unetkit: train, predict, evaluate and export U-Net segmentation models.",
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    """Print a user-facing error (no traceback) and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


# --- command: info ---
@app.command()
def info(
    model: str = typer.Argument("unet", help="unet | resunet | attention_unet | unetplusplus"),
    input_size: str = typer.Option(
        None, "--input-size", "-s", help="spatial size, e.g. 256,256 (default 256 per axis in 2D, "
        "96 in 3D)"
    ),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="model option key=value (repeatable), e.g. -o widths=[8,16,32]"
    ),
    spatial_dims: int = typer.Option(None, "--spatial-dims", help="2 or 3"),
    in_channels: int = typer.Option(None, "--in-channels"),
    out_channels: int = typer.Option(None, "--out-channels"),
    base_width: int = typer.Option(None, "--base-width"),
    depth: int = typer.Option(None, "--depth", help="number of poolings, 1..6"),
    norm: str = typer.Option(None, "--norm", help="none | batch | instance | group"),
    upsample: str = typer.Option(None, "--upsample", help="transpose | interpolate"),
    padding: str = typer.Option(None, "--padding", help="same | valid"),
    deep_supervision: bool = typer.Option(False, "--deep-supervision"),
) -> None:
    """Show a model's stages: output shapes, parameters, FLOPs and activation memory."""
    from rich.markup import escape
    from rich.table import Table

    from unetkit.nn import build_model, model_summary
    from unetkit.nn.summary import summary_table

    options = _model_options(option)
    typed = dict(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                 base_width=base_width, depth=depth, norm=norm, upsample=upsample, padding=padding)
    options.update({k: v for k, v in typed.items() if v is not None})
    if deep_supervision:
        options["deep_supervision"] = True
    try:
        net = build_model(model, **options)
        size = _spatial_size(input_size, net.spatial_dims, default=256 if net.spatial_dims == 2
                             else 96)
        rows = model_summary(net, size)
    except ValueError as error:
        fail(escape(str(error)))
    table = Table(title=f"{type(net).__name__} {net.spatial_dims}D · widths "
                  f"{'-'.join(map(str, net.widths))} · norm {net.options.norm} · padding "
                  f"{net.padding} · input {net.in_channels}×{'×'.join(map(str, size))}")
    for column, justify in (("stage", "left"), ("output", "right"), ("params", "right"),
                            ("GFLOPs", "right"), ("act. MB", "right"), ("note", "left")):
        table.add_column(column, justify=justify)
    lines = summary_table(rows)
    for index, line in enumerate(lines[:-1]):
        table.add_row(*line, end_section=index == len(lines) - 2)
    table.add_row(*lines[-1], style="bold")
    console.print(table)
    total = lines[-1]
    console.print(f"[bold]{total[2]}[/] parameters · [bold]{total[3]}[/] GFLOPs (2 × multiply-adds)"
                  f" · [bold]{total[4]}[/] MB of fp32 stage outputs per sample")


def _model_options(items: list[str]) -> dict:
    """``["norm=batch", "widths=[8,16]"]`` -> ``{"norm": "batch", "widths": [8, 16]}`` (YAML)."""
    import yaml

    options = {}
    for item in items:
        if "=" not in item:
            fail(f"--option {item!r}: expected key=value, e.g. --option norm=batch")
        key, raw = item.split("=", 1)
        options[key.strip().replace("-", "_")] = yaml.safe_load(raw)
    return options


def _spatial_size(text: str | None, spatial_dims: int, default: int) -> tuple[int, ...]:
    """``"256,256"`` / ``"256x256"`` / ``"256"`` (repeated per axis) -> ``(256, 256)``."""
    if text is None:
        return (default,) * spatial_dims
    parts = text.replace("x", ",").split(",")
    if not all(p.strip().isdigit() for p in parts):
        fail(f"--input-size {text!r}: expected integers such as 256,256")
    size = tuple(int(p) for p in parts)
    return size * spatial_dims if len(size) == 1 else size


# --- command: check ---
@app.command()
def check(
    data_dir: str = typer.Argument(..., help="folder with images/ + masks/ (or nnU-Net imagesTr/)"),
    labels: str | None = typer.Option(
        None, "--labels", help="declared label values, e.g. 0,1,2 (default: dataset.json/masks)"
    ),
    offset: bool = typer.Option(False, "--offset", help="also measure how far the masks lie "
                                "off the images (sub-voxel; for data.image_offset)"),
) -> None:
    """Check a data folder: report ALL problems (each naming its file) and summarise it."""
    from rich.markup import escape
    from rich.table import Table

    from unetkit.data.doctor import check_dataset

    declared = None
    if labels:
        try:
            declared = [int(v) for v in labels.split(",") if v.strip()]
        except ValueError:
            fail(f"--labels {labels!r}: expected comma-separated integers, e.g. 0,1")
    report = check_dataset(data_dir, labels=declared)
    for message in report.errors:
        console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    for message in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True, highlight=False)
    table = Table(title=f"data set {data_dir}", show_header=False)
    for name, value in report.summary_rows():
        table.add_row(escape(name), escape(value))
    console.print(table)
    if offset and report.ok:
        _print_offsets(data_dir)
    verdict = "[bold green]OK[/]" if report.ok else "[bold red]NOT OK[/]"
    console.print(f"{verdict}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    if not report.ok:
        raise typer.Exit(1)


def _print_offsets(data_dir: str) -> None:
    from unetkit.data.offset import folder_offsets, median_offset

    offsets = folder_offsets(data_dir)
    for case_id, values in offsets.items():
        console.print(f"  {case_id}: mask offset {[round(v, 2) for v in values]} voxels")
    suggested = median_offset(list(offsets.values()))
    console.print(f"masks lie {suggested} voxels off the images (median of {len(offsets)} "
                  f"cases): set data.image_offset to this (or auto) if the cases agree")


# --- command: train ---
class _TrainProgress:
    """A rich progress bar fed by ``fit``'s ``on_step`` callback (rank 0 only)."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
            MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("Dice {task.fields[dice]}"), TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"), console=err_console, transient=False,
        )
        self.task = self.bar.add_task("train", total=None, epoch=0, epochs="?", loss=0.0, dice="-",
                                      eta="-")
        self.first: tuple[float, int] | None = None

    def __call__(self, info: dict) -> None:
        import time

        from unetkit.train.budget import format_seconds

        now = time.monotonic()
        self.first = self.first or (now, info["step"])
        eta = info["eta_s"]  # the time budget's remainder, when there is one
        if eta is None and info["step"] > self.first[1]:
            per_step = (now - self.first[0]) / (info["step"] - self.first[1])
            eta = per_step * info["steps_left"]
        dice = "-" if info["dice"] is None else f"{info['dice']:.4f}"
        self.bar.update(self.task, completed=info["step"], total=info["total_steps"],
                        epoch=info["epoch"] + 1, epochs=info["epochs"], loss=info["loss"],
                        dice=dice, eta="-" if eta is None else format_seconds(max(eta, 0.0)))

    def finish(self) -> None:
        task = self.bar.tasks[0]
        self.bar.update(self.task, total=task.completed, eta="0.0s")
        self.bar.stop()


def _log_to_console(verbose: bool = True) -> None:
    import logging

    from rich.logging import RichHandler

    logger = logging.getLogger("unetkit")
    handler = next((h for h in logger.handlers if isinstance(h, RichHandler)), None)
    if handler is None:
        handler = RichHandler(console=err_console, show_path=False, markup=False)
        logger.addHandler(handler)
    # The console shows warnings only when quiet; RUN/train.log always gets INFO.
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.setLevel(logging.INFO)


@app.command()
def train(
    data: str = typer.Option(None, "--data", "-d", help="folder with images/ + masks/"),
    config_file: str = typer.Option(None, "--config", "-c", help="YAML config file"),
    out: str = typer.Option(None, "--out", "-o", help="run folder (default runs/<timestamp>)"),
    time_budget: str = typer.Option(None, "--time", help="time budget, e.g. 90s, 10m, 2h"),
    epochs: int = typer.Option(None, "--epochs"),
    lr: float = typer.Option(None, "--lr"),
    batch_size: int = typer.Option(None, "--batch-size"),
    patch_size: str = typer.Option(None, "--patch-size", help="e.g. 256,256 or 256"),
    model: str = typer.Option(None, "--model", help="unet | resunet | attention_unet | ..."),
    device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps"),
    precision: str = typer.Option(None, "--precision", help="auto | fp32 | bf16 | fp16"),
    fold: int = typer.Option(None, "--fold", help="k-fold: which fold validates"),
    folds: int = typer.Option(None, "--folds", help="k-fold: number of folds"),
    val_fraction: float = typer.Option(None, "--val-fraction"),
    resume: str = typer.Option(None, "--resume", help="run folder to continue exactly"),
    seed: int = typer.Option(None, "--seed"),
    overrides: list[str] = typer.Option([], "--set", help="section.field=value (repeatable)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar, warnings only"),
) -> None:
    """Train a segmentation network on a folder of images and masks."""
    from rich.markup import escape

    from unetkit.config import ConfigError, build_config, parse_size
    from unetkit.train.checkpoint import CheckpointError
    from unetkit.train.distributed import launched_by_torchrun

    values = {
        "train.time_budget": time_budget, "train.epochs": epochs, "train.lr": lr,
        "data.batch_size": batch_size, "model.name": model, "train.device": device,
        "train.precision": precision, "data.fold": fold, "data.folds": folds,
        "data.val_fraction": val_fraction, "train.seed": seed,
    }
    try:
        if patch_size is not None:
            values["data.patch_size"] = parse_size(patch_size)
        config = build_config(config_file, values, overrides)
    except ConfigError as error:
        fail(escape(str(error)), code=2)
    if data is None and resume is None:
        fail("--data DIR is needed (or --resume RUN_DIR)", code=2)
    import os

    from unetkit.train.data import DataError
    from unetkit.train.loop import fit

    main_rank = not launched_by_torchrun() or os.environ.get("RANK") == "0"
    _log_to_console(verbose=not quiet and main_rank)
    progress = _TrainProgress() if main_rank and not quiet else None
    try:
        if progress is not None:
            progress.bar.start()
        result = fit(None if resume and not _given(values, overrides, config_file) else config,
                     data, out, resume=resume, on_step=progress)
    except KeyboardInterrupt:
        fail(f"interrupted; the last checkpoint is saved: resume with --resume {out or resume}",
             code=130)
    except (DataError, ConfigError, CheckpointError, ValueError, FileExistsError) as error:
        fail(escape(str(error)), code=2 if isinstance(error, ConfigError) else 1)
    finally:
        if progress is not None:
            progress.finish()
    if main_rank:
        best = "-" if result.best_metric is None else f"{result.best_metric:.4f}"
        console.print(f"[bold green]done[/] ({result.stopped}): {result.epochs} epochs, "
                      f"{result.steps} steps, best val Dice {best} (epoch {result.best_epoch})")
        if result.calibration:
            c = result.calibration
            console.print(f"decision threshold {c['threshold']:.2f} (calibrated: mean "
                          f"F{c['beta']:g} {c['score']:.4f} on {c['images']} {c['source']} "
                          f"images)")
        console.print(f"run folder: {result.run_dir}  (predict with: unetkit predict "
                      f"{result.run_dir}/best.pt IMAGES -o OUT)")


def _given(values: dict, overrides: list[str], config_file: str | None) -> bool:
    """True when the user passed options that a resumed run should take (epochs/time/patience)."""
    keys = ("train.epochs", "train.time_budget")
    return any(values.get(k) is not None for k in keys) or bool(overrides) or bool(config_file)


# --- command: demo ---
@app.command()
def demo(
    out: str = typer.Option("demo_output", "--out", "-o", help="output folder"),
    time_budget: str = typer.Option("2m", "--time", help="training time budget, e.g. 2m"),
    quick: bool = typer.Option(False, "--quick", help="tiny data and network (for smoke tests)"),
) -> None:
    """Synthetic cells -> train a small U-Net (~2 min on CPU) -> predict -> evaluate -> report."""
    from rich.markup import escape
    from rich.table import Table

    from unetkit.config import ConfigError
    from unetkit.demo import run_demo

    _log_to_console()
    progress = _TrainProgress()
    sizes = {"n_train": 6, "n_test": 2, "size": 48} if quick else {}
    try:
        progress.bar.start()
        result = run_demo(out, time_budget, quick=quick, on_step=progress, **sizes)
    except KeyboardInterrupt:
        fail(f"interrupted; partial outputs are in {out}", code=130)
    except (ConfigError, ValueError) as error:
        fail(escape(str(error)), code=2)
    finally:
        progress.finish()
    s = result.summary
    table = Table(title="unetkit demo: synthetic cells (membrane segmentation)")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("held-out images", str(s["held_out_cases"]))
    table.add_row("mean foreground Dice", f"{result.dice:.4f}")
    table.add_row("best validation Dice", "-" if s["best_val_dice"] is None
                  else f"{s['best_val_dice']:.4f}")
    table.add_row("epochs / steps", f"{s['epochs']} / {s['steps']} ({s['stopped']})")
    table.add_row("training time", f"{s['train_seconds']:.0f} s")
    console.print(table)
    for name, path in result.files.items():
        console.print(f"  {name:<11} {path}")
    console.print(f"[bold]output folder:[/] {result.out_dir.resolve()}")


# --- command: predict ---
def _infer_settings(window: str | None, overlap: float | None, tta: str | None,
                    precision: str | None, batch_size: int | None, keep_largest: bool,
                    min_size: int | None, fill_holes: bool) -> dict:
    """Typed predict options -> ``{"infer.field": value}`` (None = keep the checkpoint's)."""
    from unetkit.config import ConfigError, parse_size

    axes = None
    if tta is not None:
        if tta.strip().lower() == "all":
            axes = "all"
        elif tta.strip().lower() in ("", "none", "off"):
            axes = []
        else:
            try:
                axes = [int(a) for a in tta.split(",") if a.strip()]
            except ValueError:
                raise ConfigError(f"--tta {tta!r}: expected spatial axes such as 0,1 or "
                                  "'all'") from None
    return {
        "infer.window": parse_size(window, "--window") if window else None,
        "infer.overlap": overlap, "infer.tta_axes": axes, "infer.precision": precision,
        "infer.batch_size": batch_size,
        "infer.postprocess.keep_largest": True if keep_largest else None,
        "infer.postprocess.min_size": min_size,
        "infer.postprocess.fill_holes": True if fill_holes else None,
    }


@app.command()
def predict(
    checkpoint: str = typer.Argument(..., help="checkpoint .pt, run folder, or exported .onnx"),
    inputs: list[str] = typer.Argument(..., help="image files and/or folders of images"),
    out: str = typer.Option(..., "--out", "-o", help="output folder (created)"),
    onnx: str = typer.Option(None, "--onnx", help="run the network from this .onnx file in "
                             "onnxruntime (same windowing, TTA and post-processing)"),
    save_probabilities: bool = typer.Option(False, "--save-probabilities",
                                            help="also write probabilities/ (NIfTI or .npz)"),
    overlay: bool = typer.Option(False, "--overlay", help="also write overlays/<name>.png"),
    palette: bool = typer.Option(False, "--palette",
                                 help="PNG masks as colour-indexed PNGs with values 0..K-1"),
    window: str = typer.Option(None, "--window", help="window size, e.g. 512,512 (default: "
                               "whole image when it fits the memory budget)"),
    overlap: float = typer.Option(None, "--overlap", help="window overlap fraction [0, 1)"),
    tta: str = typer.Option(None, "--tta", help="mirror TTA over spatial axes: 0,1 | all | none"),
    precision: str = typer.Option(None, "--precision", help="auto | fp32 | bf16 | fp16"),
    batch_size: int = typer.Option(None, "--batch-size", help="windows per forward"),
    keep_largest: bool = typer.Option(False, "--keep-largest",
                                      help="keep the largest component per class"),
    min_size: int = typer.Option(None, "--min-size", help="remove components under N voxels"),
    fill_holes: bool = typer.Option(False, "--fill-holes", help="fill holes in each class"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps"),
    overrides: list[str] = typer.Option([], "--set", help="infer.field=value (repeatable)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Segment images with a trained model; masks keep each input's format and geometry."""
    from pathlib import Path

    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from unetkit.config import ConfigError
    from unetkit.infer.files import collect_inputs, predict_files
    from unetkit.infer.predictor import Predictor
    from unetkit.report import save_overlay
    from unetkit.train.checkpoint import CheckpointError

    try:
        settings = _infer_settings(window, overlap, tta, precision, batch_size, keep_largest,
                                   min_size, fill_holes)
        all_axes = settings["infer.tta_axes"] == "all"
        if all_axes:
            settings["infer.tta_axes"] = None  # resolved below from the model's spatial_dims
        if Path(checkpoint).suffix.lower() == ".onnx":
            predictor = Predictor.from_onnx(checkpoint, settings=settings, overrides=overrides)
        else:
            predictor = Predictor.from_checkpoint(checkpoint, settings=settings,
                                                  overrides=overrides, device=device, onnx=onnx)
        if all_axes:
            predictor.update({"infer.tta_axes": list(range(predictor.config.model.spatial_dims))})
        files = collect_inputs(inputs)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError, ImportError) as error:
        fail(escape(str(error)), code=2)
    if not files:
        fail(f"no supported image files in {', '.join(inputs)}", code=2)
    progress = Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[name]}"), TimeElapsedColumn(),
                        console=err_console, disable=quiet)
    with progress:
        task = progress.add_task("predict", total=len(files), name="")

        def on_case(path: Path, error: str | None) -> None:
            if error:
                progress.console.print(f"[bold red]failed:[/] {escape(str(path))}: "
                                       f"{escape(error)}")
            progress.update(task, advance=1, name=path.name)

        result = predict_files(predictor, files, out, save_probabilities=save_probabilities,
                               overlay=save_overlay if overlay else None, palette=palette,
                               on_case=on_case)
    console.print(f"wrote {len(result.written)} mask(s) to {out}"
                  f" ({predictor.plan.name}, "
                  f"{'onnxruntime' if onnx or checkpoint.lower().endswith('.onnx') else 'torch'})")
    if result.failed:
        fail(f"{len(result.failed)} of {len(files)} input(s) failed: "
             + ", ".join(escape(str(p)) for p, _ in result.failed[:5]))


# --- command: evaluate ---
def _parse_labels(text: str) -> dict[int, str]:
    """``'1,2'`` or ``'1=liver,2=tumour'`` -> ``{1: 'class1' or name, ...}``."""
    labels = {}
    for item in (p.strip() for p in text.split(",") if p.strip()):
        value, _, name = item.partition("=")
        if not value.strip().isdigit():
            raise ValueError(f"--labels {text!r}: expected e.g. 1,2 or 1=liver,2=tumour")
        labels[int(value)] = name.strip() or f"class{int(value)}"
    return labels


@app.command()
def evaluate(
    pred_dir: str = typer.Argument(..., help="folder of predicted masks"),
    gt_dir: str = typer.Argument(..., help="folder of ground-truth masks (or data folder)"),
    labels: str = typer.Option(None, "--labels", help="labels to score: 1,2 or 1=liver,2=tumour "
                               "(default: every non-zero label of the ground truth)"),
    spacing: str = typer.Option(None, "--spacing", help="voxel size, e.g. 0.8,0.8,2.5 (default: "
                                "from each ground-truth file)"),
    out: str = typer.Option(None, "--out", "-o",
                            help="report folder (default PRED_DIR/evaluation)"),
    images: str = typer.Option(None, "--images", help="images folder for the overlays"),
    tau: float = typer.Option(1.0, "--tau", help="surface Dice tolerance (spacing units)"),
) -> None:
    """Score predictions against ground truth: CSV, summary JSON and an HTML report."""
    from pathlib import Path

    from rich.markup import escape
    from rich.table import Table

    from unetkit.evaluate import EVAL_METRICS, evaluate_folders
    from unetkit.report import write_html_report

    out_dir = Path(out) if out else Path(pred_dir) / "evaluation"
    try:
        spacing_values = [float(v) for v in spacing.split(",")] if spacing else None
        result = evaluate_folders(pred_dir, gt_dir, out_dir,
                                  labels=_parse_labels(labels) if labels else None,
                                  spacing=spacing_values, tau=tau, images_dir=images,
                                  report=write_html_report)
    except (FileNotFoundError, ValueError) as error:
        fail(escape(str(error)), code=2)
    table = Table(title=f"{len(result.per_case)} cases · mean over cases")
    for column in ("label", *EVAL_METRICS):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, name in sorted(result.labels.items()):
        stats = result.summary["per_class"].get(label, {})
        table.add_row(f"{label} {name}", *(f"{stats[m]['mean']:.4g}" if m in stats else "-"
                                          for m in EVAL_METRICS))
    console.print(table)
    for kind, path in result.files.items():
        console.print(f"{kind}: {path}")
    if result.failed:
        for case, error in result.failed:
            err_console.print(f"[yellow]not evaluated:[/] {escape(case)}: {escape(error)}")
        raise typer.Exit(1)


# --- command: export ---
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
    from unetkit.train.checkpoint import CheckpointError

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


# --- command: calibrate ---
@app.command()
def calibrate(
    checkpoint: str = typer.Argument(..., help="checkpoint .pt of a two-class model"),
    data: str = typer.Option(..., "--data", "-d", help="labelled folder (images/ + masks/)"),
    beta: float = typer.Option(None, "--beta", help="F-beta to maximise (default: the "
                               "checkpoint's infer.calibration_beta; 1 = Dice)"),
    max_images: int = typer.Option(None, "--max-images", help="at most this many images, "
                                   "evenly spaced (default infer.calibration_images)"),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """Choose a two-class model's decision threshold on labelled images; store it in the file."""
    from rich.markup import escape

    from unetkit.data.dataset import DatasetError
    from unetkit.infer.calibration import calibrate_checkpoint
    from unetkit.train.checkpoint import CheckpointError

    _log_to_console(verbose=False)
    try:
        result = calibrate_checkpoint(checkpoint, data, beta=beta, max_images=max_images,
                                      device=device)
    except (CheckpointError, DatasetError, ValueError, FileNotFoundError) as error:
        fail(escape(str(error)), code=2)
    at_half = result.curve.get("0.50", float("nan"))
    console.print(f"threshold {result.threshold:.2f}: mean F{result.beta:g} {result.score:.4f} "
                  f"on {result.images} image(s) (0.50: {at_half:.4f}); written to {checkpoint}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
