"""Ensembles: several trained models predict as one, their class probabilities averaged.

``EnsemblePredictor`` is a ``Predictor`` whose network is an ``EnsembleNetwork``: on every
window (the whole image when it fits ``infer.memory_budget_mb``, else the planned tiles) it runs
the members one after another, each with its own test-time augmentation (its
``infer.tta_axes``), turns each member's logits into class probabilities (softmax; sigmoid for
one output) and returns the log of their mean; region models (``data.regions``) average each
region's sigmoid and return the logit of the mean, so a region is on where its mean probability
exceeds 0.5. Log probabilities are logits to every later
stage: ``softmax(log p) = p``, and for two classes ``l1 - l0 = logit(p1)``, so the threshold
compares the mean probability. Tiles blend them as a single model's logits, each tile is
visited once, and only one member's forward and the running mean of one window are held at a
time, so memory does not grow with the number of members.

Members must agree on what they predict and on the grid they predict on (``check_members``: one
line naming both files and the field): labels and stored mask values, image channels, spatial
dims, slice handling (2D slices of volumes and their context), target spacing and padding. They
may differ in architecture, precision, engine and intensity normalisation: members whose
preprocessing differs (statistics fitted on other training cases, as the folds of a
cross-validation fit CT or dataset z-score statistics) each get their own normalised copy of the
input, stacked as channels (one input map more per distinct preprocessing).

Decision settings: a two-class ensemble's threshold is the mean of its members' thresholds
(calibrated or set; 0.5 for a member without one; none when no member has one); the largest
component is kept only when every member keeps it (the folds of a cross-validation all hold the
choice made on the pooled out-of-fold predictions). The other inference settings are the first
member's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit.config import Config
from unetkit.data.preprocessing import PreprocessRecord
from unetkit.infer import decision
from unetkit.infer.predictor import Predictor
from unetkit.infer.settings import check_settings
from unetkit.infer.strategy import Strategy
from unetkit.nn.sizes import model_multiples
from unetkit.runtime.network import Network

CV_SUMMARY = "cross_validation.json"  # a finished cross-validation (unetkit.train.cross_validation)
CV_STATE = "cv_state.json"  # a cross-validation folder, finished or not
TINY = torch.finfo(torch.float32).tiny  # log(0) would make -inf - -inf = nan in l1 - l0
EPS = torch.finfo(torch.float32).eps  # logit(1) would be inf


class EnsembleError(ValueError):
    """Models that cannot predict as one ensemble (the message names both and the field)."""


def fold_dir(run: str | Path, fold: int) -> Path:
    """The run folder of fold ``fold`` inside a cross-validation folder."""
    return Path(run) / f"fold_{fold}"


def cross_validation_members(path: str | Path) -> list[Path] | None:
    """``fold_k/best.pt`` of every fold of a cross-validation folder; None for anything else.

    Raises:
        EnsembleError: the cross-validation has not finished (names the folder).
    """
    path = Path(path)
    if not path.is_dir() or not (path / CV_STATE).is_file():
        return None
    try:
        folds = int(json.loads((path / CV_SUMMARY).read_text())["folds"])
    except (OSError, ValueError, KeyError, TypeError):
        raise EnsembleError(f"{path}: the cross-validation has not finished (no readable "
                            f"{CV_SUMMARY}); continue it with unetkit train --resume {path}"
                            ) from None
    paths = [fold_dir(path, k) / "best.pt" for k in range(folds)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise EnsembleError(f"{path}: {missing[0]} is missing")
    return paths


def member_facts(predictor: Predictor) -> dict[str, Any]:
    """What members of one ensemble must share: ``{field as the error names it: value}``."""
    config = predictor.config
    data, model = config.data, config.model
    facts = {
        "labels": predictor.labels,
        "stored mask values": {k: v for k, v in predictor.mask_values.items() if k != v},
        "image channels": config.image_channels,
        "spatial dims (model.spatial_dims)": model.spatial_dims,
        "slice handling (data.slice_axis, data.slice_context)":
            None if data.slice_axis is None else (data.slice_axis, data.slice_context),
        "spacing (data.target_spacing)": data.target_spacing,
        "padding (model.padding)": model.padding,
        "regions (data.regions, data.regions_class_order)":
            None if not data.regions else ([r.model_dump() for r in data.regions],
                                           list(data.regions_class_order or [])),
    }
    if model.padding == "valid":  # overlap-tile margins follow the depth
        facts["depth of 'valid' networks (model.depth)"] = model.depth
    return facts


def check_members(members: Sequence[Predictor], names: Sequence[str]) -> None:
    """Refuse members that disagree with the first on labels, channels or grid.

    Raises:
        EnsembleError: one line naming the two models, the field and both values.
    """
    reference = member_facts(members[0])
    for member, name in zip(members[1:], names[1:], strict=True):
        for field, value in member_facts(member).items():
            if value != reference[field]:
                raise EnsembleError(f"ensemble: {names[0]} and {name} disagree on {field}: "
                                    f"{reference[field]} against {value}")


def preprocessing_key(predictor: Predictor) -> str:
    """Members with equal keys turn an image into the same network input."""
    pre = predictor.preprocessor
    return json.dumps([pre.state_dict(), pre.image_offset, pre.clahe_clip], sort_keys=True,
                      default=str)


class EnsembleNetwork:
    """``(n, G * C_in, *S)`` -> ``(n, K, *S)`` log mean probability of the members, run one
    after another on the same window (``G``: distinct preprocessings; each member reads its
    group's channels)."""

    def __init__(self, networks: Sequence[Network], channels: Sequence[torch.Tensor | None],
                 regions: bool = False) -> None:
        self.networks, self.channels, self.regions = list(networks), list(channels), regions

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        total, count = None, len(self.networks)
        for network, index in zip(self.networks, self.channels, strict=True):
            view = x if index is None else x.index_select(1, index.to(x.device))
            logits = network(view)
            p = torch.sigmoid(logits.float()) if self.regions else \
                decision.probabilities(logits.movedim(1, 0)).movedim(0, 1)
            total = p if total is None else total.add_(p)
            del p, logits
        assert total is not None
        mean = total.div_(count)
        if self.regions:  # logit(mean): positive exactly where the mean probability > 0.5
            return mean.clamp_(TINY, 1 - EPS).logit_()
        return mean.clamp_min_(TINY).log_()


class EnsembleStrategy(Strategy):
    """The window strategy of all members: sizes every member accepts, the widest member's
    forward plus the running mean of one window, and the stacked input's channels."""

    def __init__(self, config: Config, members: Sequence[Predictor], groups: int,
                 out_channels: int) -> None:
        super().__init__(config, members[0].plan, out_channels)
        self.in_channels = groups * config.model.in_channels
        self.multiples = tuple(math.lcm(*axis) for axis in zip(
            *(model_multiples(m.config.model) for m in members), strict=True))
        widest = max(m.strategy().bytes_per_voxel() for m in members)
        channels = max(m.strategy().out_channels for m in members)
        self.forward_bytes = widest + 4 * (2 * out_channels + channels)

    def bytes_per_voxel(self) -> int:
        """Forward bytes per window voxel (one member at a time)."""
        return self.forward_bytes


def member_channels(group: int, groups: int, channels: int, slices: int) -> torch.Tensor | None:
    """Input channels of preprocessing group ``group`` in the stacked input (None: all).

    Groups are stacked channel-first, ``groups * channels``; 2.5D slice context then repeats
    that block once per slice (``with_slice_context``: channel ``j * block + c``).
    """
    if groups == 1:
        return None
    block = groups * channels
    return torch.tensor([j * block + group * channels + c for j in range(slices)
                         for c in range(channels)])


def ensemble_config(members: Sequence[Predictor]) -> Config:
    """The first member's config with the ensemble's threshold and largest-component rule."""
    first = members[0].config
    thresholds = [m.infer.threshold for m in members]
    threshold = None if all(t is None for t in thresholds) else float(np.mean(
        [0.5 if t is None else float(t) for t in thresholds]))
    keep = all(m.infer.postprocess.keep_largest is True for m in members)
    post = first.infer.postprocess.model_copy(update={"keep_largest": keep})
    infer = first.infer.model_copy(update={"threshold": threshold, "postprocess": post})
    return first.model_copy(update={"infer": infer})


class EnsemblePredictor(Predictor):
    """Predicts with the mean class probability of several models (``unetkit.infer.ensemble``)."""

    def __init__(self, members: Sequence[Predictor], names: Sequence[str]) -> None:
        """Members loaded with the same settings and device; ``names`` for messages."""
        if len(members) < 2:
            raise EnsembleError("an ensemble needs at least two models")
        check_members(members, names)
        self.members, self.names = list(members), [str(n) for n in names]
        keys = [preprocessing_key(m) for m in members]
        distinct = list(dict.fromkeys(keys))
        self.group_members = [members[keys.index(k)] for k in distinct]
        self.member_groups = [distinct.index(k) for k in keys]
        first = members[0]
        super().__init__(self._network(), config=ensemble_config(members), labels=first.labels,
                         preprocessor=first.preprocessor, mask_values=first.mask_values,
                         mask_format=first.mask_format, plan=first.plan, device=first.device,
                         engine=", ".join(sorted({m.engine for m in members})))

    def _network(self) -> EnsembleNetwork:
        config, groups = self.members[0].config, len(self.group_members)
        channels = [member_channels(g, groups, config.image_channels,
                                    config.data.slices_per_input) for g in self.member_groups]
        return EnsembleNetwork([m.tta_network() for m in self.members], channels,
                               regions=bool(config.data.regions))

    def update(self, settings: dict[str, Any]) -> None:
        """Change ``{"infer.field": value}`` settings of every member (and so the ensemble's)."""
        for member in self.members:
            member.update(settings)
        self.network, self.config = self._network(), ensemble_config(self.members)
        check_settings(self.config, self.labels)

    def preprocess(self, image: np.ndarray, source: str = "array",
                   spacing: Sequence[float] | None = None
                   ) -> tuple[torch.Tensor, PreprocessRecord]:
        """Raw ``(C, *spatial)`` -> ``(G * C, *grid)``: each distinct preprocessing's input."""
        parts = [m.preprocess(image, source, spacing) for m in self.group_members]
        return torch.cat([x for x, _ in parts]), parts[0][1]

    def tta_network(self) -> Network:
        """The ensemble network: every member already runs its own TTA."""
        return self.network

    def strategy(self) -> Strategy:
        """Windows every member accepts, within the memory budget (``EnsembleStrategy``)."""
        return EnsembleStrategy(self.config, self.members, len(self.group_members),
                                self._out_channels())

    def _out_channels(self) -> int:  # one map per region, else one per class (2 at least)
        regions = self.members[0].config.data.regions
        return len(regions) if regions else max(len(self.labels), 2)


def load_member(path: str | Path, *, settings: dict[str, Any] | None = None,
                overrides: Sequence[str] = (), device: str = "auto",
                onnx: str | Path | None = None) -> Predictor:
    """One model as ``unetkit predict`` loads it: an ``.onnx`` export, else a checkpoint or
    run folder (``onnx``: its network from that file)."""
    if Path(path).suffix.lower() == ".onnx":
        return Predictor.from_onnx(path, settings=settings, overrides=overrides)
    return Predictor.from_checkpoint(path, settings=settings, overrides=overrides,
                                     device=device, onnx=onnx)


def load_models(model: str | Path, more: Sequence[str | Path] = (), *,
                settings: dict[str, Any] | None = None, overrides: Sequence[str] = (),
                device: str = "auto", onnx: str | Path | None = None) -> Predictor:
    """What ``unetkit predict`` runs: one model, or the ensemble of a cross-validation folder's
    folds and of further models ``more`` (each a model or a cross-validation folder).

    Raises:
        EnsembleError: an unfinished cross-validation, ``onnx`` with several models, or models
            that disagree (``check_members``).
    """
    paths: list[Path] = []
    for item in [model, *more]:
        paths += cross_validation_members(item) or [Path(item)]
    if len(paths) == 1:
        return load_member(paths[0], settings=settings, overrides=overrides, device=device,
                           onnx=onnx)
    if onnx is not None:
        raise EnsembleError("--onnx runs one network file; an ensemble's members run in "
                            "onnxruntime with --set infer.engine=onnxruntime")
    members = [load_member(p, settings=settings, overrides=overrides, device=device)
               for p in paths]
    return EnsemblePredictor(members, [str(p) for p in paths])
