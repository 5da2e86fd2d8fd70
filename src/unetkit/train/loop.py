"""The training loop: ``fit`` -> ``train_one_epoch`` / ``validate``, flat and commented.

One run = set up (data, network, optimizer, precision, DDP), then epochs of ``steps_per_epoch``
patch batches, validation every ``val_every`` epochs, ``last.pt`` after every epoch and
``best.pt`` on the best mean foreground Dice. The learning rate is a pure function of the global
step and the planned total steps (``unetkit.train.schedule``); with a time budget the total is
re-planned from measured step times after the first iterations and after every epoch.
Ctrl-C saves ``last.pt`` at the exact step reached and re-raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unetkit.config import Config, config_from_dict, parse_duration
from unetkit.train import builders
from unetkit.train.budget import TimeBudget, format_seconds
from unetkit.train.calibrate import calibrate_run, calibration_estimate_s, check_calibration
from unetkit.train.checkpoint import load_checkpoint, save_checkpoint
from unetkit.train.data import TrainData, prepare_data
from unetkit.train.device import autocast, to_memory_format
from unetkit.train.distributed import DistInfo, all_reduce_mean, broadcast_object, cleanup
from unetkit.train.schedule import lr_at
from unetkit.train.setup import Run, set_up_run
from unetkit.train.state import build_checkpoint, unwrap
from unetkit.train.validation import validate

log = logging.getLogger(__name__)
StepCallback = Callable[[dict[str, Any]], None]
FIRST_PLAN_STEPS = 5  # timed iterations (after the warm-up ones) before the first plan


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


def train_step(run: Run, image: torch.Tensor, mask: torch.Tensor) -> float:
    """One optimisation step on a batch ``(B, C, *patch)`` / ``(B, *patch)``; returns the loss."""
    image, mask = image.to(run.device, non_blocking=True), mask.to(run.device, non_blocking=True)
    if run.augmenter is not None:
        image, mask = run.augmenter(image, mask, run.generator)
    image = to_memory_format(image, run.plan)
    lr = scheduled_lr(run)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    with autocast(run.plan, run.device):
        output = run.ddp_model(image)
    # The loss is computed in float32 whatever the network's precision.
    output = [o.float() for o in output] if isinstance(output, list | tuple) else output.float()
    loss = run.loss_fn(output, mask)
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"training loss is {loss.item()} at step {run.step}; lower train.lr or use "
            f"train.precision=fp32 (last good checkpoint: {run.run_dir})"
        )
    run.optimizer.zero_grad(set_to_none=True)
    clip = run.config.train.grad_clip
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)
        if clip:
            torch.nn.utils.clip_grad_norm_(run.ddp_model.parameters(), clip)
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(run.ddp_model.parameters(), clip)
        run.optimizer.step()
    run.lr = lr
    return float(loss.detach())


def scheduled_lr(run: Run) -> float:
    """The schedule's learning rate at ``run.step``, never above the previous step's after warm-up.

    A time-budget re-plan that lengthens the run (a core freed, a faster stretch) moves the
    schedule's end; without the cap the decayed learning rate would jump back up.
    """
    lr = lr_at(run.config.train.schedule, run.step, run.total_steps, run.config.train.lr,
               run.warmup_steps)
    if run.step > run.warmup_steps and run.lr > 0.0:
        lr = min(lr, run.lr)
    return lr


def train_one_epoch(run: Run, on_step: StepCallback | None = None) -> float:
    """Run the rest of epoch ``run.epoch`` (from ``run.step_in_epoch``); returns its mean loss.

    Stops early (setting ``run.budget_stop``) when the time budget is spent.
    """
    if run.step_in_epoch == 0:
        run.generator = builders.augment_generator(
            run.device, run.config.train.seed, run.epoch, run.info.rank)
    batches = builders.epoch_batches(run.sampler, run.epoch, skip=run.step_in_epoch,
                                     num_workers=run.config.data.num_workers)
    tick = time.monotonic()
    for image, mask in batches:
        run.loss_sum += train_step(run, image, mask)
        run.step += 1
        run.step_in_epoch += 1
        if run.budget is not None:
            # A step's cost includes drawing its batch, hence timing from the previous step's end.
            now = time.monotonic()
            run.budget.record_step(now - tick, run.step - run.first_step)
            tick = now
            _budget_tick(run)
        if on_step is not None:
            on_step(_step_info(run))
        if run.budget_stop:
            break
    mean_loss = run.loss_sum / max(run.step_in_epoch, 1)
    return all_reduce_mean(mean_loss, run.info, run.device)


def _budget_tick(run: Run) -> None:
    """After every step: re-plan the epochs (and so the schedule's end), check the budget.

    Re-planning at every step lets a slowdown in the middle of an epoch shorten the schedule at
    once, so the learning rate still decays before the time runs out. Rank 0 decides for all.
    """
    budget = run.budget
    budget.val_estimate_s = _val_estimate(run)
    budget.final_s = calibration_estimate_s(run, budget.step_s or 0.0)
    planned = None
    if budget.ready() and budget.timed_steps >= FIRST_PLAN_STEPS:
        progress = run.step_in_epoch / run.config.train.steps_per_epoch
        planned = max(budget.plan(run.epoch, epoch_progress=progress), run.epoch + 1)
    expired, planned = broadcast_object((budget.expired(), planned), run.info)
    if planned is not None:
        _set_plan(run, planned)
        run.planned = True
    if expired:
        run.budget_stop = True


def _val_estimate(run: Run) -> float:
    """Validation cost before it is measured, kept on the safe side.

    A forward pass costs about a third of a training step per pixel; counted at half a step, over
    every validation pixel times the sliding window's overlap factor ``(1 / (1 - overlap))**d``.
    """
    patch = math.prod(run.config.data.patch_size) * run.config.data.batch_size
    pixels = sum(img[0].size for img in run.data.val_images)
    overlap = (1.0 / (1.0 - run.config.infer.overlap)) ** len(run.config.data.patch_size)
    return overlap * (pixels / patch) * (run.budget.step_s or 0.0) / 2.0


def _set_plan(run: Run, epochs: int) -> None:
    run.planned_epochs = epochs
    run.total_steps = max(epochs * run.config.train.steps_per_epoch, run.step, 1)


def _step_info(run: Run) -> dict[str, Any]:
    steps_left = run.total_steps - run.step
    eta = run.budget.remaining() if run.budget is not None else None
    return {"step": run.step, "total_steps": run.total_steps, "epoch": run.epoch,
            "epochs": run.planned_epochs, "loss": run.loss_sum / max(run.step_in_epoch, 1),
            "lr": run.lr, "dice": run.best_metric, "eta_s": eta, "steps_left": steps_left}


def save(run: Run, path_name: str) -> None:
    """Write ``RUN/<path_name>`` (rank 0 only)."""
    if not run.info.is_main or run.run_dir is None:
        return
    progress = {
        "epoch": run.epoch, "step": run.step, "step_in_epoch": run.step_in_epoch,
        "partial_loss": run.loss_sum, "total_steps": run.total_steps,
        "warmup_steps": run.warmup_steps, "planned_epochs": run.planned_epochs,
        "metrics": run.last_metrics, "best_metric": run.best_metric,
        "best_epoch": run.best_epoch, "elapsed_s": run.elapsed(), "planned": run.planned,
        "lr": run.lr, "data_dir": str(run.data_dir),
    }
    checkpoint = build_checkpoint(
        config=run.config, model=run.model, optimizer=run.optimizer, scaler=run.scaler,
        labels=run.data.labels, mask_values=run.data.mask_values,
        normalization=run.data.normalization, progress=progress, generator=run.generator,
    )
    save_checkpoint(checkpoint, run.run_dir / path_name)


def end_of_epoch(run: Run, train_loss: float, seconds: float) -> bool:
    """Re-plan, validate when due, log the row, save checkpoints; True when the run must stop."""
    t = run.config.train
    run.epoch += 1
    run.step_in_epoch, run.loss_sum = 0, 0.0
    if run.budget is not None and run.budget.ready() and not run.budget_stop:
        # Re-plan from the measurements so far; the schedule's end moves with the plan.
        planned = broadcast_object(run.budget.plan(run.epoch, _val_estimate(run)), run.info)
        _set_plan(run, max(planned, run.epoch))
        run.planned = True
    last = run.epoch >= run.planned_epochs or run.budget_stop
    row: dict[str, Any] = {"epoch": run.epoch, "step": run.step, "train_loss": train_loss,
                           "val_loss": math.nan, "val_dice": math.nan, "lr": run.lr}
    improved, val_seconds = False, 0.0
    if run.data.val_images and (run.epoch % t.val_every == 0 or last):
        started = time.monotonic()
        if run.info.is_main:
            metrics = validate(run.ddp_model, run.data.val_images, run.data.val_masks,
                               run.val_loss_fn, run.config, run.device, run.plan)
            row.update(_named(metrics, run.data.labels))
        row = broadcast_object(row, run.info)
        val_seconds = time.monotonic() - started
        if run.budget is not None:
            run.budget.record_validation(val_seconds)
        dice = row["val_dice"]
        if not math.isnan(dice) and (run.best_metric is None or dice > run.best_metric):
            run.best_metric, run.best_epoch, improved = dice, run.epoch, True
    row["seconds"] = seconds + val_seconds
    run.last_metrics = row
    run.history.append(row)
    started = time.monotonic()
    save(run, "last.pt")
    if improved or (not run.data.val_images and last):
        save(run, "best.pt")
    if run.logs is not None:
        run.logs.epoch(row)
    if run.budget is not None:
        run.budget.record_overhead(time.monotonic() - started)
    log.info("epoch %d/%d: train loss %.4f, val Dice %.4f, lr %.2e, %s", run.epoch,
             run.planned_epochs, train_loss, row["val_dice"], run.lr, format_seconds(seconds))
    patience = t.patience is not None and run.best_epoch is not None and (
        run.epoch - run.best_epoch >= t.patience)
    if patience:
        run.stopped = "early_stopping"
    elif run.budget_stop:
        run.stopped = "time_budget"
    return bool(last or patience)


def _named(metrics: dict[str, float], labels: dict[int, str]) -> dict[str, float]:
    out = {k: v for k, v in metrics.items() if not k.startswith("dice_")}
    for label, name in labels.items():
        if f"dice_{label}" in metrics:
            out[f"dice_{name}"] = metrics[f"dice_{label}"]
    return out


def fit(
    config: Config | None,
    data_dir: str | Path | None,
    out_dir: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    on_step: StepCallback | None = None,
    check_data: bool = True,
    data: TrainData | None = None,
) -> TrainResult:
    """Train a network on ``data_dir`` as ``config`` says and write the run into ``out_dir``.

    Args:
        config: the run's config; with ``resume`` the checkpoint's config is used and only
            ``train.epochs`` / ``train.time_budget`` / ``train.patience`` are taken from this one.
        data_dir: folder of images and masks (``unetkit.data`` layouts); with ``resume`` it
            defaults to the resumed run's.
        out_dir: run directory (default ``runs/<timestamp>``; with ``resume`` the resumed one).
        resume: a run directory or checkpoint to continue exactly where it stopped.
        on_step: called after every step with a dict (step, total_steps, epoch, loss, lr, ...).
        check_data: run the data doctor first and refuse to train on errors.
        data: already prepared data (skips loading; used by the demo and tests).

    Returns:
        A ``TrainResult``. Raises ``KeyboardInterrupt`` after saving ``last.pt`` on Ctrl-C.
    """
    checkpoint = None
    if resume is not None:
        path = Path(resume)
        checkpoint = load_checkpoint(path / "last.pt" if path.is_dir() else path)
        config = _resumed_config(checkpoint, config)
        out_dir = out_dir or (path if path.is_dir() else path.parent)
        data_dir = data_dir or checkpoint["training"].get("data_dir")
    if config is None or data_dir is None:
        raise ValueError("fit: a config and a data folder are needed unless resuming")
    run = set_up_run(config, data_dir, out_dir, checkpoint, check_data, data, prepare_data)
    check_calibration(run.config, run.data.labels)
    if run.config.train.time_budget:
        budget_s = parse_duration(run.config.train.time_budget)
        spent = checkpoint["training"]["elapsed_s"] if checkpoint else 0.0
        run.budget = TimeBudget(budget_s, run.config.train.steps_per_epoch,
                                run.config.train.val_every, start=time.monotonic() - spent)
    calibration = None
    try:
        while run.epoch < run.planned_epochs:
            started = time.monotonic()
            train_loss = train_one_epoch(run, on_step)
            if end_of_epoch(run, train_loss, time.monotonic() - started):
                break
        calibration = calibrate_run(run)
    except KeyboardInterrupt:
        save(run, "last.pt")
        log.warning("interrupted at step %d; resume with --resume %s", run.step, run.run_dir)
        raise
    finally:
        run.close()
        cleanup(run.info)
    return TrainResult(run.run_dir, run.epoch, run.step, run.best_metric, run.best_epoch,
                       run.stopped, run.history, unwrap(run.model).eval(), calibration)


def _resumed_config(checkpoint: dict[str, Any], config: Config | None) -> Config:
    saved = config_from_dict(checkpoint["config"], source="checkpoint")
    if config is None:
        return saved
    keep = {k: getattr(config.train, k) for k in ("epochs", "time_budget", "patience")}
    return saved.model_copy(update={"train": saved.train.model_copy(update=keep)})


__all__ = ["DistInfo", "TrainResult", "fit", "train_one_epoch", "validate"]
