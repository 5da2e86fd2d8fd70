"""The checkpoint: one plain dict, its schema, its writer and its reader side by side.

Schema (``format_version`` 2)::

    format_version   int
    config           Config as a plain dict (``unetkit.config.config_to_dict``); a region
                     model's ``data.regions`` / ``data.regions_class_order`` live there
    model_state      the network's state_dict (CPU, contiguous; deep-supervision heads included)
    labels           {int label value: name}, background 0 included
    mask_values      {label: value the training mask files stored} (e.g. {0: 0, 1: 255})
    mask_format      suffix of the training mask files (".png"), or None (older checkpoints)
    preprocessing    ``unetkit.data.preprocessing.Preprocessor.state_dict()`` (normalisation
                     statistics, image offset, ...): what prediction applies before the network
    calibration      optional: the threshold record of ``unetkit.infer.calibration``
    training         optional (training checkpoints): ``TrainingState`` as a dict
    optimizer_state, scaler_state, rng
                     ``last.pt`` only (``RESUME_KEYS``): what an exact resume needs. ``best.pt``,
                     the model for prediction and sharing, leaves them out (a third of
                     ``last.pt``'s size with AdamW, whose two moments per weight it holds)

Every value is stored once. Loading never executes code from the file: ``torch.load`` runs with
``weights_only=True`` (only tensors, containers and primitive values, plus NumPy arrays for
checkpoints of format 1), so a pickle that calls a function is refused before anything runs.
Format-1 checkpoints (``normalization``, ``epoch``/``step``/``metrics`` at the top level) are
read into the same shape. A file of a newer format, or whose weights hold NaN or infinity, is
refused at load; a config describing a network too large to build is refused before anything is
allocated (``unetkit.runtime.model_checks``).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit.config import Config, ConfigError, config_from_dict
from unetkit.runtime import model_checks
from unetkit.runtime.atomic import WriteError, atomic_path, remove_partials, write_error
from unetkit.runtime.training_state import TrainingState  # noqa: F401 - re-exported

FORMAT_VERSION = 2
REQUIRED_KEYS = ("format_version", "config", "model_state", "labels")
RESUME_KEYS = ("optimizer_state", "rng", "scaler_state")  # last.pt only


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe or not a unetkit checkpoint."""


def training_checkpoint(
    *, config: Config, model_state: dict[str, torch.Tensor], labels: dict[int, str],
    mask_values: dict[int, int], preprocessing: dict[str, Any], state: TrainingState,
    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
    rng: dict[str, Any], mask_format: str | None = None, resume: bool = True,
) -> dict[str, Any]:
    """The dict written to ``last.pt`` (``resume=True``) or ``best.pt`` (``resume=False``:
    without ``RESUME_KEYS``; schema above)."""
    from unetkit.config import config_to_dict

    checkpoint = {
        "format_version": FORMAT_VERSION,
        "config": config_to_dict(config),
        "model_state": model_state,
        "labels": dict(labels),
        "mask_values": dict(mask_values),
        "mask_format": mask_format,
        "preprocessing": preprocessing,
        "training": state.as_dict(),
    }
    if resume:
        checkpoint.update(optimizer_state=optimizer.state_dict(), rng=rng,
                          scaler_state=scaler.state_dict() if scaler is not None else None)
    return checkpoint


def check_resumable(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Refuse to resume from a checkpoint without the optimizer and RNG states (``best.pt``).

    Raises:
        CheckpointError: one line naming ``path`` and the file to resume from instead.
    """
    missing = [key for key in RESUME_KEYS[:2] if checkpoint.get(key) is None]
    if missing:
        raise CheckpointError(
            f"{path}: a model for prediction, without what an exact resume needs "
            f"({', '.join(missing)}); resume from the run folder or its last.pt")


def plain(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays turned into Python numbers and lists.

    The safe loader accepts tensors, containers and Python primitives only; a NumPy float that
    slipped into a metrics dict would make the whole file unreadable.
    """
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (``unetkit.runtime.atomic``): a crash never
    leaves a truncated file, the mode follows the umask (0644 under the usual 022), and a
    temporary file an earlier writer of ``path`` left behind (kill -9) is removed first.

    Raises:
        WriteError: the file could not be written (disk full, no permission): one error naming
            ``path`` and the reason, with its ``errno``; a file already at ``path`` is intact.
    """
    path = Path(path)
    checkpoint = plain({"format_version": FORMAT_VERSION, **checkpoint})
    remove_partials(path.parent, [path.name])
    try:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)
    except WriteError as error:
        kept = " (the previous file there is unchanged)" if path.exists() else ""
        raise write_error(path, error, f"{path}: checkpoint not saved: "
                          f"{error.reason}{kept}") from None
    return path


def _numpy_globals() -> list[Any]:
    """The NumPy names a format-1 checkpoint's RNG state needs (they only build arrays)."""
    core = getattr(np, "_core", None) or np.core
    names = [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype]
    names += [type(np.dtype(t)) for t in ("uint32", "float64", "int64")]
    return names


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or ``best.pt`` (else ``last.pt``) inside a run folder."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (no code from the file runs) and normalise it to format 2.

    Raises:
        CheckpointError: missing, unreadable, unsafe (the pickle calls functions) or not a
            unetkit checkpoint; the message names the file.
    """
    path = resolve_checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = re.search(r"(unsupported GLOBAL [^\s]+|Unsupported global: [^\s]+)", str(error))
        if unsafe is None:
            raise CheckpointError(f"{path}: not a readable checkpoint (not a PyTorch file, or "
                                  "truncated)") from None
        raise CheckpointError(f"{path}: refused to load: the file asks to run code a checkpoint "
                              f"never contains ({unsafe.group(1)}); unetkit does not execute "
                              "code from files") from None
    except Exception as error:  # torch raises many types for corrupt files
        raise CheckpointError(f"{path}: not a readable checkpoint "
                              f"({type(error).__name__}: {str(error)[:200]})") from None
    if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path}: not a unetkit checkpoint (keys {REQUIRED_KEYS} expected)")
    checkpoint = upgrade(checkpoint, str(path))
    problem = model_checks.unusable_weights(checkpoint["model_state"])
    if problem:
        raise CheckpointError(f"{path}: {problem}; refused")
    return checkpoint


def upgrade(checkpoint: dict[str, Any], source: str = "checkpoint") -> dict[str, Any]:
    """Format 1 -> 2 (checkpoints and export metadata): preprocessing from ``normalization``,
    the training state in one place.

    Raises:
        CheckpointError: a format this unetkit does not read (a newer one), naming ``source``.
    """
    problem = model_checks.newer_format(checkpoint.get("format_version", 1), FORMAT_VERSION)
    if problem:
        raise CheckpointError(f"{source}: {problem}")
    if checkpoint.get("format_version", 1) >= 2:
        return checkpoint
    out = {k: checkpoint[k] for k in ("config", "model_state", "labels") if k in checkpoint}
    out["format_version"] = FORMAT_VERSION
    out["mask_values"] = checkpoint.get("mask_values") or {}
    out["preprocessing"] = {"normalization": checkpoint.get("normalization")}
    if checkpoint.get("calibration") is not None:
        out["calibration"] = checkpoint["calibration"]
    if "training" in checkpoint:
        out["training"] = TrainingState.from_checkpoint(checkpoint).as_dict()
        for key in ("optimizer_state", "scaler_state", "rng"):
            out[key] = checkpoint.get(key)
    return out


def checkpoint_config(checkpoint: dict[str, Any], source: str = "checkpoint") -> Config:
    """The validated ``Config`` stored in a checkpoint."""
    return config_from_dict(checkpoint["config"], source=source)


def build_model_from_config(config: Config, source: str = "model") -> torch.nn.Module:
    """The network ``config.model`` describes (deep supervision as configured), untrained.

    Raises:
        ConfigError: the network would be too large to build (``model_checks.MAX_PARAMETERS``),
            found on the meta device before anything is allocated; the message names ``source``.
    """
    from unetkit.nn import build_model

    options = config.model.build_options()
    problem = model_checks.too_large(model_checks.skeleton(config.model.name, options), options)
    if problem:
        raise ConfigError(f"{source}: {problem}")
    return build_model(config.model.name, **options)


def model_from_checkpoint(checkpoint: dict[str, Any], source: str = "checkpoint"
                          ) -> torch.nn.Module:
    """Rebuild a checkpoint's network and load its weights (eval mode). A network too large to
    build, or weights that do not fit it, are refused before any memory is allocated.

    Raises:
        CheckpointError: the network is too large, or the weights do not fit its config's.
    """
    config = checkpoint_config(checkpoint, source)
    options = config.model.build_options()
    try:
        layout = model_checks.skeleton(config.model.name, options)  # shapes only
    except ValueError as error:
        raise CheckpointError(f"{source}: its config describes no network ({error})") from None
    too_large = model_checks.too_large(layout, options)
    if too_large:
        raise CheckpointError(f"{source}: its config: {too_large}")
    problem = model_checks.shape_mismatch(layout, checkpoint["model_state"])
    if problem:
        raise CheckpointError(f"{source}: the stored weights do not fit the network of its "
                              f"config ({problem})")
    model = build_model_from_config(config)
    model.load_state_dict(checkpoint["model_state"])
    return model.eval()
