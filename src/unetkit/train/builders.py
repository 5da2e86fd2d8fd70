"""Build the pieces of a run from the config: network, optimizer, loss, patch stream, augmenter,
and the training step's runner (its mode measured, ``unetkit.runtime.compile``)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from unetkit.config import Config
from unetkit.config.run_schema import BINARY_LOSSES
from unetkit.runtime.distributed import DistInfo
from unetkit.train.data import TrainData
from unetkit.train.state import epoch_seed

log = logging.getLogger(__name__)


def resolve_model_config(config: Config, data: TrainData) -> Config:
    """Fill ``model.in_channels`` / ``model.out_channels`` from the data when they do not match.

    ``out_channels`` defaults to one channel per label (softmax), or 1 (sigmoid) for two labels
    with a sigmoid loss (``bce`` / ``dice_bce``); a region model has one per region.

    Raises:
        ValueError: ``model.out_channels`` is set to another count than the regions'.
    """
    model = config.model
    updates: dict[str, Any] = {}
    if model.in_channels != data.in_channels:
        log.info("model.in_channels: %d -> %d (from the images)",
                 model.in_channels, data.in_channels)
        updates["in_channels"] = data.in_channels
    if data.regions and model.out_channels not in (None, len(data.regions)):
        raise ValueError(f"model.out_channels {model.out_channels}: a region model has one "
                         f"sigmoid output per region ({len(data.regions)}: "
                         f"{', '.join(r.name for r in data.regions)}); leave it unset")
    if data.regions and model.out_channels is None:
        updates["out_channels"] = len(data.regions)
    elif model.out_channels is None:
        n = len(data.labels)
        sigmoid = config.train.loss.name in BINARY_LOSSES and n == 2
        updates["out_channels"] = 1 if sigmoid else n
    if not updates:
        return config
    return config.model_copy(update={"model": model.model_copy(update=updates)})


def resolve_data_config(config: Config, data: TrainData) -> Config:
    """What the data decided, written into the config so that checkpoints and run folders
    record it: ``data.image_offset: auto`` -> the offset measured on the training cases;
    regions of interest -> ``train.loss.ignore_index`` = the label outside them; the regions of
    a dataset.json -> ``data.regions`` / ``data.regions_class_order``.

    Raises:
        ValueError: ``train.loss.ignore_index`` is set to another value than the data's.
    """
    if config.data.image_offset == "auto":
        config = config.model_copy(update={"data": config.data.model_copy(
            update={"image_offset": data.image_offset})})
    if data.regions and not config.data.regions:
        log.info("data.regions: %s, painted as labels %s (dataset.json)",
                 ", ".join(f"{r.name} {r.labels}" for r in data.regions),
                 data.regions_class_order)
        config = config.model_copy(update={"data": config.data.model_copy(update={
            "regions": data.regions, "regions_class_order": data.regions_class_order})})
    return resolve_ignore_index(config, data.ignore_index)


def resolve_ignore_index(config: Config, ignore_index: int | None) -> Config:
    """``train.loss.ignore_index`` set to the data's ignore label (None: left as configured).

    Raises:
        ValueError: the config sets another ignore label.
    """
    loss = config.train.loss
    if ignore_index is None or loss.ignore_index == ignore_index:
        return config
    if loss.ignore_index is not None:
        raise ValueError(f"train.loss.ignore_index {loss.ignore_index} conflicts with the "
                         f"regions of interest or the ignore label (data.ignore_label), whose "
                         f"pixels training masks mark with label {ignore_index}; leave it "
                         f"unset (or set it to {ignore_index})")
    log.info("train.loss.ignore_index: %d (outside the regions of interest, or unlabelled)",
             ignore_index)
    train = config.train.model_copy(update={"loss": loss.model_copy(
        update={"ignore_index": ignore_index})})
    return config.model_copy(update={"train": train})


def build_optimizer(config: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW or SGD with Nesterov momentum (nnU-Net's choice), learning rate set per step.

    The fused implementations are used on CPU and CUDA: one kernel per parameter group instead of
    a dozen element-wise passes (about 8x faster steps of the optimizer on CPU).
    """
    t = config.train
    params = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if params and params[0].device.type in ("cpu", "cuda") else {}
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=t.lr, momentum=t.momentum, nesterov=True, weight_decay=t.weight_decay,
            **fused,
        )
    return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, **fused)


def build_loss_fn(config: Config) -> torch.nn.Module:
    """The configured loss (per region for a region model: ``unetkit.losses.regions``), wrapped
    in ``DeepSupervisionLoss`` when deep supervision is on."""
    from unetkit.losses import DeepSupervisionLoss, build_loss
    from unetkit.losses.regions import build_region_loss

    regions = config.data.regions
    loss = build_region_loss(config.train.loss, [r.labels for r in regions]) if regions else \
        build_loss(config.train.loss, config.model.out_channels)
    return DeepSupervisionLoss(loss) if config.model.deep_supervision else loss


def build_sampler(config: Config, data: TrainData, info: DistInfo) -> Any:
    """This rank's patch sampler over the training cases (one epoch = ``steps_per_epoch``);
    it augments the batches it draws when ``data.augment.device`` is ``cpu``."""
    from unetkit.data.sampling import PatchSampler

    d = config.data
    augment = build_augmenter(config) if d.augment.device == "cpu" else None
    return PatchSampler(
        data.train_images, data.train_masks, d.patch_size, d.batch_size,
        d.foreground_fraction, config.train.seed, rank=info.rank, world_size=info.world_size,
        batches_per_epoch=config.train.steps_per_epoch,
        ignore_index=config.train.loss.ignore_index,  # never a foreground centre
        augment=augment,
    )


def build_augmenter(config: Config) -> Any:
    """The batched augmenter, or None when augmentation is disabled. Where it shows outside
    the patch, masks get the ignore label when there is one (nothing was labelled there)."""
    if not config.data.augment.enabled:
        return None
    from unetkit.data.augment import Augmenter

    ignore = config.train.loss.ignore_index
    return Augmenter(config.data.augment, config.model.spatial_dims,
                     mask_fill=ignore if ignore is not None else 0)


def step_augmenter(config: Config) -> Any:
    """The augmenter of the training step (``data.augment.device: train``), else None."""
    return build_augmenter(config) if config.data.augment.device == "train" else None


def augment_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """The augmentation generator of one epoch: a CPU one, whatever the device (the augmenter
    draws its parameters on the host, so that a GPU step never waits for them)."""
    generator = torch.Generator()
    generator.manual_seed(epoch_seed(seed, epoch, rank))
    return generator


def build_step_runner(config: Config, pieces: Any, info: DistInfo, world_size: int = 1) -> Any:
    """The ``StepRunner`` of a run: candidate modes from ``train.compile`` /
    ``train.cuda_graphs`` and the device, decided from cached timings or tried on the first
    steps (``runtime.compile.decide``; rank 0 decides for every rank)."""
    from unetkit.runtime import compile as modes
    from unetkit.runtime.distributed import broadcast_object
    from unetkit.train.step import StepRunner

    device, cache = pieces.device, modes.TimingCache()
    key = modes.step_key(device, step_signature(config, pieces.plan.name, world_size))
    candidates, chosen, reasons = _decide_mode(config, device, pieces.scaler is not None,
                                               info.enabled, cache.get(key))
    for reason in reasons:
        log.warning("%s", reason)
    # every rank runs rank 0's candidates and choice (their caches may differ); rank 0 records
    candidates, chosen = broadcast_object((candidates, chosen), info)
    cache = cache if info.is_main else None
    if chosen is not None and chosen != "eager":
        log.info("train step: %s (measured faster for this step on this device)", chosen)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return StepRunner(pieces, candidates, chosen, cache=cache, key=key, sync=sync,
                      agree=lambda mode: broadcast_object(mode, info))


def cached_step_mode(config: Config, device: torch.device, precision: str, *,
                     scaler: bool = False) -> tuple[str | None, dict[str, Any]]:
    """The mode a one-process run of ``config`` would take from the cached timings of its step
    (None: it would try the candidates) and those ``{mode: Timing}`` (the planner's view)."""
    from unetkit.runtime import compile as modes

    key = modes.step_key(device, step_signature(config, precision, 1))
    timings = modes.TimingCache().get(key)
    return _decide_mode(config, device, scaler, False, timings)[1], timings


def _decide_mode(config: Config, device: torch.device, scaler: bool, distributed: bool,
                 timings: dict[str, Any]) -> tuple[list[str], str | None, list[str]]:
    """``runtime.compile.decide`` for a run of ``config`` (its options, budget or steps)."""
    from unetkit.config import parse_duration
    from unetkit.runtime import compile as modes

    t = config.train
    allowed = modes.support(device, scaler=scaler, distributed=distributed)
    budget = parse_duration(t.time_budget) if t.time_budget else None
    return modes.decide(t.compile, t.cuda_graphs, allowed, timings, budget_s=budget,
                        steps=None if budget else t.epochs * t.steps_per_epoch)


def step_signature(config: Config, precision: str, world_size: int) -> dict[str, Any]:
    """What a training step's speed depends on, besides the device and torch."""
    t, d = config.train, config.data
    return {"model": config.model.model_dump(mode="json"), "patch": list(d.patch_size),
            "batch": d.batch_size, "precision": precision, "channels_last": t.channels_last,
            "optimizer": t.optimizer, "loss": t.loss.model_dump(mode="json"),
            "grad_clip": t.grad_clip, "processes": world_size}
