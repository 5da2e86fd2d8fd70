"""Random patch sampling with foreground oversampling.

A ``PatchSampler`` is an ``IterableDataset`` of ready batches: use it directly
(``for image, mask in sampler``) or in a ``DataLoader(sampler, batch_size=None, num_workers=n)``
(as ``unetkit.train.builders.batch_stream`` does).  Batch ``i`` of an epoch is a function of
``(seed, epoch, rank, i)`` alone: any number of worker processes (a DataLoader hands out its
workers' batches round-robin, worker ``w`` drawing batches ``w, w + n, ...``) yields the same
batches in the same order as the training process alone, and a run resumed in the middle of an
epoch starts at its batch without drawing the ones before. An ``augment`` callable, when given,
augments each batch there (on the CPU, in the workers), seeded by the same four numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from unetkit.data.ignore import labelled_locations

_MAX_LOCATIONS = 10_000  # stored foreground voxels per class and case (nnU-Net keeps 10k too)
Batch = tuple[torch.Tensor, torch.Tensor]
#: ``augment(image, mask, generator) -> (image, mask)`` on a batch (``unetkit.data.augment``)
AugmentFn = Callable[[torch.Tensor, torch.Tensor, torch.Generator], Batch]


def foreground_locations(
    mask: np.ndarray, ignore_index: int | None = None, max_per_class: int = _MAX_LOCATIONS
) -> dict[int, np.ndarray]:
    """``{label: (N, ndim) voxel indices}`` for every foreground label present in ``mask``.

    At most ``max_per_class`` evenly spaced voxels are kept per label.
    """
    locations = {}
    for label in np.unique(mask):
        if label == 0 or (ignore_index is not None and label == ignore_index):
            continue
        coords = np.argwhere(mask == label)
        step = max(1, len(coords) // max_per_class)
        locations[int(label)] = coords[::step]
    return locations


def patch_start(size: int, patch: int, rng: np.random.Generator, center: int | None) -> int:
    """Start index of a patch along one axis; negative or overlong means padding.

    Random: uniform over positions that keep the patch inside (or the image inside the patch
    when the image is smaller).  With ``center``: the patch is centred there, then shifted to
    stay inside while still containing ``center``.
    """
    low, high = min(0, size - patch), max(0, size - patch)
    if center is None:
        return int(rng.integers(low, high + 1))
    return int(np.clip(center - patch // 2, low, high))


def extract_patch(
    array: np.ndarray, start: Sequence[int], patch: Sequence[int], pad_value: float
) -> np.ndarray:
    """Crop ``array[..., start:start+patch]`` over its last ``len(patch)`` axes, padding outside."""
    lead = array.ndim - len(patch)
    out = np.full(array.shape[:lead] + tuple(patch), pad_value, dtype=array.dtype)
    src, dst = [slice(None)] * lead, [slice(None)] * lead
    for axis, (s, p) in enumerate(zip(start, patch, strict=False)):
        size = array.shape[lead + axis]
        lo, hi = max(s, 0), min(s + p, size)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = array[tuple(src)]
    return out


class PatchSampler(IterableDataset):
    """Batches of random patches, a fraction centred on foreground voxels.

    Args:
        images: cases ``(C, *spatial)`` float32 (already normalised).
        masks: label maps ``(*spatial)`` integer, one per image.
        patch_size: patch size per spatial axis.
        batch_size: patches per batch.
        foreground_fraction: share of each batch (rounded, nnU-Net style) whose patch is centred on
            a voxel of a random foreground class present in the case.
        seed: base seed; batch ``i`` of an epoch is a function of ``(seed, epoch, rank, i)``.
        rank, world_size: DDP process; each rank draws its own stream.
        batches_per_epoch: finite epochs (split across DataLoader workers); None: endless.
        pad_value, mask_pad_value: fill for images smaller than the patch (mask default:
            ``ignore_index`` when given, else background).
        ignore_index: the mask value of unlabelled pixels: never a patch centre, and a patch
            that would hold only such pixels is centred on a labelled pixel instead.
        augment: augments each batch where it is drawn (None: batches leave unaugmented).

    Yields:
        ``(image (B, C, *patch) float32 tensor, mask (B, *patch) int64 tensor)``.
    """

    def __init__(
        self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
        patch_size: Sequence[int], batch_size: int, foreground_fraction: float = 0.33,
        seed: int = 0, *, rank: int = 0, world_size: int = 1,
        batches_per_epoch: int | None = None, pad_value: float = 0.0,
        mask_pad_value: int | None = None, ignore_index: int | None = None,
        augment: AugmentFn | None = None,
    ):
        if not images or len(images) != len(masks):
            raise ValueError(f"PatchSampler needs as many masks as images (got {len(images)} "
                             f"images, {len(masks)} masks)")
        self.patch_size = tuple(int(p) for p in patch_size)
        for index, (image, mask) in enumerate(zip(images, masks, strict=False)):
            if image.shape[1:] != mask.shape or len(self.patch_size) != mask.ndim:
                raise ValueError(f"PatchSampler case {index}: image {image.shape}, mask "
                                 f"{mask.shape}, patch_size {self.patch_size} do not fit")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} must be in [0, world_size={world_size})")
        self.images, self.masks = list(images), list(masks)
        self.batch_size = int(batch_size)
        self.foreground_fraction = float(foreground_fraction)
        self.seed, self.rank, self.world_size, self.epoch = int(seed), rank, world_size, 0
        self.batches_per_epoch = batches_per_epoch
        self.start, self.following = 0, False
        self.augment = augment
        self.pad_value = pad_value
        self.mask_pad_value = mask_pad_value if mask_pad_value is not None else (
            ignore_index if ignore_index is not None else 0)  # padding is no labelled pixel
        self.ignore_index = ignore_index
        self.locations = [foreground_locations(m, ignore_index) for m in self.masks]
        # sparse annotations: labelled pixels of cases that have ignored ones (else None)
        self.labelled = [labelled_locations(m, ignore_index, _MAX_LOCATIONS) for m in self.masks]
        # cases drawn from: not those without a labelled pixel (the unannotated slices of a
        # partly annotated volume), unless no case has one
        self.cases = [i for i, kept in enumerate(self.labelled) if kept is None or len(kept)] \
            or list(range(len(self.masks)))

    def set_epoch(self, epoch: int, start: int = 0, *, following: bool = False) -> None:
        """Select epoch ``epoch`` from its batch ``start`` (call before iterating).

        ``following``: go on into the next epochs (batch 0 of ``epoch + 1`` after the last of
        ``epoch``), so that one DataLoader and its workers serve a whole run.
        """
        if start < 0 or (self.batches_per_epoch is not None and start > self.batches_per_epoch):
            raise ValueError(f"PatchSampler: start batch {start} outside the epoch of "
                             f"{self.batches_per_epoch} batches")
        self.epoch, self.start, self.following = int(epoch), int(start), following

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to draw the same batches."""
        return {"seed": self.seed, "epoch": self.epoch, "rank": self.rank}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``."""
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])

    def rng(self, index: int, epoch: int | None = None) -> np.random.Generator:
        """The generator of batch ``index`` of ``epoch`` (default: the selected epoch)."""
        epoch = self.epoch if epoch is None else epoch
        return np.random.default_rng([self.seed, epoch, self.rank, index])

    def batch(self, index: int, epoch: int | None = None) -> Batch:
        """Batch ``index`` of ``epoch`` (default: the selected one), augmented when the sampler
        augments: ``(B, C, *patch) float32, (B, *patch) int64``."""
        rng = self.rng(index, epoch)
        image, mask = self.sample_batch(rng)
        if self.augment is not None:
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            image, mask = self.augment(image, mask, generator)
        return image, mask

    def sample_batch(self, rng: np.random.Generator) -> Batch:
        """One batch ``(B, C, *patch) float32, (B, *patch) int64`` drawn with ``rng``."""
        forced = self.batch_size - int(round(self.batch_size * (1 - self.foreground_fraction)))
        images, masks = [], []
        for index in range(self.batch_size):
            case = self.cases[int(rng.integers(len(self.cases)))]
            center = self._foreground_center(case, rng) if index >= self.batch_size - forced \
                else None
            start = self._start(case, center, rng)
            patch = extract_patch(self.masks[case], start, self.patch_size, self.mask_pad_value)
            labelled = self.labelled[case]
            if labelled is not None and len(labelled) and (patch == self.ignore_index).all():
                # only ignored pixels: nothing to learn; centre it on a labelled pixel instead
                start = self._start(case, labelled[int(rng.integers(len(labelled)))], rng)
                patch = extract_patch(self.masks[case], start, self.patch_size,
                                      self.mask_pad_value)
            images.append(extract_patch(self.images[case], start, self.patch_size,
                                        self.pad_value))
            masks.append(patch)
        image = torch.from_numpy(np.stack(images).astype(np.float32, copy=False))
        return image, torch.from_numpy(np.stack(masks).astype(np.int64, copy=False))

    def _start(self, case: int, center: np.ndarray | None, rng: np.random.Generator
               ) -> list[int]:
        """Patch start per axis: random, or around ``center``."""
        return [patch_start(s, p, rng, None if center is None else center[a])
                for a, (s, p) in enumerate(zip(self.masks[case].shape, self.patch_size,
                                               strict=False))]

    def _foreground_center(self, case: int, rng: np.random.Generator) -> np.ndarray | None:
        locations = self.locations[case]
        if not locations:
            return None  # no foreground in this case: a random patch
        labels = sorted(locations)
        coords = locations[labels[int(rng.integers(len(labels)))]]
        return coords[int(rng.integers(len(coords)))]

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        per_epoch = self.batches_per_epoch
        position = self.start + worker  # counted from batch 0 of the selected epoch
        while True:
            epoch, index = (self.epoch, position) if per_epoch is None else (
                self.epoch + position // per_epoch, position % per_epoch)
            if epoch != self.epoch and not self.following:
                return
            yield self.batch(index, epoch)
            position += workers

    def __len__(self) -> int:
        if self.batches_per_epoch is None:
            raise TypeError("an endless PatchSampler has no length (set batches_per_epoch)")
        return self.batches_per_epoch


def with_slice_context(stack: np.ndarray | torch.Tensor, context: int
                       ) -> np.ndarray | torch.Tensor:
    """``(S, C, *plane)`` slices -> ``(S, (2k+1) * C, *plane)``: each slice with its ``k =
    context`` neighbours on either side as channels (channel ``j * C + c`` is channel ``c`` of
    slice ``s - k + j``; beyond the ends the edge slice repeats). Numpy arrays or tensors.

    2.5D input: a 2D network on the slices of a volume sees the structure's extent across the
    slices too, at the cost of a wider first convolution only.
    """
    if context == 0:
        return stack
    count = stack.shape[0]
    index = np.clip(np.arange(count)[:, None] + np.arange(-context, context + 1)[None, :],
                    0, count - 1)  # (S, 2k+1)
    if isinstance(stack, torch.Tensor):
        index = torch.as_tensor(index, device=stack.device)
    return stack[index].reshape(count, -1, *stack.shape[2:])


def to_slices(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], axis: int,
              context: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """3D cases -> their 2D slices across spatial ``axis`` (for 2D training on volumes).

    Args:
        images: ``(C, X, Y, Z)`` arrays.
        masks: ``(X, Y, Z)`` label maps.
        axis: the spatial axis (0..2) the slices are taken across.
        context: neighbouring slices on each side added as channels (``with_slice_context``).

    Returns:
        ``((2k+1) * C, *plane)`` images and ``(*plane)`` masks, slice by slice, case after case.
    """
    if any(m.ndim != 3 for m in masks):
        raise ValueError(f"data.slice_axis {axis}: slicing needs 3D volumes")
    stacks = [with_slice_context(np.moveaxis(image, axis + 1, 0), context)
              for image in images]  # (slices, (2k+1) * C, *plane)
    mask_stacks = [np.moveaxis(mask, axis, 0) for mask in masks]  # (slices, *plane)
    return ([np.ascontiguousarray(s[k]) for s in stacks for k in range(s.shape[0])],
            [np.ascontiguousarray(m[k]) for m in mask_stacks for k in range(m.shape[0])])


def from_slices(slices: Sequence[np.ndarray], counts: Sequence[int], axis: int, context: int = 0,
                masks: bool = False) -> list[np.ndarray]:
    """The inverse of ``to_slices``: the volumes again, ``counts[i]`` slices for case ``i``.

    Images ``((2k+1) * C, *plane)`` -> ``(C, X, Y, Z)`` (each slice's own channels, the middle
    block of its context); with ``masks``, label maps ``(*plane)`` -> ``(X, Y, Z)``. Copies:
    for the few cases something needs whole (calibration predicts volumes, as predict does).
    """
    volumes, start = [], 0
    for count in counts:
        stack = np.stack(slices[start:start + count])  # (S, (2k+1) * C, *plane) or (S, *plane)
        start += count
        if masks:
            volumes.append(np.ascontiguousarray(np.moveaxis(stack, 0, axis)))
            continue
        channels = stack.shape[1] // (2 * context + 1)
        middle = stack[:, context * channels:(context + 1) * channels]  # (S, C, *plane)
        volumes.append(np.ascontiguousarray(np.moveaxis(middle, 0, axis + 1)))
    return volumes
