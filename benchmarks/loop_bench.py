"""The training loop against the bare training step, per step mode (``bench_train.py --loop``).

* ``step``: a step on a batch already on the device, in each mode the device allows (eager,
  ``torch.compile``, a CUDA graph of the whole step, compile ``reduce-overhead``;
  ``unetkit.train.step``), without and with augmentation on the device (what the planner times):
  steps/s after the mode's warm-up, and the warm-up's seconds (compilation, capture).
* ``loop``: ``train_one_epoch`` as ``unetkit train`` runs it on in-memory cases (patch sampling,
  augmentation, transfer, the step, loss read-back, budget bookkeeping), epochs after the first
  (whose first steps try the step modes) timed; validation and checkpoints left out. Variants:
  ``today`` (the loop before issue 27: batches and augmentation in the training process on the
  training device, the loss read back every step, eager) and ``auto`` (every new default:
  workers sized to the host, augmentation where the batches are drawn, the measured step mode).
* ``ratio``: loop steps/s over the bare step of the mode the loop ran (no augmentation).

Plans: ``hippocampus`` = the zero-config GPU plan of Task04 (3D, 4 x 40x56x40, widths 32-256,
instance norm, deep supervision, Dice + CE, 3 classes); ``demo`` = 2D 8 x 128^2, base 16, the
demo's network; ``small`` = 2D 4 x 64^2, base 8, depth 3 (a loop whose step is short, so that
the loop's own costs show on a CPU). ``--config RUN/config.yaml`` takes a run's exact config.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from unetkit.config import Config, apply_values, load_config
from unetkit.runtime.checkpoint import build_model_from_config
from unetkit.runtime.compile import Timing, TimingCache, candidate_modes, step_key, support
from unetkit.runtime.device import (
    model_to_memory_format,
    pick_device,
    resolve_precision,
    to_memory_format,
)
from unetkit.train import builders, loss_meter
from unetkit.train.batches import available_cores
from unetkit.train.step import WARMUP, StepPieces, StepRunner

PLANS: dict[str, dict[str, Any]] = {
    "hippocampus": {"model.spatial_dims": 3, "model.depth": 3, "model.widths": [32, 64, 128, 256],
                    "model.norm": "instance", "model.deep_supervision": True,
                    "model.in_channels": 1, "model.out_channels": 3,
                    "data.patch_size": [40, 56, 40], "data.batch_size": 4, "train.lr": 0.002},
    "demo": {"model.spatial_dims": 2, "model.depth": 4, "model.base_width": 16,
             "model.norm": "batch", "model.in_channels": 1, "model.out_channels": 2,
             "data.patch_size": [128, 128], "data.batch_size": 8},
    "small": {"model.spatial_dims": 2, "model.depth": 3, "model.base_width": 8,
              "model.norm": "batch", "model.in_channels": 1, "model.out_channels": 2,
              "data.patch_size": [64, 64], "data.batch_size": 4},
}
CASE_SIZE = {3: (36, 52, 36), 2: (192, 192)}  # hippocampus images are about 35x51x35


def plan_config(plan: str, device: str, config_file: str | None = None) -> Config:
    """The benchmarked config: a run's config file, or one of ``PLANS`` on ``device``."""
    if config_file is not None:
        config = load_config(config_file)
        return apply_values(config, {"train.device": device, "train.time_budget": None},
                            source="bench")
    return apply_values(Config(), {**PLANS[plan], "train.device": device}, source="bench")


def _pieces(config: Config, device: torch.device) -> tuple[StepPieces, Any]:
    torch.manual_seed(0)
    plan = resolve_precision(config.train.precision, config.train.channels_last, device)
    model = build_model_from_config(config).to(device)
    model_to_memory_format(model, plan, config.model.spatial_dims)
    optimizer = builders.build_optimizer(config, model)
    scaler = torch.amp.GradScaler(device.type) if plan.use_scaler else None
    return StepPieces(model, optimizer, builders.build_loss_fn(config), plan, device,
                      config.train.grad_clip, scaler), plan


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_rate(config: Config, mode: str, steps: int, augment: bool = False) -> dict[str, float]:
    """Steps/s of ``mode`` on a resident batch (after warm-up) and the warm-up's seconds."""
    device = pick_device(config.train.device)
    pieces, plan = _pieces(config, device)
    runner = StepRunner(pieces, [mode], mode)
    d, classes = config.data, max(config.model.out_channels or 2, 2)
    generator = torch.Generator(device=device).manual_seed(0)
    image = torch.randn(d.batch_size, config.model.in_channels, *d.patch_size, device=device,
                        generator=generator)
    mask = torch.randint(0, classes, (d.batch_size, *d.patch_size), device=device,
                         generator=generator)
    augmenter = builders.build_augmenter(config) if augment else None
    host = torch.Generator().manual_seed(0)  # the augmenter draws on the host

    def step() -> None:
        x, y = augmenter(image, mask, host) if augmenter is not None else (image, mask)
        runner(to_memory_format(x, plan), y, config.train.lr)

    _sync(device)
    started = time.perf_counter()
    for _ in range(WARMUP[mode] + 2):
        step()
    _sync(device)
    warm = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - started
    return {"steps_per_s": steps / seconds, "warmup_s": warm, "mode": runner.mode}


def synthetic_data(config: Config, cases: int = 24) -> Any:
    """In-memory ``TrainData``: 3D blobs or 2D discs of the plan's dimensionality."""
    from unetkit.data.synthetic import make_blobs_3d
    from unetkit.train.data import TrainData

    dims, classes = config.model.spatial_dims, max(config.model.out_channels or 2, 2)
    images, masks = [], []
    for seed in range(cases):
        size = CASE_SIZE[dims] if dims == 3 else (1,) + CASE_SIZE[dims]
        image, mask = make_blobs_3d(size, seed=seed, num_classes=classes)
        images.append(image if dims == 3 else image[:, 0])
        masks.append(mask if dims == 3 else mask[0])
    labels = {i: f"c{i}" for i in range(classes)}
    return TrainData([f"c{i}" for i in range(cases)], [], images, masks, [], [], labels,
                     {i: i for i in labels}, {"normalization": {"scheme": "none"}},
                     config.model.in_channels)


def loop_rate(config: Config, data: Any, variant: str, epochs: int) -> dict[str, Any]:
    """Steps/s of ``train_one_epoch`` over ``epochs`` timed epochs (after a first one)."""
    from unetkit.train.data import prepare_data
    from unetkit.train.loop import train_one_epoch
    from unetkit.train.setup import set_up_run

    if variant == "today":
        config = apply_values(config, {"data.num_workers": 0, "data.augment.device": "train",
                                       "train.compile": "off", "train.cuda_graphs": "off"},
                              source="bench")
    elif variant == "workers":  # every spare core draws and augments batches
        config = apply_values(config, {"data.num_workers": max(available_cores() - 1, 1),
                                       "data.augment.device": "cpu"}, source="bench")
    every = loss_meter.READ_EVERY
    loss_meter.READ_EVERY = 1 if variant == "today" else every
    with tempfile.TemporaryDirectory() as folder:
        run = set_up_run(config, None, Path(folder) / "run", None, False, data, prepare_data)
        run.stepper = inside = TimedStep(run.stepper)
        try:
            train_one_epoch(run)  # the step modes' trial, workers starting
            run.state.epoch += 1
            run.state.step_in_epoch = 0
            seconds, inside.seconds = [], 0.0
            for _ in range(epochs):
                _sync(run.device)
                started = time.perf_counter()
                train_one_epoch(run)
                _sync(run.device)
                seconds.append(time.perf_counter() - started)
                run.state.epoch += 1
                run.state.step_in_epoch, run.state.partial_loss = 0, 0.0
        finally:
            run.close()
            loss_meter.READ_EVERY = every
    steps = config.train.steps_per_epoch
    return {"steps_per_s": steps / statistics.median(seconds), "mode": run.stepper.mode,
            "workers": run.workers, "augment": run.config.data.augment.device,
            # on a CPU (synchronous) the share of the loop's time spent in the step itself, a
            # ratio that machine load changes little; on a GPU the host's share only
            "step_share": inside.seconds / sum(seconds)}


class TimedStep:
    """The run's ``StepRunner``, with the seconds spent inside its calls added up."""

    def __init__(self, runner: StepRunner) -> None:
        self.runner, self.seconds = runner, 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runner, name)

    def __call__(self, *args: Any) -> torch.Tensor:
        started = time.perf_counter()
        loss = self.runner(*args)
        self.seconds += time.perf_counter() - started
        return loss


def remember(config: Config, rows: dict[str, dict[str, float]]) -> None:
    """Put the step measurements into the (benchmark's own) timing cache, as a first run would
    have: the loop's ``auto`` then runs the fastest mode at once, as a later run does."""
    device = pick_device(config.train.device)
    plan = resolve_precision(config.train.precision, config.train.channels_last, device)
    key = step_key(device, builders.step_signature(config, plan.name, 1))
    TimingCache().put(key, {mode: Timing(1.0 / row["steps_per_s"], row["warmup_s"])
                            for mode, row in rows.items()})


def run(config: Config, steps: int, epochs: int, modes: list[str] | None) -> dict[str, Any]:
    """Every measurement of the module docstring, as one JSON-ready dict."""
    device = pick_device(config.train.device)
    scaler = resolve_precision(config.train.precision, "auto", device).use_scaler
    modes = modes or candidate_modes("auto", "auto", support(device, scaler=scaler))[0]
    rows: dict[str, Any] = {"step": {}, "step_augmented": {}, "loop": {}}
    for mode in modes:
        rows["step"][mode] = row = step_rate(config, mode, steps)
        print(f"step {mode:<15} {row['steps_per_s']:8.1f} steps/s (warm-up "
              f"{row['warmup_s']:.1f} s)", flush=True)
    rows["step_augmented"]["eager"] = row = step_rate(config, "eager", steps, augment=True)
    print(f"step eager+augment  {row['steps_per_s']:8.1f} steps/s", flush=True)
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="bench-cache-")
    remember(config, rows["step"])
    data = synthetic_data(config)
    for variant in ("today", "workers", "auto"):
        rows["loop"][variant] = row = loop_rate(config, data, variant, epochs)
        bare = rows["step"].get(row["mode"], {}).get("steps_per_s")
        row["ratio"] = row["steps_per_s"] / bare if bare else None
        share = "" if bare is None else f", {row['ratio']:.0%} of the bare step"
        print(f"loop {variant:<8} {row['steps_per_s']:8.1f} steps/s, mode {row['mode']}, "
              f"{row['workers']} workers, augmentation on {row['augment']}{share}, "
              f"{row['step_share']:.0%} of its time in the step", flush=True)
    plan = resolve_precision(config.train.precision, config.train.channels_last, device)
    rows["machine"] = {"device": torch.cuda.get_device_name(device) if device.type == "cuda"
                       else "cpu", "cores": available_cores(), "threads": torch.get_num_threads(),
                       "torch": torch.__version__}
    rows["config"] = {"patch": config.data.patch_size, "batch": config.data.batch_size,
                      "dims": config.model.spatial_dims, "widths": config.model.widths,
                      "steps_per_epoch": config.train.steps_per_epoch, "precision": plan.name}
    return rows
