"""Fine-tuning, part 2: load the layers of a checkpoint that fit a new network, and say which.

A *layer* is a module with tensors of its own (a convolution with its weight and bias, a norm
with its affine parameters and running statistics). It is loaded when every one of its tensors
exists in the checkpoint with the same shape; otherwise it keeps its fresh initialisation as a
whole (a first convolution for another channel count gets a fresh bias too, not a bias trained
for other inputs). ``load_matching`` copies in place, so an optimizer built on the parameters
and their memory format stay valid. The ``InitReport`` lists every layer: what the CLI prints
as a table, ``RUN/init.json`` holds and ``fit`` logs in one line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


@dataclass
class LayerRow:
    """One layer: ``status`` is ``loaded``, ``fresh`` (not loaded: ``reason``) or ``unused``
    (in the checkpoint only); ``shape``: its weight's (or first tensor's) shape here,
    ``checkpoint_shape`` there; ``parameters``: its trainable elements here."""

    layer: str
    status: str
    shape: list[int] | None = None
    checkpoint_shape: list[int] | None = None
    parameters: int = 0
    reason: str = ""


@dataclass
class InitReport:
    """What ``load_matching`` did; ``normalization``: what became of the input normalisation."""

    checkpoint: str
    layers: list[LayerRow] = field(default_factory=list)
    normalization: str = ""

    def names(self, status: str) -> list[str]:
        """The layers with ``status`` (``loaded``, ``fresh``, ``unused``)."""
        return [row.layer for row in self.layers if row.status == status]

    def parameter_counts(self) -> tuple[int, int]:
        """``(parameters loaded, parameters of the network)``."""
        here = [row for row in self.layers if row.status != "unused"]
        return (sum(r.parameters for r in here if r.status == "loaded"),
                sum(r.parameters for r in here))

    def summary(self) -> str:
        """One line: how much was loaded, and which layers start fresh."""
        loaded, total = self.parameter_counts()
        fresh = [f"{r.layer} ({r.reason})" for r in self.layers if r.status == "fresh"]
        text = (f"init from {self.checkpoint}: {len(self.names('loaded'))} of "
                f"{len(self.layers) - len(self.names('unused'))} layers loaded ({loaded:,} of "
                f"{total:,} parameters)")
        text += "; fresh: " + "; ".join(fresh) if fresh else "; every layer loaded"
        unused = self.names("unused")
        return text + (f"; not used from the checkpoint: {', '.join(unused)}" if unused else "")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (``init.json``): every layer, and the lists of loaded / fresh / unused."""
        loaded, total = self.parameter_counts()
        return {"checkpoint": self.checkpoint, "normalization": self.normalization,
                "loaded": self.names("loaded"), "fresh": self.names("fresh"),
                "unused": self.names("unused"), "parameters_loaded": loaded,
                "parameters": total, "layers": [asdict(row) for row in self.layers]}

    def write(self, run_dir: Path) -> Path:
        """``RUN/init.json``."""
        path = Path(run_dir) / "init.json"
        path.write_text(json.dumps(self.as_dict(), indent=2))
        return path


def layer_of(key: str) -> str:
    """``encoder.stages.0.conv.weight`` -> ``encoder.stages.0.conv``."""
    return key.rsplit(".", 1)[0] if "." in key else ""


def group_by_layer(state: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """``{layer: {key: tensor}}`` in the state dict's order."""
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        layers.setdefault(layer_of(key), {})[key] = tensor
    return layers


def _shape(tensors: dict[str, torch.Tensor]) -> list[int]:
    """The weight's shape (else the first tensor's) of one layer."""
    name = next((k for k in tensors if k.endswith(".weight")), next(iter(tensors)))
    return list(tensors[name].shape)


def _mismatch(mine: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> str:
    """Why a layer cannot be loaded ('' when it can)."""
    missing = [k.rsplit(".", 1)[-1] for k in mine if k not in theirs]
    if len(missing) == len(mine):
        return "not in the checkpoint"
    if missing:
        return f"the checkpoint lacks its {', '.join(missing)}"
    for key, tensor in mine.items():
        if tuple(theirs[key].shape) != tuple(tensor.shape):
            return (f"{key.rsplit('.', 1)[-1]} {tuple(tensor.shape)} here, "
                    f"{tuple(theirs[key].shape)} in the checkpoint")
    return ""


@torch.no_grad()
def load_matching(model: torch.nn.Module, state: dict[str, torch.Tensor],
                  checkpoint: str = "checkpoint") -> InitReport:
    """Copy every layer of ``state`` whose tensors all fit ``model``'s into ``model``.

    Args:
        model: the new network (any device, dtype and memory format; changed in place).
        state: a checkpoint's ``model_state``.
        checkpoint: how the report names the source.

    Returns:
        The ``InitReport`` listing every layer of the network (loaded or fresh) and of the
        checkpoint (unused when the network has no such layer).
    """
    trainable = {name for name, _ in model.named_parameters()}
    own = group_by_layer(model.state_dict())  # tensors sharing the parameters' storage
    theirs = group_by_layer(state)
    report = InitReport(checkpoint)
    for layer, tensors in own.items():
        reason = _mismatch(tensors, theirs.get(layer, {}))
        count = sum(t.numel() for k, t in tensors.items() if k in trainable)
        other = theirs.get(layer)
        row = LayerRow(layer, "fresh" if reason else "loaded", _shape(tensors),
                       _shape(other) if other else None, count, reason)
        if not reason:
            for key, tensor in tensors.items():
                tensor.copy_(theirs[layer][key])
        report.layers.append(row)
    for layer, tensors in theirs.items():
        if layer not in own:
            report.layers.append(LayerRow(layer, "unused", None, _shape(tensors), 0,
                                          "not in this network"))
    if not report.names("loaded"):
        log.warning("%s: no layer of the checkpoint fits this network; it trains from its "
                    "random initialisation", checkpoint)
    return report
