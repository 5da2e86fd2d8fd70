"""Batched data augmentation on torch tensors, on whatever device the batch lives.

``Augmenter(config, spatial_dims)(image, mask, generator)`` augments a whole batch at once:

1. geometry (same transform for image and mask): per-axis flips and rot90 (index permutations),
   random affine (rotation, isotropic scaling) and elastic deformation, composed into ONE
   ``grid_sample`` call for the samples that need resampling (image linear, mask nearest);
2. intensity (image only): Gaussian noise, Gaussian blur, brightness/contrast, low-resolution
   simulation, gamma.

Each transform is applied to each sample with its own probability from ``AugmentConfig``.  All
random values come from the given ``torch.Generator``: the same seed gives the same batch.
``draw`` and ``apply`` are separate so that parameters can be inspected or set by hand.

Nothing waits for a GPU: the generator is a CPU one and every random value (the noise fields
included) is drawn on the host, so which samples a transform touches, kernel radii and sizes are
known without reading the device; the values reach the batch's device by copies from pinned
memory that do not wait (``unetkit.data.transfer``), and no operation on the batch has a shape
that depends on its values. The same seed gives the same parameters on every device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import torch

from unetkit.config import AugmentConfig
from unetkit.data import augment_intensity as intensity
from unetkit.data import augment_spatial as spatial
from unetkit.data.transfer import to_device


@dataclass
class AugmentParams:
    """Per-sample random parameters of one batch (CPU tensors, length B unless noted)."""

    flips: torch.Tensor  # (B, n) bool
    rot_k: torch.Tensor  # (B,) int, 0 = no rot90
    rot_plane: torch.Tensor  # (B,) int, index into the eligible planes
    planes: list[tuple[int, int]]
    affine: torch.Tensor  # (B,) bool
    angles: torch.Tensor  # (B, 1) or (B, 3) radians
    scales: torch.Tensor  # (B,)
    elastic: torch.Tensor  # (B,) bool
    elastic_noise: torch.Tensor | None  # (number elastic, n, *coarse) standard normal
    noise: torch.Tensor  # (B,) bool
    noise_std: torch.Tensor
    noise_values: torch.Tensor | None  # (number noisy, C, *spatial) standard normal
    blur: torch.Tensor
    blur_sigma: torch.Tensor
    brightness_contrast: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    lowres: torch.Tensor
    lowres_scale: torch.Tensor
    gamma: torch.Tensor
    gamma_value: torch.Tensor


class Augmenter:
    """Augment batches ``image (B, C, *spatial)`` float and ``mask (B, *spatial)`` int64.

    Args:
        config: probabilities and ranges (``data.augment``); ``enabled=False`` makes it a no-op.
            Its ``padding_mode`` is the ``grid_sample`` padding where a transform looks outside
            the patch: ``zeros`` (default, as nnU-Net: image 0 = the mean after z-scoring, mask
            0 = background), ``border``, or ``reflection`` (mirrors; about twice as slow).
        spatial_dims: 2 or 3.
        mask_fill: the mask label where zero padding shows outside the patch: the ignore label
            of sparse annotations or regions of interest (``unetkit.data.ignore``), since
            nothing was labelled there; 0 (background) without one.
    """

    def __init__(self, config: AugmentConfig | None = None, spatial_dims: int = 2,
                 mask_fill: int = 0):
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.config = config or AugmentConfig()
        self.spatial_dims = spatial_dims
        self.mask_fill = int(mask_fill)

    @property
    def padding_mode(self) -> str:
        """What geometric transforms show outside the patch (``config.padding_mode``)."""
        return self.config.padding_mode

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None = None,
                 generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Augment one batch; returns new tensors (the inputs are not modified)."""
        if image.ndim != self.spatial_dims + 2:
            raise ValueError(f"Augmenter({self.spatial_dims}-D): image must be (B, C, *spatial), "
                             f"got shape {tuple(image.shape)}")
        if mask is not None and mask.shape != image.shape[:1] + image.shape[2:]:
            raise ValueError(f"Augmenter: mask shape {tuple(mask.shape)} must be (B, *spatial) "
                             f"matching image {tuple(image.shape)}")
        if not self.config.enabled:
            return image, mask
        params = self.draw(image.shape, generator)
        return self.apply(image, mask, params)

    def draw(self, shape: torch.Size | tuple[int, ...],
             generator: torch.Generator | None = None) -> AugmentParams:
        """Draw every random parameter for a batch of ``shape`` ``(B, C, *spatial)``, on the
        host, from a CPU ``generator`` (None: torch's global one).

        Raises:
            ValueError: ``generator`` is not a CPU generator.
        """
        cfg, n = self.config, self.spatial_dims
        batch, channels, size = shape[0], shape[1], tuple(shape[2:])
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(f"Augmenter: the generator must be a CPU torch.Generator (random "
                             f"parameters are drawn on the host), got one on {generator.device}")

        def rand(*dims: int) -> torch.Tensor:
            return torch.rand(*dims, generator=generator)

        def uniform(low: float, high: float, *dims: int) -> torch.Tensor:
            return low + (high - low) * rand(*dims)

        def coin(p: float) -> torch.Tensor:
            return rand(batch) < p

        def randn(*dims: int) -> torch.Tensor:
            return torch.randn(*dims, generator=generator)

        planes = [(a, b) for a, b in combinations(range(n), 2) if size[a] == size[b]]
        rot = coin(cfg.rot90_prob) & bool(planes)
        rot_k = torch.where(rot, 1 + (rand(batch) * 3).long().clamp(max=2), 0)
        rot_plane = (rand(batch) * max(len(planes), 1)).long().clamp(max=max(len(planes) - 1, 0))
        flips = (rand(batch, n) < cfg.flip_prob) & self._flippable(n)
        max_angle = math.radians(cfg.rotation_degrees)
        angles = uniform(-max_angle, max_angle, batch, 1 if n == 2 else 3)
        log_scale = uniform(math.log(cfg.scale_range[0]), math.log(cfg.scale_range[1]), batch)
        affine, elastic = coin(cfg.affine_prob), coin(cfg.elastic_prob)
        if cfg.elastic_alpha == 0:
            elastic = torch.zeros_like(elastic)
        coarse = spatial.control_grid(size, cfg.elastic_sigma)
        n_elastic = int(elastic.sum())
        elastic_noise = randn(n_elastic, n, *coarse) if n_elastic else None
        noise = coin(cfg.noise_prob) & (cfg.noise_std > 0)
        n_noise = int(noise.sum())
        noise_values = randn(n_noise, channels, *size) if n_noise else None
        log_gamma = uniform(math.log(cfg.gamma_range[0]), math.log(cfg.gamma_range[1]), batch)
        return AugmentParams(
            flips=flips, rot_k=rot_k, rot_plane=rot_plane, planes=planes, affine=affine,
            angles=angles, scales=log_scale.exp(), elastic=elastic, elastic_noise=elastic_noise,
            noise=noise, noise_std=uniform(0.0, cfg.noise_std, batch), noise_values=noise_values,
            blur=coin(cfg.blur_prob), blur_sigma=uniform(*cfg.blur_sigma, batch),
            brightness_contrast=coin(cfg.brightness_contrast_prob),
            brightness=uniform(*cfg.brightness_range, batch),
            contrast=uniform(*cfg.contrast_range, batch),
            lowres=coin(cfg.lowres_prob), lowres_scale=uniform(*cfg.lowres_scale, batch),
            gamma=coin(cfg.gamma_prob), gamma_value=log_gamma.exp(),
        )

    def _flippable(self, n: int) -> torch.Tensor:
        """``(n,)`` bool: which spatial axes ``flip_axes`` allows (all when None)."""
        axes = self.config.flip_axes
        if axes is None:
            return torch.ones(n, dtype=torch.bool)
        if any(a >= n for a in axes):
            raise ValueError(f"data.augment.flip_axes {axes}: a {n}D patch has axes 0..{n - 1}")
        return torch.tensor([a in axes for a in range(n)])

    def apply(self, image: torch.Tensor, mask: torch.Tensor | None, params: AugmentParams
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Apply drawn parameters: geometry to image and mask, then intensity to the image."""
        image, mask, copied = self._geometry(image, mask, params)
        steps = (
            (params.noise, lambda x, i: intensity.gaussian_noise(
                x, params.noise_std[i], params.noise_values)),
            (params.blur, lambda x, i: intensity.gaussian_blur(x, params.blur_sigma[i])),
            (params.brightness_contrast, lambda x, i: intensity.brightness_contrast(
                x, params.brightness[i], params.contrast[i])),
            (params.lowres, lambda x, i: intensity.low_resolution(x, params.lowres_scale[i])),
            (params.gamma, lambda x, i: intensity.gamma(x, params.gamma_value[i])),
        )
        for selected, transform in steps:
            index = torch.nonzero(selected).flatten()
            if len(index) == 0:
                continue
            if len(index) == len(selected):  # every sample: no gather/scatter copies
                image, copied = transform(image, index), True
                continue
            if not copied:
                image, copied = image.clone(), True
            device_index = to_device(index, image.device)
            image[device_index] = transform(image[device_index], index)
        return image, mask

    def _geometry(self, image: torch.Tensor, mask: torch.Tensor | None, params: AugmentParams
                  ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        """Flips/rot90 by indexing, or everything in one grid_sample where resampling is needed."""
        resampled = params.affine | params.elastic
        permuted = ~resampled & (params.flips.any(dim=1) | (params.rot_k > 0))
        if not resampled.any() and not permuted.any():
            return image, mask, False
        size = tuple(image.shape[2:])
        if resampled.all():  # the whole batch in one call, no copies
            grid = self._grid(params, torch.arange(len(resampled)), size, image.device)
            out_image, out_mask = spatial.resample(image, mask, grid, self.padding_mode,
                                                   self.config.mask_interpolation,
                                                   self.mask_fill)
            return out_image, out_mask, True
        out_image = image.clone()
        out_mask = mask.clone() if mask is not None else None
        for i in torch.nonzero(permuted).flatten().tolist():
            flips, k, plane = self._permutation(params, i)
            out_image[i] = spatial.permute_sample(image[i], flips, k, plane, lead=1)
            if out_mask is not None:
                out_mask[i] = spatial.permute_sample(mask[i], flips, k, plane, lead=0)
        index = torch.nonzero(resampled).flatten()
        if len(index):
            grid = self._grid(params, index, size, image.device)
            device_index = to_device(index, image.device)
            sub_mask = mask[device_index] if mask is not None else None
            new_image, new_mask = spatial.resample(image[device_index], sub_mask, grid,
                                                   self.padding_mode,
                                                   self.config.mask_interpolation,
                                                   self.mask_fill)
            out_image[device_index] = new_image
            if out_mask is not None:
                out_mask[device_index] = new_mask
        return out_image, out_mask, True

    def _permutation(self, params: AugmentParams, i: int
                     ) -> tuple[list[bool], int, tuple[int, int]]:
        plane = params.planes[int(params.rot_plane[i])] if params.planes else (0, 1)
        return params.flips[i].tolist(), int(params.rot_k[i]), plane

    def _grid(self, params: AugmentParams, index: torch.Tensor, size: tuple[int, ...],
              device: torch.device) -> torch.Tensor:
        """Sampling grid ``(len(index), *size, n)`` for flip @ rot90 @ affine + elastic."""
        n = self.spatial_dims
        matrices = []
        for i in index.tolist():
            flips, k, plane = self._permutation(params, i)
            matrix = spatial.flip_matrix(torch.tensor([flips]))[0] @ spatial.rot90_matrix(
                k, plane, n)
            matrices.append(matrix)
        matrix = torch.stack(matrices)
        affine = params.affine[index]
        if affine.any():
            sub = index[affine]
            matrix[affine] = matrix[affine] @ spatial.affine_matrix(
                params.angles[sub], params.scales[sub], size)
        elastic = params.elastic[index]
        coarse = spatial.control_grid(size, self.config.elastic_sigma) if elastic.any() \
            else (2,) * n
        control = torch.zeros(len(index), n, *coarse)
        if elastic.any():
            assert params.elastic_noise is not None
            control[elastic] = params.elastic_noise * self.config.elastic_alpha
        return spatial.interpolated_grid(to_device(matrix, device), size,
                                         to_device(control, device))
