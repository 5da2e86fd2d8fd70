"""ONNX / TorchScript export with numerical verification against PyTorch.

Both formats keep the batch and spatial axes dynamic. After writing, the file is loaded back
(onnxruntime / ``torch.jit.load``) and run on random inputs of several sizes next to the PyTorch
model; the largest absolute difference is returned and an export that differs by more than
``tolerance`` raises. The checkpoint's metadata (config, labels, mask values, normalisation)
travels inside the file (ONNX ``metadata_props``; TorchScript extra file ``unetkit.json``), so
``unetkit predict MODEL.onnx ...`` needs nothing else.

TorchScript is produced by tracing (``torch.jit.script`` does not accept the models' typed
Python); the traced graph keeps sizes symbolic, which the multi-size check confirms. The ONNX
writer itself is ``unetkit.runtime.onnx_export.export_onnx`` (re-exported here), shared with the
cached export behind ``infer.engine: onnxruntime``.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from unetkit.config import config_from_dict
from unetkit.runtime.atomic import atomic_path
from unetkit.runtime.checkpoint import (
    FORMAT_VERSION,
    load_checkpoint,
    model_from_checkpoint,
    resolve_checkpoint_path,
)
from unetkit.runtime.network import fuse_conv_bn, output_differences
from unetkit.runtime.onnx import onnx_network
from unetkit.runtime.onnx_export import check_sizes, export_onnx, require_onnx_export
from unetkit.runtime.outputs import check_file

log = logging.getLogger(__name__)

Format = Literal["onnx", "torchscript"]


class ExportError(RuntimeError):
    """The exported model does not reproduce PyTorch's outputs within the tolerance."""


@dataclass
class ExportResult:
    """Where the model was written and the max abs difference to PyTorch per checked size."""

    path: Path
    format: str
    max_abs_diff: dict[tuple[int, ...], float]

    @property
    def worst(self) -> float:
        """Largest difference over all checked sizes."""
        return max(self.max_abs_diff.values(), default=float("nan"))


def metadata(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe inference metadata of a checkpoint (no weights, no training state)."""
    mask_values = checkpoint.get("mask_values") or {}
    return {"format_version": FORMAT_VERSION,
            "config": checkpoint["config"],
            "labels": {str(k): v for k, v in checkpoint["labels"].items()},
            "mask_values": {str(k): int(v) for k, v in mask_values.items()},
            "mask_format": checkpoint.get("mask_format"),
            "preprocessing": checkpoint.get("preprocessing"),
            "calibration": checkpoint.get("calibration")}


def export_torchscript(model: torch.nn.Module, path: str | Path, example: torch.Tensor, *,
                       meta: dict[str, Any] | None = None) -> Path:
    """Write a traced TorchScript module; ``meta`` as the extra file ``unetkit.json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={"unetkit.json": json.dumps(meta or {})})
    return path


def verify(model: torch.nn.Module, path: str | Path, fmt: Format,
           sizes: Sequence[Sequence[int]], in_channels: int, seed: int = 0,
           name: str | Path | None = None) -> dict[tuple[int, ...], float]:
    """Max abs difference between the exported file and ``model`` on random ``(2, C, *size)``
    (``name``: the file's name in messages, default ``path``)."""
    if fmt == "onnx":
        exported = onnx_network(path)
    else:
        exported = torch.jit.load(str(path), map_location="cpu")
    try:
        return output_differences(model, exported, sizes, in_channels, seed)
    except ValueError as error:
        raise ExportError(f"{name or path}: {error} (nothing written)") from None


def export_checkpoint(
    checkpoint_path: str | Path,
    out: str | Path | None = None,
    fmt: Format = "onnx",
    *,
    tolerance: float = 1e-4,
    sizes: Sequence[Sequence[int]] | None = None,
    dynamo: bool = False,
    force: bool = False,
) -> ExportResult:
    """Export a checkpoint's network (BatchNorm folded, deep supervision off) and verify it.

    ``out`` is checked before any work (``unetkit.runtime.outputs``: never the checkpoint, an
    existing file only with ``force``, a writable folder); the file is written under a
    temporary name, verified there, and renamed to ``out`` only when it passes: a rejected
    export leaves nothing behind.

    Args:
        checkpoint_path: checkpoint file or run folder.
        out: output file (default: next to the checkpoint, ``.onnx`` or ``.ts``).
        fmt: ``"onnx"`` or ``"torchscript"``.
        tolerance: largest accepted max abs difference to PyTorch.
        sizes: spatial sizes to verify on (default: two accepted sizes of the model).
        dynamo: ONNX only, use the ``torch.export``-based exporter.
        force: replace an existing file at ``out`` (never the checkpoint itself).

    Raises:
        ValueError: an unknown format or a tolerance that is not a positive number.
        ExportError: the exported model differs from PyTorch by more than ``tolerance``.
        OutputError: ``out`` is the checkpoint, exists (without ``force``) or cannot be
            written (nothing written).
        WriteError: the file could not be written (disk full); nothing left behind.
        ImportError: ONNX without the packages of ``unetkit[onnx]`` (the message says so).
    """
    if fmt not in ("onnx", "torchscript"):
        raise ValueError(f"format must be 'onnx' or 'torchscript', got {fmt!r}")
    if not (np.isfinite(tolerance) and tolerance > 0):  # else every comparison is meaningless
        raise ValueError(f"tolerance {tolerance:g}: expected a positive number (the largest "
                         "accepted max abs difference to PyTorch)")
    source = resolve_checkpoint_path(checkpoint_path)
    out = Path(out) if out else source.with_suffix(".onnx" if fmt == "onnx" else ".ts")
    check_file(out, "--out", reads=[source], force=force)
    if fmt == "onnx":  # before any work: writing and verifying need all of them
        require_onnx_export(dynamo, runtime=True)
    checkpoint = load_checkpoint(checkpoint_path)
    config = config_from_dict(checkpoint["config"], source=str(checkpoint_path))
    model = model_from_checkpoint(checkpoint, str(checkpoint_path))
    if hasattr(model, "deep_supervision"):
        model.deep_supervision = False
    fused = fuse_conv_bn(model)
    sizes = [tuple(s) for s in sizes] if sizes else check_sizes(model, config.model.spatial_dims)
    example = torch.randn(1, config.model.in_channels, *sizes[0])
    meta = metadata(checkpoint)
    with atomic_path(out) as tmp:  # verified under its temporary name, then renamed
        if fmt == "onnx":
            export_onnx(fused, tmp, example, meta=meta, dynamo=dynamo)
        else:
            export_torchscript(fused, tmp, example, meta=meta)
        diffs = verify(model, tmp, fmt, sizes, config.model.in_channels, name=out)
        result = ExportResult(out, fmt, diffs)
        if not np.isfinite(result.worst) or result.worst > tolerance:
            raise ExportError(f"{out}: max abs difference to PyTorch {result.worst:.3g} exceeds "
                              f"{tolerance:g} on sizes {list(diffs)} (nothing written)")
    log.info("exported %s (max abs diff %.3g)", out, result.worst)
    return result
