"""A checkpoint is one plain dict saved atomically (temp file + rename).

Keys (format 1):
    format_version: int
    config:         Config as a plain dict (``unetkit.config.config_to_dict``)
    model_state:    the network's state_dict (deep-supervision heads included)
    labels:         {int label value: name}, background 0 included
    normalization:  fitted normaliser state (``unetkit.data`` Normalizer.state_dict())
    optimizer_state, scheduler_state, epoch, step, rng, metrics, best_metric: training state,
                    present in training checkpoints, absent in exported/slim ones.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1
_REQUIRED = ("format_version", "config", "model_state", "labels")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not a unetkit checkpoint."""


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> Path:
    """Write ``checkpoint`` to ``path`` atomically: a crash never leaves a truncated file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {"format_version": FORMAT_VERSION, **checkpoint}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; ``CheckpointError`` if it is not one."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # torch raises many types for corrupt files
        raise CheckpointError(f"{path}: not a readable checkpoint ({error})") from None
    if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in _REQUIRED):
        raise CheckpointError(f"{path}: not a unetkit checkpoint (keys {_REQUIRED} expected)")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the network described by a checkpoint's config and load its weights (eval mode)."""
    from unetkit.config import config_from_dict
    from unetkit.nn import build_model

    config = config_from_dict(checkpoint["config"], source="checkpoint")
    model = build_model(config.model.name, **config.model.build_options())
    model.load_state_dict(checkpoint["model_state"])
    return model.eval()
