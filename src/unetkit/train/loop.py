"""The training loop: ``train_one_epoch`` and ``end_of_epoch``, flat and commented.

One run = set up (``unetkit.train.setup``), then epochs of ``steps_per_epoch`` patch batches,
validation every ``val_every`` epochs, ``last.pt`` after every epoch and ``best.pt`` on the best
mean foreground Dice (``unetkit.train.fit`` drives it). The learning rate is a pure function of
the global step and the planned total steps (``unetkit.train.schedule``); with a time budget the
total is re-planned from measured step times after the first iterations and as it goes.
Where the run stands lives in one ``TrainingState`` (``run.state``), written into checkpoints.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from typing import Any

import torch

from unetkit.runtime.checkpoint import save_checkpoint, training_checkpoint
from unetkit.runtime.device import to_memory_format
from unetkit.runtime.distributed import all_reduce_mean, broadcast_object
from unetkit.train import builders
from unetkit.train.batches import BatchStream
from unetkit.train.budget import format_seconds, inference_estimate_s
from unetkit.train.calibrate import calibration_cases, wants_calibration
from unetkit.train.loss_meter import NonFiniteLoss
from unetkit.train.schedule import replan, scheduled_lr
from unetkit.train.setup import Run
from unetkit.train.state import capture_rng, model_state_cpu
from unetkit.train.validation import validate

log = logging.getLogger(__name__)
StepCallback = Callable[[dict[str, Any]], None]
FIRST_PLAN_STEPS = 5  # timed iterations (after the warm-up ones) before the first plan
AGREE_S = 0.5  # DDP: seconds of steps between the ranks' agreements on stopping and planning
AGREE_STEPS = 16  # ... and at most this many steps


def train_step(run: Run, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One optimisation step on a batch ``(B, C, *patch)`` / ``(B, *patch)``; returns the loss
    as a 0-d tensor on the device, not read back (``run.losses`` reads it a few steps later)."""
    image, mask = image.to(run.device, non_blocking=True), mask.to(run.device, non_blocking=True)
    if run.augmenter is not None:  # data.augment.device: train
        image, mask = run.augmenter(image, mask, run.generator)
    image = to_memory_format(image, run.plan)
    lr = scheduled_lr(run.config.train, run.state)
    loss = run.stepper(image, mask, lr)  # forward, loss, backward, clip, optimizer: train.step
    run.state.lr = lr
    return loss


def read_losses(run: Run) -> None:
    """Read the pending losses back into ``state.partial_loss``; stop on a non-finite one.

    Raises:
        FloatingPointError: naming the first step whose loss was not finite, and the last good
            checkpoint (losses are read before anything is saved, so ``last.pt`` is good).
    """
    try:
        run.losses.read()
    except NonFiniteLoss as error:
        where = f"last good checkpoint: {run.run_dir / 'last.pt'}" if run.run_dir is not None \
            and (run.run_dir / "last.pt").is_file() else "no checkpoint was written yet"
        fp32 = "" if run.plan.dtype is None else " or use train.precision=fp32"
        read = "" if error.first == error.last else \
            f"; found when the losses of steps {error.first}-{error.last} were read back"
        raise FloatingPointError(f"training loss is {error.value} at step {error.step}; "
                                 f"lower train.lr{fp32} ({where}){read}") from None
    run.state.partial_loss = run.losses.total


def train_one_epoch(run: Run, on_step: StepCallback | None = None) -> float:
    """Run the rest of epoch ``state.epoch`` (from ``state.step_in_epoch``); its mean loss.

    Stops early when the time budget is spent (``run.budget_stop``) or a stop signal arrived
    (``run.stop_signal``); both are decided by rank 0 for every rank, at the step boundaries
    where the ranks agree (``_agree``: every step in one process; under DDP about every
    ``AGREE_S`` seconds and at the epoch's end, so that no step waits on the other ranks).
    """
    s = run.state
    if s.step_in_epoch == 0:
        run.generator = builders.augment_generator(run.config.train.seed, s.epoch,
                                                   run.info.rank)
    if run.batches is None or run.batches.position != (s.epoch, s.step_in_epoch):
        if run.batches is not None:
            run.batches.close()
        run.batches = BatchStream(run.sampler, s.epoch, s.step_in_epoch, run.workers,
                                  pin=run.device.type == "cuda")
    run.losses.reset(s.partial_loss, s.step_in_epoch)
    tick = time.monotonic()
    epoch_end = s.step - s.step_in_epoch + run.config.train.steps_per_epoch
    agree_at, since = s.step + 1, (s.step, tick)
    for image, mask in run.batches.take(run.config.train.steps_per_epoch - s.step_in_epoch):
        run.losses.add(train_step(run, image, mask), s.step)
        s.step += 1
        s.step_in_epoch += 1
        if run.losses.due():
            read_losses(run)
        if run.budget is not None:
            # A step's cost includes drawing its batch, hence timing from the previous step's end;
            # warm-up and compile steps count as time spent, not as the cost of a step.
            now = time.monotonic()
            if run.stepper.warming:
                run.budget.record_warmup(now - tick)
            else:
                run.budget.record_step(now - tick, s.step - run.first_step)
            if run.stepper.switched:
                run.budget.restart_steps()
            tick = now
        if on_step is not None:
            try:
                on_step(_step_info(run))
            except KeyboardInterrupt:  # raised by a callback: a stop at this step boundary
                if run.signals is None:
                    raise
                run.signals.requested = run.signals.requested or signal.SIGINT
        if s.step >= agree_at:
            pace = (time.monotonic() - since[1]) / max(s.step - since[0], 1)
            agree_at = min(s.step + _agree(run, pace), epoch_end)
            since = (s.step, time.monotonic())
        if run.budget_stop or run.stop_signal is not None:
            break
    read_losses(run)
    mean_loss = s.partial_loss / max(s.step_in_epoch, 1)
    return all_reduce_mean(mean_loss, run.info, run.device)


def _agree(run: Run, pace_s: float) -> int:
    """Rank 0's decisions (the stop signal, the budget's stop and plan), applied by every
    rank after this step; returns the steps until the ranks agree again: 1 in one process,
    where it costs nothing. Under DDP an agreement waits for every rank (on GPUs for their
    queued kernels too): about every ``AGREE_S`` seconds of steps (``pace_s`` per step on
    rank 0), at most ``AGREE_STEPS`` apart; the budget looks that far ahead."""
    decision = None
    if run.info.is_main:
        steps = 1 if not run.info.enabled else \
            max(1, min(AGREE_STEPS, int(AGREE_S / max(pace_s, 1e-9))))
        requested = run.signals.requested if run.signals is not None else None
        budget = _budget_tick(run, steps - 1) if run.budget is not None else (False, None)
        decision = (requested, *budget, steps)
    run.stop_signal, expired, planned, steps = broadcast_object(decision, run.info)
    if planned is not None:
        _set_plan(run, planned)
        run.state.planned = True
    if expired:
        run.budget_stop = True
    return steps


def estimates(run: Run) -> tuple[float, float]:
    """Seconds to reserve before measured: one validation, and the end-of-run calibration."""
    d, infer = run.config.data, run.config.infer
    step_s, passes = run.budget.step_s or 0.0, 2 ** len(infer.tta_axes)
    step_voxels = math.prod(d.patch_size) * d.batch_size
    val_voxels = sum(image[0].size for image in run.data.val_images)
    val = inference_estimate_s(val_voxels, passes, step_s, step_voxels)
    final = 0.0
    if wants_calibration(run.config):
        images = calibration_cases(run)[0]
        voxels = sum(image[0].size for image in images)
        final = inference_estimate_s(voxels, passes, step_s, step_voxels) + 2.0
    return val, final


def _budget_tick(run: Run, ahead_steps: int = 0) -> tuple[bool, int | None]:
    """Rank 0's budget decision at an agreement: whether the budget is spent (or will be
    within ``ahead_steps`` more steps), and the epochs that fit (None: not planned yet).

    Re-planning at every agreement lets a slowdown in the middle of an epoch shorten the
    schedule at once, so the learning rate still decays before the time runs out.
    """
    budget, s = run.budget, run.state
    budget.val_estimate_s, budget.final_s = estimates(run)
    planned = None
    if budget.ready() and budget.timed_steps >= FIRST_PLAN_STEPS:
        progress = s.step_in_epoch / run.config.train.steps_per_epoch
        planned = max(budget.plan(s.epoch, epoch_progress=progress), s.epoch + 1)
    return budget.expired(ahead_s=ahead_steps * (budget.step_s or 0.0)), planned


def _set_plan(run: Run, epochs: int) -> None:
    run.state.planned_epochs = epochs
    replan(run.state, epochs * run.config.train.steps_per_epoch)


def _step_info(run: Run) -> dict[str, Any]:
    """What a progress display needs; ``epochs``, ``total_steps`` and ``steps_left`` are None
    while a time budget has not planned them yet (the config's epochs mean nothing then).
    Under a time budget they are estimates, re-planned as steps are timed (``estimated``);
    the budget itself (``budget_s``, ``elapsed_s``) is what does not move."""
    s, budget = run.state, run.budget
    known = budget is None or s.planned
    return {"step": s.step, "total_steps": s.total_steps if known else None, "epoch": s.epoch,
            "epochs": s.planned_epochs if known else None, "estimated": budget is not None,
            "loss": run.losses.mean(), "lr": s.lr, "dice": s.best_metric,
            "validates": bool(run.data.val_images),
            "eta_s": budget.remaining() if budget is not None else None,
            "budget_s": budget.budget_s if budget is not None else None,
            "elapsed_s": budget.elapsed() if budget is not None else None,
            "steps_left": s.total_steps - s.step if known else None}


def save(run: Run, name: str, resume: bool = True) -> None:
    """Write ``RUN/<name>`` with the run's current state (rank 0 only); ``resume=False``
    leaves out the optimizer, scaler and RNG states (``best.pt``: a model for prediction)."""
    if not run.info.is_main or run.run_dir is None:
        return
    run.state.elapsed_s = run.elapsed()
    checkpoint = training_checkpoint(
        config=run.config, model_state=model_state_cpu(run.model), labels=run.data.labels,
        mask_values=run.data.mask_values, preprocessing=run.data.preprocessing,
        state=run.state, optimizer=run.optimizer, scaler=run.scaler,
        rng=capture_rng(run.generator) if resume else {}, mask_format=run.data.mask_format,
        resume=resume)
    save_checkpoint(checkpoint, run.run_dir / name)


def end_of_epoch(run: Run, train_loss: float, seconds: float) -> bool:
    """Re-plan, validate when due, log the row, save checkpoints; True when the run must stop."""
    t, s = run.config.train, run.state
    s.epoch += 1
    s.step_in_epoch, s.partial_loss = 0, 0.0
    if run.budget is not None and run.budget.ready() and not run.budget_stop:
        # Re-plan from the measurements so far; the schedule's end moves with the plan.
        run.budget.val_estimate_s = estimates(run)[0]
        planned = broadcast_object(run.budget.plan(s.epoch), run.info)
        _set_plan(run, max(planned, s.epoch))
        s.planned = True
    last = s.epoch >= s.planned_epochs or run.budget_stop
    row: dict[str, Any] = {"epoch": s.epoch, "step": s.step, "train_loss": train_loss,
                           "val_loss": math.nan, "val_dice": math.nan, "lr": s.lr}
    improved, val_seconds = False, 0.0
    if run.data.val_images and (s.epoch % t.val_every == 0 or last):
        started = time.monotonic()
        if run.info.is_main:
            metrics = validate(run.ddp_model, run.data.val_images, run.data.val_masks,
                               run.val_loss_fn, run.config, run.device, run.infer_plan,
                               run.data.labels)
            row.update(_named(metrics, run.data.scored))  # labels, or regions
        row = broadcast_object(row, run.info)
        val_seconds = time.monotonic() - started
        if run.budget is not None:
            run.budget.record_validation(val_seconds)
        dice = row["val_dice"]
        if not math.isnan(dice) and (s.best_metric is None or dice > s.best_metric):
            s.best_metric, s.best_epoch, improved = dice, s.epoch, True
    row["seconds"] = seconds + val_seconds
    s.metrics = row
    run.history.append(row)
    started = time.monotonic()
    save(run, "last.pt")
    if improved or (not run.data.val_images and last):
        save(run, "best.pt", resume=False)
    if run.logs is not None:
        run.logs.epoch(row)
    if run.budget is not None:
        run.budget.record_overhead(time.monotonic() - started)
    _log_epoch(run, train_loss, row, seconds)
    patience = t.patience is not None and s.best_epoch is not None and (
        s.epoch - s.best_epoch >= t.patience)
    if patience:
        run.stopped = "early_stopping"
    elif run.budget_stop:
        run.stopped = "time_budget"
    return bool(last or patience)


def _log_epoch(run: Run, train_loss: float, row: dict[str, Any], seconds: float) -> None:
    """One line per epoch; only what was computed (no validation Dice on epochs without
    validation, no epoch count while a time budget has not planned one). A time budget's
    count is an estimate, ``~N``, until the last epoch; a line whose estimate moved says so."""
    s, budget = run.state, run.budget
    validated = "" if math.isnan(row["val_dice"]) else f", val Dice {row['val_dice']:.4f}"
    row["planned_epochs"] = s.planned_epochs if budget is None or s.planned else None
    of, note = str(s.planned_epochs), ""
    if budget is not None:
        last = s.epoch >= s.planned_epochs or run.budget_stop
        of = str(s.epoch) if last else f"~{s.planned_epochs}" if s.planned else "?"
        before = run.history[-2].get("planned_epochs") if len(run.history) > 1 else None
        if s.planned and not last and before != s.planned_epochs:
            was = f"re-planned from ~{before}" if before else "planned"
            note = (f" ({was}: ~{s.planned_epochs} epochs fit the "
                    f"{format_seconds(budget.budget_s)} budget at the "
                    f"{budget.step_s or 0.0:.3g} s/step measured so far)")
    log.info("epoch %d/%s: train loss %.4f%s, lr %.2e, %s%s", s.epoch, of, train_loss,
             validated, s.lr, format_seconds(seconds), note)


def _named(metrics: dict[str, float], labels: dict[int, str]) -> dict[str, float]:
    out = {k: v for k, v in metrics.items() if not k.startswith("dice_")}
    for label, name in labels.items():
        if f"dice_{label}" in metrics:
            out[f"dice_{name}"] = metrics[f"dice_{label}"]
    return out
