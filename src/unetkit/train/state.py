"""Training state that must survive an interruption: RNG states and the checkpoint dict.

Exact resume needs the model, optimizer, GradScaler and schedule position, plus every random
stream: Python's, NumPy's, torch's (CPU and CUDA) and the augmentation generator. The patch stream
is a function of ``(seed, epoch, rank)`` (the sampler is re-seeded every epoch), so a run stopped
in the middle of an epoch resumes by re-drawing and skipping the batches it already used.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from unetkit.config import Config, config_to_dict


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """A distinct, reproducible seed per (run seed, epoch, rank)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def capture_rng(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random stream's state, as a picklable dict."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["augment"] = generator.get_state()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Inverse of ``capture_rng``."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "augment" in state:
        generator.set_state(state["augment"])


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare network inside a DistributedDataParallel wrapper."""
    return model.module if hasattr(model, "module") else model


def model_state_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The network's state dict on CPU in the default (contiguous) memory format."""
    return {k: v.detach().to("cpu").contiguous() for k, v in unwrap(model).state_dict().items()}


def build_checkpoint(
    *,
    config: Config,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    labels: dict[int, str],
    mask_values: dict[int, int],
    normalization: dict[str, Any],
    progress: dict[str, Any],
    generator: torch.Generator | None,
) -> dict[str, Any]:
    """The plain dict written to ``last.pt`` / ``best.pt`` (see ``unetkit.train.checkpoint``).

    ``progress`` carries the loop's position: ``epoch`` (completed epochs), ``step``,
    ``step_in_epoch``, ``partial_loss``, ``total_steps``, ``warmup_steps``, ``metrics``,
    ``best_metric``, ``best_epoch``, ``elapsed_s``, ``planned_epochs``.
    """
    return {
        "config": config_to_dict(config),
        "model_state": model_state_cpu(model),
        "labels": dict(labels),
        "mask_values": dict(mask_values),
        "normalization": normalization,
        "optimizer_state": optimizer.state_dict(),
        "scheduler_state": {
            "schedule": config.train.schedule,
            "base_lr": config.train.lr,
            "step": progress["step"],
            "total_steps": progress["total_steps"],
            "warmup_steps": progress["warmup_steps"],
        },
        "scaler_state": scaler.state_dict() if scaler is not None else None,
        "epoch": progress["epoch"],
        "step": progress["step"],
        "rng": capture_rng(generator),
        "metrics": progress.get("metrics", {}),
        "best_metric": progress.get("best_metric"),
        "training": {k: v for k, v in progress.items() if k not in ("metrics", "best_metric")},
    }
