"""A checkpoint's network as an ONNX file for onnxruntime: exported once, verified, cached.

``infer.engine: onnxruntime`` (or ``auto`` where onnxruntime is the faster engine) needs an ONNX
file of the checkpoint's network. ``cached_onnx`` writes it into ``~/.cache/unetkit/onnx/``
(``$XDG_CACHE_HOME/unetkit/onnx/`` when that is set) under the SHA-256 of the checkpoint file's
bytes, so a retrained (rewritten) checkpoint never
reuses a stale export, and a run folder, a copy or a renamed file share one. The export is
checked against PyTorch first (the unfused model, fp32, random inputs of two accepted sizes)
and moved into place only when it agrees within ``tolerance``: a cached file is a verified file.
The cache holds no metadata; the checkpoint is read for that as before.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch

from unetkit.runtime.checkpoint import resolve_checkpoint_path
from unetkit.runtime.network import fuse_conv_bn, output_differences
from unetkit.runtime.onnx import onnx_network
from unetkit.runtime.onnx_export import check_sizes, export_onnx, require_onnx_export

log = logging.getLogger(__name__)

#: bump when the exported graph changes, so that older cached files are not used
CACHE_VERSION = 1
TOLERANCE = 1e-4


class ExportMismatch(RuntimeError):
    """The ONNX export differs from PyTorch by more than the tolerance."""


def cache_dir() -> Path:
    """Where verified exports live: ``$XDG_CACHE_HOME/unetkit/onnx`` (``~/.cache/unetkit/onnx``
    when ``XDG_CACHE_HOME`` is not set)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "unetkit" / "onnx"


def file_digest(path: str | Path) -> str:
    """SHA-256 of the file's bytes (hex, 64 characters)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_path(checkpoint: str | Path, directory: Path | None = None) -> Path:
    """The cached ONNX file of ``checkpoint`` (a file or run folder), existing or not."""
    digest = file_digest(resolve_checkpoint_path(checkpoint))
    return (directory or cache_dir()) / f"{digest[:32]}.v{CACHE_VERSION}.onnx"


def max_difference(model: torch.nn.Module, path: Path, sizes: list[tuple[int, ...]],
                   in_channels: int, seed: int = 0) -> float:
    """Largest absolute difference between onnxruntime on ``path`` and ``model`` (fp32) on
    random inputs ``(2, in_channels, *size)``; infinite when an output shape differs."""
    try:
        diffs = output_differences(model, onnx_network(path), sizes, in_channels, seed)
    except ValueError:
        return float("inf")
    return max(diffs.values(), default=0.0)


def cached_onnx(checkpoint: str | Path, model: torch.nn.Module, *, spatial_dims: int,
                in_channels: int, tolerance: float = TOLERANCE,
                directory: Path | None = None) -> Path:
    """The verified ONNX file of ``checkpoint``'s network, exporting it on first use.

    Args:
        checkpoint: the checkpoint file (or run folder) ``model`` was loaded from.
        model: its network (unfused; eval mode, deep supervision off).
        spatial_dims: 2 or 3.
        in_channels: input channels of the network.
        tolerance: largest accepted absolute difference to PyTorch.
        directory: the cache folder (default ``cache_dir()``).

    Raises:
        ImportError: onnx or onnxruntime is missing.
        ExportMismatch: the export differs from PyTorch by more than ``tolerance``.
        OSError: the cache folder cannot be written.
    """
    target = cache_path(checkpoint, directory)
    if target.is_file():
        log.debug("onnx cache: %s", target)
        return target
    require_onnx_export(runtime=True)
    model = model.eval()
    if hasattr(model, "deep_supervision"):
        model.deep_supervision = False
    sizes = check_sizes(model, spatial_dims)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        export_onnx(fuse_conv_bn(model), partial, torch.randn(1, in_channels, *sizes[0]))
        worst = max_difference(model, partial, sizes, in_channels)
        if not worst <= tolerance:
            raise ExportMismatch(f"the ONNX export of {checkpoint} differs from PyTorch by "
                                 f"{worst:.3g} (> {tolerance:g}) on sizes {sizes}")
        os.replace(partial, target)  # atomic: a reader sees no file or a verified one
    finally:
        partial.unlink(missing_ok=True)
    log.info("onnx cache: exported %s to %s (max abs difference %.3g)", checkpoint, target, worst)
    return target
