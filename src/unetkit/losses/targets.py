"""Target handling shared by every loss: label maps or one-hot targets -> one-hot plus valid mask.

Targets come in three forms (``C`` is the number of logit channels):

* integer label maps ``(B, *spatial)`` or ``(B, 1, *spatial)``;
* one-hot or soft targets ``(B, C, *spatial)`` (float), for ``C > 1``;
* for binary models (``C == 1``), ``(B, 1, *spatial)`` or ``(B, *spatial)`` with values in
  ``[0, 1]`` (float soft targets are used as they are).

``ignore_index`` applies to label values: those pixels get weight 0 in every loss. One-hot targets
with ``C > 1`` have no ignore label (there is no channel for it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class Target:
    """A target normalised for the losses.

    Attributes:
        onehot: ``(B, C, *spatial)`` float32 one-hot or soft target (0 at ignored pixels).
        valid: ``(B, 1, *spatial)`` float32, 1 where the pixel counts, or None if all count.
        labels: ``(B, *spatial)`` int64 label map (ignored pixels keep ``ignore_index``), or None
            when the target was given as one-hot/soft probabilities.
    """

    onehot: Tensor
    valid: Tensor | None
    labels: Tensor | None


def label_map(target: Tensor, logits: Tensor) -> Tensor | None:
    """Return ``target`` as a ``(B, *spatial)`` label map if it is one, else None."""
    if target.ndim == logits.ndim - 1:
        return target
    if target.ndim == logits.ndim and target.shape[1] == 1:
        return target[:, 0]
    return None


_CHECKING = [True]


@contextmanager
def unchecked_labels() -> Iterator[None]:
    """Inside, label maps are not checked against the logits' classes.

    The check reads the labels' range back to the host: on a GPU that waits for every queued
    kernel, and a CUDA graph cannot hold it. The training step uses this once the data were
    checked when loaded (every mask value maps to a label) and its first batch passed the check.
    """
    _CHECKING[0] = False
    try:
        yield
    finally:
        _CHECKING[0] = True


def check_labels(labels: Tensor, num_channels: int, ignore_index: int | None) -> None:
    """Raise ``ValueError`` unless every label lies in ``[0, max(C, 2))`` or is ignored."""
    if not _CHECKING[0]:
        return
    num_classes = max(num_channels, 2)
    values = labels if ignore_index is None else torch.where(labels == ignore_index, 0, labels)
    if not values.numel():
        return
    low, high = (int(v) for v in torch.stack(torch.aminmax(values)).tolist())  # one host sync
    if low >= 0 and high < num_classes:
        return
    checked = labels if ignore_index is None else labels[labels != ignore_index]
    raise ValueError(
        f"target labels must lie in [0, {num_classes - 1}] for {num_channels} logit channel(s)"
        f"{'' if ignore_index is None else f' (or equal ignore_index={ignore_index})'}; "
        f"got values in [{int(checked.min())}, {int(checked.max())}]"
    )


def check_target_shape(logits: Tensor, target: Tensor) -> Tensor | None:
    """Raise ``ValueError`` unless ``target`` fits ``logits`` (``(B, *S)``, ``(B, 1, *S)`` or
    ``(B, C, *S)``); return it as a label map ``(B, *S)``, or None for a one-hot target."""
    if target.shape[0] != logits.shape[0] or target.shape[-(logits.ndim - 2) :] != logits.shape[2:]:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}: "
            "expected (B, *spatial), (B, 1, *spatial) or (B, C, *spatial)"
        )
    labels = label_map(target, logits)
    if labels is None and (target.ndim != logits.ndim or target.shape[1] != logits.shape[1]):
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}"
        )
    return labels


def prepare_target(logits: Tensor, target: Tensor, ignore_index: int | None = None) -> Target:
    """Bring ``target`` into one-hot form matching ``logits``.

    Args:
        logits: ``(B, C, *spatial)`` raw network outputs.
        target: label map ``(B, *spatial)`` / ``(B, 1, *spatial)`` or one-hot ``(B, C, *spatial)``.
        ignore_index: label value whose pixels are excluded, or None.

    Returns:
        A ``Target`` with one-hot ``(B, C, *spatial)`` and an optional ``(B, 1, *spatial)`` mask.

    Raises:
        ValueError: if batch or spatial sizes differ, or labels are out of range.
    """
    num_channels = logits.shape[1]
    labels = check_target_shape(logits, target)
    if num_channels == 1:
        return _binary_target(labels, ignore_index)
    if labels is None:
        return Target(onehot=target.float(), valid=None, labels=None)
    labels = labels.long()
    check_labels(labels, num_channels, ignore_index)
    valid = None
    clean = labels
    if ignore_index is not None:
        keep = labels != ignore_index
        clean = torch.where(keep, labels, torch.zeros_like(labels))
        valid = keep.unsqueeze(1).float()
    onehot = F.one_hot(clean, num_channels).movedim(-1, 1).float()
    if valid is not None:
        onehot = onehot * valid
    return Target(onehot=onehot, valid=valid, labels=labels)


def _binary_target(labels: Tensor, ignore_index: int | None) -> Target:
    """Binary (one channel) target: hard labels {0, 1} or soft values in [0, 1]."""
    soft = labels.is_floating_point()
    valid = None
    values = labels
    if ignore_index is not None:
        keep = labels != ignore_index
        values = torch.where(keep, labels, torch.zeros_like(labels))
        valid = keep.unsqueeze(1).float()
    if soft:
        if values.numel() and (values.min() < 0 or values.max() > 1):
            raise ValueError("binary float targets must lie in [0, 1]")
    else:
        check_labels(labels, 1, ignore_index)
    onehot = values.float().unsqueeze(1)
    return Target(onehot=onehot, valid=valid, labels=None if soft else labels.long())


def probabilities(logits: Tensor) -> Tensor:
    """Sigmoid for one channel, softmax over channels otherwise; computed in float32.

    Args:
        logits: ``(B, C, *spatial)``.

    Returns:
        ``(B, C, *spatial)`` float32 probabilities.
    """
    logits = logits.float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
