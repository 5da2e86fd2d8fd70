"""Random streams and model state that must survive an interruption.

Exact resume needs the model, optimizer, GradScaler and schedule position (the checkpoint's
``TrainingState``, ``unetkit.runtime.checkpoint``), plus every random stream: Python's, NumPy's,
torch's (CPU and CUDA) and the augmentation generator. The patch stream is a function of
``(seed, epoch, rank)`` (the sampler is re-seeded every epoch), so a run stopped in the middle of
an epoch resumes by re-drawing and skipping the batches it already used.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


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
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        # as plain values: checkpoints are loaded with weights_only (no NumPy objects)
        "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["augment"] = generator.get_state()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Inverse of ``capture_rng``."""
    random.setstate(_tuples(state["python"]))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "augment" in state:
        if state["augment"].numel() == generator.get_state().numel():
            generator.set_state(state["augment"])
        else:  # a CUDA generator's state (augmentation drew on the GPU in older runs)
            log.warning("the checkpoint's augmentation generator was a GPU one; augmentation "
                        "continues from a fresh seed (the resumed run will not equal an "
                        "uninterrupted one exactly)")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare network inside a DistributedDataParallel wrapper."""
    return model.module if hasattr(model, "module") else model


def model_state_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The network's state dict on CPU in the default (contiguous) memory format."""
    return {k: v.detach().to("cpu").contiguous() for k, v in unwrap(model).state_dict().items()}


def _tuples(value: Any) -> Any:
    """Lists back to the tuples ``random.setstate`` needs (a saved state may hold lists)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
