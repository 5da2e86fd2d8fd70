"""From network outputs to classes: the one activate-and-decide used by validation, calibration
and prediction.

Logits ``(C, *S)`` come in three kinds: ``C == 1`` a sigmoid output (foreground logit),
``C == 2`` a two-class softmax, ``C > 2`` a K-class softmax. ``probabilities`` turns any of them
into ``(K, *S)`` class probabilities (``K = max(C, 2)``). ``decide`` picks classes without
computing probabilities where it need not: softmax and sigmoid are monotonic, so

* ``C == 1``: foreground where the logit exceeds ``logit(threshold)`` (0 without a threshold);
* ``C == 2``: foreground where ``l1 - l0`` exceeds ``logit(threshold)``, since
  ``softmax(l)[1] = sigmoid(l1 - l0)``: one subtraction and one comparison instead of a softmax
  and an arg-max over a channel axis (measured 9% of a 2D and 22% of a 3D prediction);
* ``C > 2``: the arg-max over the logits (ties go to the lower class, as ``torch.argmax``).

Without a threshold a tie goes to the background (as the arg-max); with a threshold ``t``
foreground means ``p >= t``.

Region models (``data.regions``: one sigmoid output per overlapping region, nnU-Net's
region-based training) decide with ``decide_regions``: region ``r`` is on where its probability
exceeds 0.5, i.e. its logit exceeds 0, and ``paint_regions`` turns the region maps into a label
map by painting ``regions_class_order[r]`` in that order; ``region_probabilities`` are the
per-region sigmoids (an average of them, as an ensemble makes, is painted after ``> 0.5``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def logit(threshold: float | None) -> float:
    """The logit-difference level of a probability threshold (0.0 for None)."""
    if threshold is None:
        return 0.0
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    return math.log(threshold / (1.0 - threshold))


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """``(C, *S)`` float logits -> ``(K, *S)`` float32 class probabilities, K = max(C, 2)."""
    logits = logits.float()
    if logits.shape[0] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p])
    return torch.softmax(logits, dim=0)


def foreground_probability(logits: torch.Tensor) -> torch.Tensor:
    """``(C, *S)`` logits of a two-class model (C = 1 or 2) -> ``(*S)`` foreground probability."""
    if logits.shape[0] == 1:
        return torch.sigmoid(logits[0].float())
    if logits.shape[0] == 2:
        return torch.sigmoid((logits[1] - logits[0]).float())
    raise ValueError(f"a foreground probability needs a two-class model; got {logits.shape[0]} "
                     "output channels")


def decide(logits: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
    """``(C, *S)`` logits -> ``(*S)`` class indices (uint8; int64 beyond 256 classes).

    Args:
        logits: raw network outputs (blended, TTA-averaged) of one case.
        threshold: two-class models only: foreground where its probability is ``>= threshold``;
            None: the more probable class.
    """
    channels = logits.shape[0]
    if channels > 2 and threshold is not None:
        raise ValueError(f"a decision threshold needs a two-class model; got {channels} channels")
    if channels <= 2:
        margin = logits[0] if channels == 1 else logits[1] - logits[0]
        level = logit(threshold)
        chosen = margin >= level if threshold is not None else margin > level
        return chosen.view(torch.uint8)  # the bool map's bytes: no copy
    return logits.argmax(0).to(torch.uint8 if channels <= 256 else torch.int64)


def region_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """``(R, *S)`` region logits -> ``(R, *S)`` float32 sigmoid probabilities, one independent
    map per region (they overlap: they do not sum to 1)."""
    return torch.sigmoid(logits.float())


def paint_regions(on: torch.Tensor, order: Sequence[int]) -> torch.Tensor:
    """``(R, *S)`` bool region maps -> ``(*S)`` label map: background 0, then ``order[r]``
    painted where region ``r`` is on, for ``r = 0, 1, ...`` (a later region overwrites an
    earlier one: nested regions go outermost first). uint8, int64 for labels beyond 255."""
    if on.shape[0] != len(order):
        raise ValueError(f"{on.shape[0]} region maps for a regions_class_order of "
                         f"{len(order)} labels")
    wide = max(order, default=0) >= 256
    classes = torch.zeros(on.shape[1:], dtype=torch.int64 if wide else torch.uint8,
                          device=on.device)
    for region, label in enumerate(order):
        classes.masked_fill_(on[region], int(label))
    return classes


def decide_regions(logits: torch.Tensor, order: Sequence[int]) -> torch.Tensor:
    """``(R, *S)`` region logits -> ``(*S)`` label map: ``sigmoid(l) > 0.5`` (``l > 0``) per
    region, painted in ``order`` (``paint_regions``)."""
    return paint_regions(logits > 0, order)
