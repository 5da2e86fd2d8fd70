"""``fit``: set up a run, loop over epochs, calibrate, stop cleanly on signals."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unetkit.config import Config, apply_values, parse_duration
from unetkit.runtime.atomic import write_text
from unetkit.runtime.checkpoint import (
    TrainingState,
    check_resumable,
    checkpoint_config,
    load_checkpoint,
)
from unetkit.runtime.distributed import cleanup
from unetkit.train.budget import TimeBudget
from unetkit.train.calibrate import calibrate_run, check_calibration
from unetkit.train.data import TrainData, prepare_data
from unetkit.train.init_source import InitSource
from unetkit.train.init_weights import load_matching
from unetkit.train.lockstep import check_lockstep
from unetkit.train.loop import StepCallback, end_of_epoch, save, train_one_epoch
from unetkit.train.postprocessing import choose_postprocessing
from unetkit.train.setup import set_up_run
from unetkit.train.signals import Interrupted, StopSignals
from unetkit.train.state import unwrap

log = logging.getLogger("unetkit.train.loop")


@dataclass
class TrainResult:
    """What ``fit`` returns (on every rank; only rank 0 has written files)."""

    run_dir: Path | None
    epochs: int
    steps: int
    best_metric: float | None
    best_epoch: int | None
    stopped: str  # "completed", "early_stopping", "time_budget"
    history: list[dict[str, Any]] = field(default_factory=list)
    model: torch.nn.Module | None = None  # the trained network (last weights, eval mode)
    calibration: dict[str, Any] | None = None  # infer.threshold auto: what best.pt got
    postprocessing: dict[str, Any] | None = None  # keep_largest auto: the choice for best.pt
    init: dict[str, Any] | None = None  # train.init: what was loaded (RUN/init.json)


def fit(
    config: Config | None,
    data_dir: str | Path | None,
    out_dir: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    changes: dict[str, Any] | None = None,
    on_step: StepCallback | None = None,
    check_data: bool = True,
    data: TrainData | None = None,
    started: float | None = None,
    extra_files: dict[str, str] | None = None,
    on_init: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a network on ``data_dir`` as ``config`` says and write the run into ``out_dir``.

    Args:
        config: the run's config; with ``resume`` the checkpoint's config is used and only
            ``train.epochs`` / ``train.time_budget`` / ``train.patience`` are taken from this one.
        data_dir: folder of images and masks (``unetkit.data`` layouts); with ``resume`` it
            defaults to the resumed run's.
        out_dir: run directory (default ``runs/<timestamp>``; with ``resume`` the resumed one).
        resume: a run directory or checkpoint to continue exactly where it stopped.
        changes: with ``resume``: ``{"section.field": value}`` the user asked for; of these only
            ``RESUMABLE`` fields apply (others are reported and ignored), and a time budget means
            that much more time from now.
        on_step: called after every step with a dict (step, total_steps, epoch, loss, lr, ...).
        check_data: run the data doctor first and refuse to train on errors.
        data: already prepared data (skips loading; used by the demo and tests).
        started: ``time.monotonic()`` when the time budget started (default: when ``fit`` was
            called, so loading the data counts; a caller that planned first passes its start).
        extra_files: ``{name: text}`` written into the run folder (e.g. ``plan.yaml``).
        on_init: with ``train.init`` (fine-tuning), called with the report of what was loaded
            (``InitReport.as_dict()``, also ``RUN/init.json``) before the first step.

    Returns:
        A ``TrainResult``.

    Raises:
        Interrupted: SIGINT or SIGTERM arrived; ``last.pt`` holds the state at the step
            boundary where the run stopped (``--resume`` continues exactly).
    """
    started = time.monotonic() if started is None else started
    checkpoint = None
    if resume is not None:
        path = Path(resume)
        source = path / "last.pt" if path.is_dir() else path
        checkpoint = load_checkpoint(source)
        check_resumable(checkpoint, source)
        config = resumed_config(checkpoint, config, changes or {})
        out_dir = out_dir or (path if path.is_dir() else path.parent)
        data_dir = data_dir or TrainingState.from_checkpoint(checkpoint).data_dir
    if config is None or data_dir is None:
        raise ValueError("fit: a config and a data folder are needed unless resuming")
    init, notes, prepare = None, [], prepare_data
    if checkpoint is None and config.train.init is not None:  # fine-tuning (not on resume)
        init = InitSource.read(config.train.init)
        config, prepare = init.fix(config), init.preparer(prepare_data, notes)
    run = set_up_run(config, data_dir, out_dir, checkpoint, check_data, data, prepare)
    init_report = None if init is None else start_from(init, run, notes, on_init)
    check_calibration(run.config, run.data.labels)
    if checkpoint is None:
        run.started = started  # elapsed time (saved in checkpoints) counts from the same start
    if run.run_dir is not None:
        for name, text in (extra_files or {}).items():
            write_text(run.run_dir / name, text)
    if run.config.train.time_budget:
        budget_s = parse_duration(run.config.train.time_budget)
        start = time.monotonic() - run.state.elapsed_s if checkpoint else started
        run.budget = TimeBudget(budget_s, run.config.train.steps_per_epoch,
                                run.config.train.val_every, start=start)
    if checkpoint is not None and run.state.epoch >= run.state.planned_epochs:
        log.warning("the resumed run had finished its plan (epoch %d of %d): nothing to "
                    "continue. --resume continues an interrupted run; to train on, raise "
                    "--epochs (runs without a time budget) or start a new run with --config "
                    "%s", run.state.epoch, run.state.planned_epochs,
                    Path(run.run_dir or ".") / "config.yaml")
    calibration = postprocessing = None
    try:
        with StopSignals() as signals:
            run.signals = signals
            while run.state.epoch < run.state.planned_epochs:
                started = time.monotonic()
                train_loss = train_one_epoch(run, on_step)
                if run.stop_signal is not None:
                    save(run, "last.pt")
                    log.warning("stopped at step %d; resume with --resume %s", run.state.step,
                                run.run_dir)
                    raise Interrupted(run.stop_signal, run.state.step)
                if end_of_epoch(run, train_loss, time.monotonic() - started):
                    break
            calibration = calibrate_run(run)
            postprocessing = choose_postprocessing(run)
            check_lockstep(unwrap(run.model), run.state.step, run.info)
    finally:
        run.close()
        _release_ddp(run)
        cleanup(run.info)
    s = run.state
    return TrainResult(run.run_dir, s.epoch, s.step, s.best_metric, s.best_epoch, run.stopped,
                       run.history, unwrap(run.model).eval(), calibration, postprocessing,
                       init_report)


def _release_ddp(run: Any) -> None:
    """Free the DDP wrapper (``run.ddp_model``, and ``run.stepper``, whose step holds it) while
    its process group is still registered, then let other threads run for a moment.

    Otherwise the wrapper's reducer outlives ``destroy_process_group`` and, when it is freed
    later, holds the last reference to the gloo group: the group's destructor joins its worker
    threads while the freeing thread holds the GIL, and a worker still releasing the tensors of
    the last collective (``check_lockstep``'s all-gather) waits for the GIL: a deadlock, seen
    as a two-rank CPU run that never exits after its last line. The sleep lets such a worker
    take the GIL and finish before the group is destroyed."""
    import gc
    import time as wall  # the real clock: tests replace this module's ``time``

    run.ddp_model = run.model
    run.stepper = None
    if run.info.enabled:
        gc.collect()
        wall.sleep(0.05)


def start_from(init: InitSource, run: Any, notes: list[str],
               on_init: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    """Load ``init``'s fitting layers into the run's network; log, write and hand on the
    report (``unetkit.train.init_weights``)."""
    report = load_matching(unwrap(run.model), init.model_state, str(init.path))
    report.normalization = notes[-1] if notes else "as prepared by the caller"
    log.info("%s; normalisation %s", report.summary(), report.normalization)
    if run.run_dir is not None:
        report.write(run.run_dir)
    if on_init is not None and run.info.is_main:
        on_init(report.as_dict())
    return report.as_dict()


RESUMABLE = ("train.epochs", "train.time_budget", "train.patience")


def resumed_config(checkpoint: dict[str, Any], config: Config | None,
                   changes: dict[str, Any]) -> Config:
    """The config a resumed run continues with: the checkpoint's, plus what may change.

    From ``config`` (a whole config) the ``RESUMABLE`` fields are taken; from ``changes`` (what
    the user typed) those that are given. A new time budget is counted from now: it is added to
    the time the run has already used.
    """
    saved = checkpoint_config(checkpoint)
    if config is not None:
        keep = {k.split(".")[1]: getattr(config.train, k.split(".")[1]) for k in RESUMABLE}
        saved = saved.model_copy(update={"train": saved.train.model_copy(update=keep)})
    given = {k: v for k, v in changes.items() if v is not None}
    ignored = sorted(k for k in given if k not in RESUMABLE)
    if ignored:
        log.warning("resume continues the saved configuration; ignored: %s (only %s can "
                    "change)", ", ".join(ignored), ", ".join(RESUMABLE))
    given = {k: v for k, v in given.items() if k in RESUMABLE}
    if "train.time_budget" in given:  # validated as given (no zero budget), then added
        apply_values(saved, {"train.time_budget": given["train.time_budget"]},
                     source="resume options")
        spent = TrainingState.from_checkpoint(checkpoint).elapsed_s
        given["train.time_budget"] = f"{spent + parse_duration(given['train.time_budget']):.1f}s"
    return apply_values(saved, given, source="resume options")
