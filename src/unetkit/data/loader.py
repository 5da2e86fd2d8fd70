"""Loading: decoded cases cached in memory when they fit, and DataLoaders with worker processes.

``CaseDataset`` reads (and optionally normalises) whole cases; with ``cache=True`` each decoded case
is kept after its first read if the estimated total fits in ``max_cache_bytes`` (default: half
the available memory).  ``load_cases`` decodes a list of cases in parallel worker processes.
``make_patch_loader`` runs a ``PatchSampler`` in worker processes; each worker draws its own
stream from ``(seed, epoch, rank, worker)``, so results depend on ``num_workers`` but are
reproducible for a given value.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
from torch.utils.data import DataLoader, Dataset

from unetkit.data.dataset import Case, load_case
from unetkit.data.io import Geometry, read_image
from unetkit.data.normalization import Normalizer
from unetkit.data.sampling import PatchSampler

logger = logging.getLogger(__name__)


def available_memory() -> int:
    """Bytes of physical memory currently available (a conservative 2 GiB if unknown)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2 * 1024**3


def _case_bytes(case: Case) -> int:
    """Estimated decoded size: float32 image channels plus an int64 mask."""
    image, _ = read_image(case.image_paths[0])
    voxels = int(np.prod(image.shape[1:]))
    return voxels * (4 * image.shape[0] * len(case.image_paths) + 8)


class CaseDataset(Dataset):
    """Whole cases as ``(image (C, *spatial) float32, mask (*spatial) int64)`` numpy arrays.

    Args:
        cases: from ``discover_cases``.
        labels: declared label values (mask values outside raise ``DatasetError``).
        normalizer: applied to each image after decoding (fitted beforehand if needed).
        cache: keep decoded cases in memory if they fit in ``max_cache_bytes``.
        max_cache_bytes: cache budget; default half of the available memory.
    """

    def __init__(self, cases: Sequence[Case], labels: Sequence[int] | None = None,
                 normalizer: Normalizer | None = None, cache: bool = True,
                 max_cache_bytes: int | None = None):
        self.cases = list(cases)
        self.labels = labels
        self.normalizer = normalizer
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None, Geometry]] = {}
        self.cache = cache and bool(self.cases)
        if self.cache:
            budget = max_cache_bytes if max_cache_bytes is not None else available_memory() // 2
            estimate = _case_bytes(self.cases[0]) * len(self.cases)
            if estimate > budget:
                logger.info("data set (~%d MB decoded) exceeds the cache budget (%d MB); "
                            "reading from disk", estimate >> 20, budget >> 20)
                self.cache = False

    def __len__(self) -> int:
        return len(self.cases)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None, Geometry]:
        """Decoded (and normalised) case with its geometry, from the cache when possible."""
        if index in self._cache:
            return self._cache[index]
        image, mask, geometry = load_case(self.cases[index], labels=self.labels)
        if self.normalizer is not None:
            image = np.asarray(self.normalizer(image), dtype=np.float32)
        if self.cache:
            self._cache[index] = (image, mask, geometry)
        return image, mask, geometry

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        image, mask, _ = self.load(index)
        return image, mask


class _Decoded(Dataset):
    """``CaseDataset.load`` as a dataset, so that worker processes return geometry too."""

    def __init__(self, dataset: CaseDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray | None, Geometry]:
        return self.dataset.load(index)


def _first(batch: list) -> object:  # top level so that worker processes can pickle it
    return batch[0]


def load_cases(dataset: CaseDataset, num_workers: int = 0
               ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Decode every case of ``dataset`` (in ``num_workers`` processes), filling its cache.

    Returns:
        images ``(C, *spatial)`` float32 and masks ``(*spatial)`` int64 (None without a mask).
    """
    if num_workers <= 0 or len(dataset) < 2:
        decoded = [dataset.load(i) for i in range(len(dataset))]
    else:
        loader = DataLoader(_Decoded(dataset), batch_size=1, num_workers=num_workers,
                            collate_fn=_first)
        decoded = list(loader)
        if dataset.cache:
            dataset._cache.update(enumerate(decoded))
    return [d[0] for d in decoded], [d[1] for d in decoded]


def make_patch_loader(sampler: PatchSampler, num_workers: int = 0,
                      pin_memory: bool = False) -> DataLoader:
    """A DataLoader yielding the sampler's batches, produced in ``num_workers`` processes.

    Call ``sampler.set_epoch(epoch)`` before iterating each epoch (workers start per epoch and
    copy the sampler, so the new epoch reaches them).
    """
    return DataLoader(sampler, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=False)
