"""Write a PyTorch network as ONNX with dynamic batch and spatial axes (``unetkit.export`` and
the cached export of ``infer.engine: onnxruntime`` both use it).

The TorchScript-based exporter handles the dynamic axes of every model here in about a second;
``dynamo=True`` selects the ``torch.export`` exporter instead.
"""

from __future__ import annotations

import importlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from unetkit.nn.sizes import axis_multiples
from unetkit.runtime.onnx import METADATA_KEY


def require_onnx_export(dynamo: bool = False, runtime: bool = False) -> Any:
    """The ``onnx`` module (checking ``onnxscript`` with ``dynamo``, ``onnxruntime`` with
    ``runtime``), or an ImportError that names the extra to install."""
    names = ["onnx"] + ["onnxscript"] * dynamo + ["onnxruntime"] * runtime
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as error:
            raise ImportError(f"ONNX export needs the {name} package: pip install "
                              f"'unetkit[onnx]'") from error
    return modules[0]


def spatial_names(spatial_dims: int) -> list[str]:
    """Names of the dynamic spatial axes: ``height, width`` or ``depth, height, width``."""
    return ["depth", "height", "width"][3 - spatial_dims:]


def export_onnx(model: torch.nn.Module, path: str | Path, example: torch.Tensor, *,
                meta: dict[str, Any] | None = None, opset: int = 17,
                dynamo: bool = False) -> Path:
    """Write ``model`` as ONNX with dynamic batch and spatial axes; ``meta`` as metadata JSON.

    Args:
        model: the network (eval mode; deep supervision off).
        path: the file to write (its folder is created).
        example: an input ``(1, C_in, *S)`` of an accepted size, traced once.
        meta: stored as JSON under the metadata key ``unetkit`` (``runtime.onnx.read_metadata``).
        opset: ONNX opset (at least 18 with ``dynamo``).
        dynamo: use the ``torch.export``-based exporter.

    Raises:
        ImportError: onnx (or, with ``dynamo``, onnxscript) is missing; the message names the
            extra to install.
    """
    onnx = require_onnx_export(dynamo)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spatial = spatial_names(example.dim() - 2)
    axes = {0: "batch", **{i + 2: name for i, name in enumerate(spatial)}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            dims = {0: torch.export.Dim("batch"),
                    **{i + 2: torch.export.Dim.AUTO for i in range(len(spatial))}}
            torch.onnx.export(model, (example,), str(path), input_names=["image"],
                              output_names=["logits"], dynamo=True, opset_version=max(opset, 18),
                              dynamic_shapes={"x": dims})
        else:
            torch.onnx.export(model, (example,), str(path), input_names=["image"],
                              output_names=["logits"], dynamo=False, opset_version=opset,
                              dynamic_axes={"image": axes, "logits": axes})
    if meta is not None:
        proto = onnx.load(str(path))
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(meta)
        onnx.save(proto, str(path))
    return path


def check_sizes(model: torch.nn.Module, spatial_dims: int) -> list[tuple[int, ...]]:
    """Two different accepted input sizes (small, to keep the check quick)."""
    multiples = axis_multiples(getattr(model, "depth", 4), getattr(model, "strides", None),
                               spatial_dims)
    first = tuple(2 * m for m in multiples)
    second = tuple(3 * m + (i % 2) * m for i, m in enumerate(multiples))
    if hasattr(model, "nearest_valid_input_size"):
        first = model.nearest_valid_input_size(first)
        second = model.nearest_valid_input_size(tuple(s + 2 for s in first))
    return [tuple(first), tuple(second)]
