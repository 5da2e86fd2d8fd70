"""``unetkit train`` (one run, or a cross-validation) and ``unetkit demo``; the progress bar is
``unetkit.cli.train_progress``."""

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
)
from unetkit.cli.plan_commands import print_init, print_plan
from unetkit.cli.train_progress import TrainProgress

_OPTIONS = {"train.time_budget": "--time", "train.epochs": "--epochs", "train.lr": "--lr",
            "data.batch_size": "--batch-size", "data.patch_size": "--patch-size",
            "model.name": "--model", "train.device": "--device", "train.precision": "--precision",
            "data.fold": "--fold", "data.folds": "--folds", "data.val_fraction": "--val-fraction",
            "train.seed": "--seed", "train.init": "--init"}


@app.command()
def train(
    data: str = typer.Option(None, "--data", "-d", help="data folder: images/ + masks/ paired by "
                             "file name, or an nnU-Net folder (imagesTr/ + labelsTr/)"),
    config_file: str = typer.Option(None, "--config", "-c", help="YAML config file (unetkit "
                                    "config prints every field); default: planned from the data"),
    out: str = typer.Option(None, "--out", "-o", help="run folder (default runs/<timestamp>)"),
    time_budget: str = typer.Option(None, "--time", help="time budget, e.g. 90s, 10m, 2h: the "
                                    "epochs are planned to fit it (train.time_budget)"),
    epochs: int = typer.Option(None, "--epochs", help="number of epochs when there is no time "
                               "budget (train.epochs)"),
    lr: float = typer.Option(None, "--lr", help="peak learning rate (train.lr)"),
    batch_size: int = typer.Option(None, "--batch-size", help="patches per step and process "
                                   "(data.batch_size)"),
    patch_size: str = typer.Option(None, "--patch-size", help="training patch, e.g. 256,256 or "
                                   "256 (data.patch_size)"),
    model: str = typer.Option(None, "--model", help="unet | resunet | attention_unet | "
                              "unetplusplus (model.name)"),
    device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps"),
    precision: str = typer.Option(None, "--precision", help="auto | fp32 | bf16 | fp16"),
    fold: int = typer.Option(None, "--fold", help="k-fold: which fold validates"),
    folds: int = typer.Option(None, "--folds", help="k-fold: number of folds"),
    cross_validate: int = typer.Option(None, "--cross-validate", metavar="K", help="train all "
                                       "K folds of one plan within --time, score each on the "
                                       "cases it never saw (cross_validation.json); predict "
                                       "with the folder for the ensemble of the folds"),
    val_fraction: float = typer.Option(None, "--val-fraction", help="share of the cases held "
                                       "out for validation, 0 for none (data.val_fraction)"),
    resume: str = typer.Option(None, "--resume", help="run folder to continue exactly; with "
                               "--time, that much more time"),
    seed: int = typer.Option(None, "--seed", help="random seed of weights, sampling and "
                             "augmentation (train.seed)"),
    init: str = typer.Option(None, "--init", help="fine-tune: start from this checkpoint or run "
                             "folder; its network and normalisation are kept, the layers that "
                             "fit are loaded (train.init; RUN/init.json lists them)"),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                        help="any config field, section.field=value, e.g. "
                                        "train.patience=20 (repeatable)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar, warnings only"),
    level: str = typer.Option(None, "--log-level", help="console log level: debug | info | "
                              "warning | error (default info; warning with --quiet)"),
) -> None:
    """Train a segmentation network on a folder of images and masks.

    DATA holds images/ + masks/ whose files pair by name, or an nnU-Net dataset as it is
    (imagesTr/ + labelsTr/, _0000 channel files, dataset.json). Without --config the run is
    planned from the data: the planner decides 2D or 3D, patch size, network and batch size and
    prints each decision with its reason (unetkit plan shows the plan alone). Options and --set
    override the config or the plan.
    """
    import time

    from rich.markup import escape

    from unetkit.config import ConfigError, overrides_to_values, parse_size
    from unetkit.data.dataset import DatasetError
    from unetkit.runtime.distributed import is_main_process
    from unetkit.train.run_dir import check_run_dir

    started = time.monotonic()
    values = {
        "train.time_budget": time_budget, "train.epochs": epochs, "train.lr": lr,
        "data.batch_size": batch_size, "model.name": model, "train.device": device,
        "train.precision": precision, "data.fold": fold, "data.folds": folds,
        "data.val_fraction": val_fraction, "train.seed": seed, "train.init": init,
    }
    main_rank = is_main_process()
    level = log_level(level, "warning" if quiet else "info")
    log_to_console(level=level if main_rank or level == "error" else "warning")
    if data is None and resume is None:
        fail("--data DIR is needed (or --resume RUN_DIR)", code=2)
    config, plan, changes = None, None, None
    try:
        if patch_size is not None:
            values["data.patch_size"] = parse_size(patch_size)
        check_options(values, _OPTIONS)  # before the data is read: errors name the option
        if resume:
            changes = {**values, **overrides_to_values(overrides)}
        else:
            if out is not None:  # before planning: a wrong --out fails in seconds
                check_run_dir(out, data_dir=data)
            config, plan = _run_config(data, config_file, values, overrides, main_rank and
                                       not quiet, cross_validate)
    except ConfigError as error:
        fail(escape(str(error)), code=2)
    except (DatasetError, ValueError, OSError) as error:  # OutputError, FileExistsError
        fail(escape(str(error)), code=1)
    from unetkit.train.cross_validation import is_cross_validation
    from unetkit.train.fit import fit

    if cross_validate is not None or (resume and is_cross_validation(resume)):
        _cross_validate(config, data, out, cross_validate, resume, started, plan,
                        main_rank and not quiet, changes)
        return
    progress = TrainProgress() if main_rank and not quiet else None

    def run_fit():  # noqa: ANN202 - a TrainResult
        result = fit(config, data, out, resume=resume, changes=changes, on_step=progress,
                     started=started, extra_files=_plan_files(plan),
                     on_init=print_init if main_rank and not quiet else None)
        if progress is not None:
            progress.finish(result.best_metric)
        return result

    result = _guarded(run_fit, str(out or resume), [progress])
    if main_rank:
        best = ("no validation cases" if result.best_metric is None else
                f"best val Dice {result.best_metric:.4f} (epoch {result.best_epoch})")
        console.print(f"[bold green]done[/] ({result.stopped}): {result.epochs} epochs, "
                      f"{result.steps} steps, {best}")
        if result.calibration:
            c = result.calibration
            console.print(f"decision threshold {c['threshold']:.2f} (calibrated: mean "
                          f"F{c['beta']:g} {c['score']:.4f} on {c['images']} {c['source']} "
                          f"images)")
        if result.postprocessing:
            console.print(f"largest component per class: {result.postprocessing['reason']}")
        console.print(f"run folder: {result.run_dir}  (predict with: unetkit predict "
                      f"{result.run_dir}/best.pt IMAGES -o OUT)")


def _guarded(call, where: str, bars: list) -> object:  # noqa: ANN001 - a callable
    """``call()`` with training's failures as one line each; the progress ``bars`` (a list
    the call may append to) are finished whatever happens."""
    from rich.markup import escape

    from unetkit.config import ConfigError
    from unetkit.runtime.checkpoint import CheckpointError
    from unetkit.train.data import DataError
    from unetkit.train.signals import Interrupted

    try:
        return call()
    except Interrupted as stop:
        fail(f"stopped at step {stop.step}; last.pt is saved there: continue exactly with "
             f"unetkit train --resume {escape(where)}", code=stop.exit_code)
    except KeyboardInterrupt:
        fail("aborted (no checkpoint written for the step in progress)", code=130)
    except (DataError, ConfigError, CheckpointError, ValueError, FileExistsError,
            OSError, FloatingPointError) as error:
        fail(escape(str(error)), code=2 if isinstance(error, ConfigError) else 1)
    finally:
        for bar in bars:
            if bar is not None:
                bar.finish()


def _cross_validate(config, data: str | None, out: str | None,  # noqa: ANN001 - a Config
                    folds: int | None, resume: str | None, started: float, plan,  # noqa: ANN001
                    verbose: bool, changes: dict | None) -> None:
    """``--cross-validate K`` (or ``--resume`` of one): every fold, then its scores."""
    from unetkit.train.cross_validation import cross_validate
    from unetkit.train.run_dir import default_run_dir

    out = out or (None if resume else str(default_run_dir()))
    bars: list = []

    def progress(fold: int, count: int) -> TrainProgress | None:
        if bars:
            bars.pop().finish()
        if not verbose:
            return None
        err_console.print(f"fold {fold + 1} of {count}")
        bars.append(TrainProgress())
        return bars[-1]

    result = _guarded(lambda: cross_validate(config, data, out, folds=folds, resume=resume,
                                             progress=progress, started=started,
                                             extra_files=_plan_files(plan), changes=changes),
                      str(out or resume), bars)
    if result.summary is not None:  # rank 0
        from unetkit.train.out_of_fold import summary_lines

        for line in summary_lines(result.summary):
            console.print(line, highlight=False)
        console.print(f"run folder: {result.run_dir}  (predict with the ensemble of the folds: "
                      f"unetkit predict {result.run_dir} IMAGES -o OUT)")

def _run_config(data: str, config_file: str | None, values: dict, overrides: list[str],
                verbose: bool, folds: int | None = None) -> tuple:
    """The run's config: the file, or a plan for the data (printed unless quiet); with
    ``folds``, the config of a cross-validation (planned for one fold's share)."""
    from unetkit.plan.auto import run_config
    from unetkit.plan.cross_validation import cross_validation_config

    if config_file is None and verbose:
        err_console.print(f"planning a run for {data} (no --config) ...")
    if folds is not None:
        config, plan = cross_validation_config(data, config_file, values, overrides, folds)
    else:
        config, plan = run_config(data, config_file, values, overrides)
    if plan is not None and verbose:
        print_plan(plan)
    return config, plan


def _plan_files(plan) -> dict | None:  # noqa: ANN001 - unetkit.plan.planner.Plan or None
    from unetkit.plan.auto import plan_files

    return plan_files(plan) if plan is not None else None


@app.command()
def demo(
    out: str = typer.Option("demo_output", "--out", "-o", help="output folder"),
    time_budget: str = typer.Option("2m", "--time", help="training time budget, e.g. 2m"),
    quick: bool = typer.Option(False, "--quick", help="tiny data and network (for smoke tests)"),
    force: bool = typer.Option(False, "--force", help="replace an earlier demo's outputs in "
                               "--out (data/, run/, predictions/, ...)"),
) -> None:
    """Synthetic cells -> train a small U-Net (~2 min on CPU) -> predict -> evaluate -> report."""
    from rich.markup import escape
    from rich.table import Table

    from unetkit.config import ConfigError, parse_duration
    from unetkit.demo import run_demo

    try:
        parse_duration(time_budget, "--time")
    except ValueError as error:
        fail(escape(str(error)), code=2)
    log_to_console()
    progress = TrainProgress()
    sizes = {"n_train": 6, "n_test": 2, "size": 48} if quick else {}
    try:
        result = run_demo(out, time_budget, quick=quick, on_step=progress, force=force,
                          **sizes)
    except KeyboardInterrupt:
        fail(f"interrupted; partial outputs are in {out}", code=130)
    except (ConfigError, ValueError) as error:  # OutputError included: nothing changed
        fail(escape(str(error)), code=2)
    except OSError as error:  # disk full, permission
        fail(escape(str(error)), code=1)
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
