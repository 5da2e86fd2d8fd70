"""Run an exported ONNX network in onnxruntime behind the same callable interface as PyTorch.

``unetkit.export`` stores the checkpoint's metadata (config, labels, mask values, normalisation)
in the ONNX file's ``metadata_props`` under the key ``unetkit``, so an ONNX file alone is enough
for ``Predictor.from_onnx``: windowing, TTA and post-processing stay the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit.runtime.network import Network

METADATA_KEY = "unetkit"


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError("ONNX inference needs onnxruntime: pip install 'unetkit[onnx]'") \
            from error
    return onnxruntime


def onnx_session(path: str | Path) -> Any:
    """An onnxruntime CPU session for ``path`` using torch's thread count.

    Raises:
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    ort = _import_ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        raise ValueError(f"{path}: not a readable ONNX model ({type(error).__name__}: "
                         f"{str(error).strip()[:200]})") from None


def onnx_network(path: str | Path) -> Network:
    """The ONNX model at ``path`` as ``(n, C_in, *S) -> (n, C_out, *S')`` float32 tensors."""
    session = onnx_session(path)
    input_name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(session.run(None, {input_name: array})[0])

    return run


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``unetkit`` metadata written by ``unetkit.export.export_onnx``.

    Raises:
        ValueError: the file has no unetkit metadata (not exported by unetkit), was written by
            a newer unetkit, or holds weights with NaN/inf (the message names the tensor).
    """
    try:
        import onnx
    except ImportError as error:
        raise ImportError("reading ONNX files needs onnx: pip install 'unetkit[onnx]'") \
            from error
    from unetkit.runtime.checkpoint import upgrade

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf and onnx raise several types for corrupt files
        raise ValueError(f"{path}: not a readable ONNX model ({type(error).__name__})") \
            from None
    check_weights(model, path)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            data = json.loads(prop.value)
            data["labels"] = {int(k): v for k, v in data.get("labels", {}).items()}
            data["mask_values"] = {int(k): int(v)
                                   for k, v in (data.get("mask_values") or {}).items()}
            return upgrade(data, str(path))
    raise ValueError(f"{path}: no unetkit metadata; export it with `unetkit export`, or pass "
                     "the checkpoint together with --onnx")


def check_weights(model: Any, path: str | Path) -> None:
    """Refuse an ONNX model (a ``ModelProto``, or the path to load one from) whose weights hold
    NaN or infinity, naming the first such initializer: it would predict garbage.

    Raises:
        ValueError: a non-finite weight, or an unreadable file; the message names ``path``.
    """
    import onnx
    import onnx.numpy_helper

    from unetkit.runtime.model_checks import first_non_finite

    if model is None:
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as error:  # protobuf and onnx raise several types for corrupt files
            raise ValueError(f"{path}: not a readable ONNX model ({type(error).__name__})") \
                from None
    problem = first_non_finite((init.name, onnx.numpy_helper.to_array(init))
                               for init in model.graph.initializer
                               if init.data_location != onnx.TensorProto.EXTERNAL)
    if problem:
        raise ValueError(f"{path}: {problem}; refused")
