"""Set up a run: device, distributed group, data, network, optimizer, resume, run directory.

``Run`` holds the mutable state of one training run; ``loop.py`` drives it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unetkit.config import Config, save_config
from unetkit.runtime.checkpoint import TrainingState, build_model_from_config
from unetkit.runtime.device import (
    PrecisionPlan,
    model_to_memory_format,
    pick_device,
    resolve_precision,
)
from unetkit.runtime.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    init_distributed,
    rank_device,
    unused_parameters,
)
from unetkit.train import builders
from unetkit.train.batches import (
    BatchStream,
    local_processes,
    resolve_augment_device,
    resolve_workers,
)
from unetkit.train.budget import TimeBudget
from unetkit.train.data import TrainData
from unetkit.train.loss_meter import LossMeter
from unetkit.train.run_dir import (
    MetricsLog,
    TensorBoardLog,
    attach_log_file,
    claim_run_dir,
    default_run_dir,
    detach_log_file,
    read_metrics,
    release_run_dir,
)
from unetkit.train.signals import StopSignals
from unetkit.train.state import restore_rng, seed_everything
from unetkit.train.step import StepPieces

log = logging.getLogger(__name__)
CURVES_EVERY_S = 10.0  # redraw progress.png at most this often (and always at the end)


class RunLogs:
    """Rank 0's outputs per epoch: metrics.csv, progress.png, TensorBoard, train.log."""

    def __init__(self, run_dir: Path, labels: dict[int, str], tensorboard: bool,
                 note: str | None = None) -> None:
        self.run_dir = run_dir
        self.note = note  # why the run has no validation (drawn in progress.png), or None
        self.metrics = MetricsLog(run_dir / "metrics.csv", labels)
        self.tensorboard = TensorBoardLog(run_dir) if tensorboard else None
        self.handler = attach_log_file(run_dir)
        self._drawn = 0.0

    def epoch(self, row: dict[str, Any]) -> None:
        """Record one epoch's row; redraw the curves now and then."""
        self.metrics.append(row)
        if self.tensorboard is not None:
            self.tensorboard.log(row)
        if time.monotonic() - self._drawn >= CURVES_EVERY_S:
            self.draw()

    def draw(self) -> None:
        """Write ``progress.png`` from metrics.csv (a failure to draw never stops training)."""
        from unetkit.train.curves import plot_training_curves

        rows = read_metrics(self.metrics.path)
        if rows:
            try:
                plot_training_curves(rows, self.run_dir / "progress.png", note=self.note)
            except Exception as error:  # matplotlib/font/disk problems: curves are optional
                log.warning("progress.png not drawn: %s: %s", type(error).__name__, error)
        self._drawn = time.monotonic()

    def close(self) -> None:
        """Final curves; close files."""
        self.draw()
        if self.tensorboard is not None:
            self.tensorboard.close()
        detach_log_file(self.handler)


@dataclass
class Run:
    """Everything a training run carries from step to step."""

    config: Config
    device: torch.device
    plan: PrecisionPlan
    infer_plan: PrecisionPlan  # validation's: the plan ``unetkit predict`` will use
    info: DistInfo
    data: TrainData
    model: torch.nn.Module
    ddp_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    loss_fn: torch.nn.Module
    val_loss_fn: torch.nn.Module
    sampler: Any
    augmenter: Any  # the training step's (data.augment.device: train), else None
    generator: torch.Generator
    stepper: Any = None  # train.step.StepRunner: forward, loss, backward, optimizer
    losses: LossMeter | None = None
    workers: int = 0  # processes drawing batches (data.num_workers resolved)
    batches: BatchStream | None = None  # the batches from where the run stands
    data_dir: Path | None = None
    run_dir: Path | None = None
    logs: RunLogs | None = None
    budget: TimeBudget | None = None
    state: TrainingState = field(default_factory=TrainingState)
    first_step: int = 0
    budget_stop: bool = False
    signals: StopSignals | None = None
    stop_signal: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = "completed"
    started: float = field(default_factory=time.monotonic)
    elapsed_before: float = 0.0

    def elapsed(self) -> float:
        """Seconds of training so far, earlier sessions of a resumed run included."""
        return self.elapsed_before + time.monotonic() - self.started

    def close(self) -> None:
        """Stop the batch workers; flush the logs (rank 0)."""
        if self.batches is not None:
            self.batches.close()
            self.batches = None
        if self.logs is not None:
            self.logs.close()
            self.logs = None


def set_up_run(
    config: Config,
    data_dir: str | Path,
    out_dir: str | Path | None,
    checkpoint: dict[str, Any] | None,
    check_data: bool,
    data: TrainData | None,
    prepare: Callable[..., TrainData],
) -> Run:
    """Build a ``Run`` ready for its first (or resumed) step.

    The run folder is checked (no earlier run in it, writable) before the data is loaded, and
    removed again when it was created here and the run fails before writing to it.
    """
    device = pick_device(config.train.device)
    info = init_distributed(device)
    # A planned run timed its candidate networks on every rank, and timings differ: every rank
    # trains rank 0's config, so the networks that DDP joins are the same.
    config = broadcast_object(config, info)
    device = rank_device(device, info)
    seed_everything(config.train.seed + info.rank)
    run_dir, created = _claim_run_dir(out_dir, checkpoint is not None, info, data_dir)
    try:
        if data is None:
            data = prepare(config, data_dir, check=check_data)
        run = _build_run(config, data, device, info, data_dir, checkpoint)
        if run_dir is not None:
            _open_run_dir(run, run_dir, checkpoint)
    except BaseException:
        if run_dir is not None:
            release_run_dir(run_dir, created)
        raise
    barrier(info)
    if checkpoint is not None:
        restore_rng(checkpoint["rng"], run.generator)
    return run


def _claim_run_dir(out_dir: str | Path | None, resume: bool, info: DistInfo,
                   data_dir: str | Path | None) -> tuple[Path | None, bool]:
    """Rank 0 checks and creates the run folder; every rank raises its refusal together."""
    claimed: tuple[Path | None, bool] = (None, False)
    problem = None
    if info.is_main:
        try:
            claimed = claim_run_dir(out_dir or default_run_dir(), resume=resume,
                                    data_dir=data_dir)
        except (OSError, ValueError) as error:  # OutputError included
            problem = error
    problem = broadcast_object(problem, info)
    if problem is not None:
        raise problem
    return claimed


def _build_run(config: Config, data: TrainData, device: torch.device, info: DistInfo,
               data_dir: str | Path | None, checkpoint: dict[str, Any] | None) -> Run:
    """Network, optimizer, loss, sampler and state for ``data`` (resumed from ``checkpoint``)."""
    config = builders.resolve_data_config(builders.resolve_model_config(config, data), data)
    workers = resolve_workers(config.data.num_workers, device, local_processes(info))
    config = resolve_augment_device(config, workers)
    plan = resolve_precision(config.train.precision, config.train.channels_last, device,
                             config.model.norm)
    model = build_model_from_config(config).to(device)
    model_to_memory_format(model, plan, config.model.spatial_dims)
    optimizer = builders.build_optimizer(config, model)
    scaler = torch.amp.GradScaler(device.type) if plan.use_scaler else None
    val_config = config.model_copy(update={"model": config.model.model_copy(
        update={"deep_supervision": False})})
    infer_plan = resolve_precision(config.infer.precision, config.infer.channels_last, device,
                                   config.model.norm)
    run = Run(
        config=config, device=device, plan=plan, infer_plan=infer_plan, info=info, data=data,
        model=model,
        ddp_model=model, optimizer=optimizer, scaler=scaler,
        loss_fn=builders.build_loss_fn(config), val_loss_fn=builders.build_loss_fn(val_config),
        sampler=builders.build_sampler(config, data, info),
        augmenter=builders.step_augmenter(config),
        generator=builders.augment_generator(config.train.seed, 0, info.rank),
        losses=LossMeter(device), workers=workers,
    )
    run.data_dir = Path(data_dir).resolve() if data_dir is not None else None
    t = config.train
    run.state = TrainingState(planned_epochs=t.epochs, total_steps=t.epochs * t.steps_per_epoch,
                              warmup_steps=t.warmup_epochs * t.steps_per_epoch, lr=t.lr,
                              data_dir=str(run.data_dir) if run.data_dir else None)
    if checkpoint is not None:
        _restore(run, checkpoint)
    if info.enabled:
        # Searching for unused parameters costs a graph traversal per step, and DDP warns on
        # every rank when it finds none: search only when the model has some.
        unused = unused_parameters(model)
        if unused:
            log.debug("parameters outside the forward pass: %s", ", ".join(unused))
        run.ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=unused is None or bool(unused),
        )
    pieces = StepPieces(run.ddp_model, optimizer, run.loss_fn, plan, device,
                        config.train.grad_clip, scaler)
    run.stepper = builders.build_step_runner(config, pieces, info, info.world_size)
    return run


def _open_run_dir(run: Run, run_dir: Path, checkpoint: dict[str, Any] | None) -> None:
    """Rank 0: logs first (an optional package missing writes nothing), then config.yaml."""
    from unetkit.train.curves import no_validation_reason

    note = None if run.data.val_images else no_validation_reason(
        run.config.data, len(run.data.train_ids))
    run.logs = RunLogs(run_dir, run.data.scored, run.config.train.tensorboard, note)
    try:
        save_config(run.config, run_dir / "config.yaml")
    except BaseException:
        run.close()
        raise
    run.run_dir = run_dir
    if checkpoint is not None:
        run.logs.metrics.truncate_after(run.state.epoch)
    augment = run.config.data.augment
    log.info("training on %s (%s, %s, channels_last=%s, %d process(es), %d batch worker(s), "
             "augmentation %s) into %s", run.device, run.config.model.name, run.plan.name,
             run.plan.channels_last, run.info.world_size, run.workers,
             f"on {augment.device}" if augment.enabled else "off", run_dir)
    if note is not None:
        log.info("%s", note)


def _restore(run: Run, checkpoint: dict[str, Any]) -> None:
    """Load the training state of a checkpoint into ``run`` (RNG states are restored last)."""
    run.model.load_state_dict(checkpoint["model_state"])
    model_to_memory_format(run.model, run.plan, run.config.model.spatial_dims)
    run.optimizer.load_state_dict(checkpoint["optimizer_state"])
    if run.scaler is not None and checkpoint.get("scaler_state"):
        run.scaler.load_state_dict(checkpoint["scaler_state"])
    stored = TrainingState.from_checkpoint(checkpoint)
    if run.config.train.time_budget is None:  # the epochs may have been changed on resume
        stored.planned_epochs = run.state.planned_epochs
        stored.total_steps = run.state.total_steps
    stored.data_dir = stored.data_dir or run.state.data_dir
    run.state = stored
    run.first_step = stored.step
    run.elapsed_before = stored.elapsed_s
    log.info("resuming at epoch %d, step %d", stored.epoch, stored.step)
