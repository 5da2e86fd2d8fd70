"""Build a ``Predictor`` from a checkpoint or an exported ONNX file."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetkit.config import InferConfig, config_from_dict
from unetkit.data.preprocessing import Preprocessor
from unetkit.infer.settings import configure
from unetkit.runtime.checkpoint import load_checkpoint, model_from_checkpoint
from unetkit.runtime.device import pick_device, resolve_precision
from unetkit.runtime.engine import FP32, engine_network

if TYPE_CHECKING:
    from unetkit.infer.predictor import Predictor

log = logging.getLogger("unetkit.infer.predictor")


def load_predictor(cls: type[Predictor], path: str | Path, *, infer: InferConfig | None = None,
                   settings: dict[str, Any] | None = None, overrides: Sequence[str] = (),
                   device: str = "auto", onnx: str | Path | None = None) -> Predictor:
    """Load a checkpoint (file or run folder) and build its network on ``device``.

    Args:
        cls: the predictor class.
        path: a checkpoint written by training (or a run folder holding ``best.pt``).
        infer: inference settings replacing the checkpoint's ``config.infer``.
        settings: ``{"infer.field": value}`` applied on top (e.g. from CLI options).
        overrides: ``section.field=value`` strings applied last (``--set``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        onnx: run the network from this ONNX file in onnxruntime (else ``infer.engine``
            decides: ``unetkit.runtime.engine``).
    """
    checkpoint = load_checkpoint(path)
    config = configure(config_from_dict(checkpoint["config"], source=str(path)), infer,
                       settings, overrides)
    target = pick_device(device)
    plan = resolve_precision(config.infer.precision, config.infer.channels_last, target,
                             config.model.norm)
    if onnx is not None:
        from unetkit.runtime.onnx import check_weights, onnx_network

        check_weights(None, onnx)
        network, plan, target, engine = (onnx_network(onnx), FP32, pick_device("cpu"),
                                         "onnxruntime")
    else:
        network, plan, engine = engine_network(
            path, model_from_checkpoint(checkpoint, str(path)), requested=config.infer.engine,
            plan=plan, device=target)
    log.info("predictor: %s, %s, precision %s, channels_last %s", config.model.name, engine,
             plan.name, plan.channels_last)
    return cls(network, config=config, labels=checkpoint["labels"],
               preprocessor=Preprocessor.from_config(config.data, checkpoint["preprocessing"]),
               mask_values=checkpoint.get("mask_values"),
               mask_format=checkpoint.get("mask_format"), plan=plan,
               calibration=checkpoint.get("calibration"), device=target, engine=engine)


def load_onnx_predictor(cls: type[Predictor], path: str | Path, *,
                        infer: InferConfig | None = None, settings: dict[str, Any] | None = None,
                        overrides: Sequence[str] = ()) -> Predictor:
    """Load an ONNX file written by ``unetkit export`` (its metadata holds the rest)."""
    from unetkit.runtime.onnx import onnx_network, read_metadata

    meta = read_metadata(path)
    config = configure(config_from_dict(meta["config"], source=str(path)), infer, settings,
                       overrides)
    return cls(onnx_network(path), config=config, labels=meta["labels"],
               preprocessor=Preprocessor.from_config(config.data, meta["preprocessing"]),
               mask_values=meta.get("mask_values"), mask_format=meta.get("mask_format"),
               plan=FP32, calibration=meta.get("calibration"), engine="onnxruntime")
