"""``unetkit predict`` and ``unetkit calibrate``."""

from __future__ import annotations

import typer

from unetkit.cli.app import (  # noqa: F401
    app,
    check_options,
    console,
    err_console,
    fail,
    log_level,
    log_to_console,
    require_positive,
)

_OPTIONS = {"infer.window": "--window", "infer.overlap": "--overlap", "infer.tta_axes": "--tta",
            "infer.precision": "--precision", "infer.batch_size": "--batch-size",
            "infer.postprocess.min_size": "--min-size"}


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
    checkpoint: str = typer.Argument(..., help="checkpoint .pt, run folder, exported .onnx, "
                                     "or a cross-validation folder (the ensemble of its folds)"),
    inputs: list[str] = typer.Argument(..., help="image files and/or folders of images"),
    out: str = typer.Option(..., "--out", "-o", help="output folder (created)"),
    force: bool = typer.Option(False, "--force", help="replace files of an earlier run at the "
                               "outputs (inputs and data folders are never written)"),
    models: list[str] = typer.Option([], "--model", metavar="MODEL", help="another model "
                                     "(.pt, run folder, .onnx, cross-validation folder) for an "
                                     "ensemble: class probabilities averaged (repeatable)"),
    onnx: str = typer.Option(None, "--onnx", help="run the network from this .onnx file in "
                             "onnxruntime (same windowing, TTA and post-processing)"),
    save_probabilities: bool = typer.Option(False, "--save-probabilities",
                                            help="also write probabilities/ (NIfTI or .npz)"),
    overlay: bool = typer.Option(False, "--overlay", help="also write overlays/<name>.png"),
    palette: bool = typer.Option(False, "--palette",
                                 help="PNG masks as colour-indexed PNGs with values 0..K-1"),
    roi: str = typer.Option(None, "--roi", help="folder of regions of interest (nonzero = "
                            "inside) named by case id: background outside them"),
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
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps "
                               "(under torchrun: each process on GPU LOCAL_RANK)"),
    part: int = typer.Option(None, "--part", help="predict only part K (0..N-1) of the cases "
                             "(job arrays: --part $SLURM_ARRAY_TASK_ID)"),
    parts: int = typer.Option(None, "--parts", help="number of parts the cases are dealt to "
                              "(case i goes to part i % N)"),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                        help="infer.field=value (repeatable)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    level: str = typer.Option(None, "--log-level", help="console log level: debug | info | "
                              "warning | error (default warning)"),
) -> None:
    """Segment images with a trained model; masks keep each input's format and geometry.

    Under torchrun (torchrun --nproc_per_node N -m unetkit predict ...) the processes share the
    cases, each predicted once; --part K --parts N does the same for independent jobs.
    """
    from rich.markup import escape

    from unetkit.infer.shards import check_part, process_group
    from unetkit.runtime.atomic import sigterm_exits

    log_to_console(level=log_level(level, "warning"))
    try:
        shard_of = check_part(part, parts)
    except ValueError as error:
        fail(escape(str(error)), code=2)
    with sigterm_exits(), process_group() as info:
        _predict([checkpoint, *models], inputs, out, onnx=onnx,
                 save_probabilities=save_probabilities, overlay=overlay, palette=palette,
                 roi=roi, device=device, part=shard_of,
                 info=info, quiet=quiet, overrides=overrides, force=force,
                 settings=(window, overlap, tta, precision, batch_size, keep_largest, min_size,
                           fill_holes))


def _predict(checkpoints: list[str], inputs: list[str], out: str, *, onnx: str | None,
             save_probabilities: bool, overlay: bool, palette: bool, roi: str | None,
             device: str, part: tuple[int, int] | None, info, quiet: bool,  # noqa: ANN001
             overrides: list[str], settings: tuple, force: bool = False) -> None:
    """Load the predictor on this process's device, predict its cases, report (rank 0)."""
    from pathlib import Path

    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from unetkit.config import ConfigError
    from unetkit.infer.ensemble import EnsemblePredictor, load_models
    from unetkit.infer.files import OutputPathError, hidden_files, input_cases
    from unetkit.infer.shards import assigned, predict_sharded, rank_device_name
    from unetkit.report import save_overlay
    from unetkit.runtime.atomic import WriteError
    from unetkit.runtime.checkpoint import CheckpointError

    rank = f"rank {info.rank}: " if info.enabled else ""
    try:
        values = _infer_settings(*settings)
        check_options({**values, "infer.tta_axes": None}, _OPTIONS)  # --tta: checked per model
        predictor = load_models(checkpoints[0], checkpoints[1:], settings=values,
                                overrides=overrides, onnx=onnx,
                                device=rank_device_name(device, info))
        files = input_cases(inputs, predictor.config.model.in_channels)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError, ImportError) as error:
        fail(rank + escape(str(error)), code=2)
    hidden = hidden_files(inputs)
    if hidden and info.is_main:
        err_console.print(f"[yellow]warning:[/] skipped {len(hidden)} file(s) whose names start "
                          "with '.' (name them one by one to predict them): "
                          + ", ".join(escape(str(p)) for p in hidden[:5])
                          + (" ..." if len(hidden) > 5 else ""), highlight=False)
    if not files:
        fail(f"no supported image files in {', '.join(inputs)}", code=2)
    progress = Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[name]}"), TimeElapsedColumn(),
                        console=err_console, disable=quiet or not info.is_main)
    try:
        with progress:
            task = progress.add_task("predict", total=len(assigned(files, part, info)), name="")

            def on_case(path: Path, error: str | None) -> None:
                if error:
                    progress.console.print(f"[bold red]{rank}failed:[/] {escape(str(path))}: "
                                           f"{escape(error)}")
                progress.update(task, advance=1, name=path.name)

            result = predict_sharded(
                predictor, inputs, out, part=part, info=info, on_case=on_case, palette=palette,
                save_probabilities=save_probabilities, roi_dir=roi, force=force,
                overlay=save_overlay if overlay else None)
    except (OutputPathError, FileNotFoundError) as error:  # the same on every rank
        _stop(info, escape(str(error)), code=2)
    except WriteError as error:  # disk full, permission: the batch stopped
        _stop(info, escape(str(error)), code=1)
    shared = [f"part {part[0]} of {part[1]}"] if part else []
    shared += [f"{info.world_size} processes"] if info.enabled else []
    engine = predictor.engine  # the engine that ran (after any fallback), not the one asked for
    if isinstance(predictor, EnsemblePredictor):  # the members' engines
        engine = f"ensemble of {len(predictor.members)} models, {engine}"
    if info.is_main:
        console.print(f"wrote {result.written} mask(s) to {out} ({predictor.plan.name}, "
                      + ", ".join([engine, *shared]) + ")")
        console.print(_decision_line(predictor))
    if result.failed:
        _stop(info, f"{len(result.failed)} of {result.cases} input(s) failed: "
              + ", ".join(escape(p) for p, _ in result.failed[:5]), code=1)


def _decision_line(predictor) -> str:  # noqa: ANN001 - a Predictor
    """What decided every pixel: the threshold and where it came from, and the TTA."""
    infer, calibration = predictor.infer, predictor.calibration or {}
    threshold, classes = infer.threshold, len(predictor.labels)
    if isinstance(threshold, float):
        stored = calibration.get("threshold")
        how = (f"calibrated: mean F{calibration.get('beta', 1.0):g} "
               f"{calibration.get('score', float('nan')):.4f} on {calibration.get('images')} "
               f"{calibration.get('source')} images" if stored is not None
               and abs(float(stored) - threshold) < 1e-9 else "set, not calibrated")
        decision = f"threshold {threshold:.2f} ({how})"
    elif predictor.region_order is not None:
        regions = predictor.config.data.regions
        decision = (f"regions {', '.join(r.name for r in regions)} at probability 0.50, "
                    f"painted as labels {', '.join(map(str, predictor.region_order))}")
    elif classes == 2:
        decision = "threshold 0.50 (the more probable class; not calibrated)"
    else:
        decision = f"the most probable of {classes} classes"
    axes = list(infer.tta_axes)
    tta = "none" if not axes else (f"mirroring axes {','.join(map(str, axes))} "
                                   f"({2 ** len(axes)} forwards per image)")
    return f"decision: {decision}; TTA: {tta}"


def _stop(info, message: str, code: int) -> None:  # noqa: ANN001 - a DistInfo
    """Exit with ``code`` on every rank; rank 0 alone says why (the reason is the same), and
    the others wait until it has (torchrun stops the group when the first process exits)."""
    from unetkit.runtime.distributed import barrier

    try:
        if info.is_main:
            fail(message, code=code)
    finally:
        barrier(info)
    raise typer.Exit(code)


@app.command()
def calibrate(
    checkpoint: str = typer.Argument(..., help="checkpoint .pt of a two-class model"),
    data: str = typer.Option(..., "--data", "-d", help="labelled folder (images/ + masks/)"),
    beta: float = typer.Option(None, "--beta", help="F-beta to maximise (default: the "
                               "checkpoint's infer.calibration_beta; 1 = Dice)"),
    max_images: int = typer.Option(None, "--max-images", help="at most this many images, "
                                   "evenly spaced (default infer.calibration_images)"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps"),
) -> None:
    """Choose a two-class model's decision threshold on labelled images; store it in the file."""
    from rich.markup import escape

    from unetkit.data.dataset import DatasetError
    from unetkit.infer.calibration import calibrate_checkpoint
    from unetkit.runtime.checkpoint import CheckpointError

    log_to_console(verbose=False)
    require_positive(beta, "--beta", " (1 = F1, i.e. Dice; below 1 favours precision)")
    if max_images is not None and max_images < 1:
        fail(f"--max-images {max_images}: expected at least 1 (nothing written)", code=2)
    try:
        result = calibrate_checkpoint(checkpoint, data, beta=beta, max_images=max_images,
                                      device=device)
    except (CheckpointError, DatasetError, ValueError, FileNotFoundError) as error:
        fail(escape(str(error)), code=2)  # OutputError included: nothing written
    except OSError as error:  # the checkpoint could not be written (disk full): it is intact
        fail(escape(str(error)), code=1)
    at_half = result.curve.get("0.50", float("nan"))
    console.print(f"threshold {result.threshold:.2f}: mean F{result.beta:g} {result.score:.4f} "
                  f"on {result.images} image(s) (0.50: {at_half:.4f}); written to {checkpoint}")
