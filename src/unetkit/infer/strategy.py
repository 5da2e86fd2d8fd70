"""How ``Predictor.predict_logits`` covers an input: padding, windows and tiles, slices.

'same' networks: the input is zero-padded to a size the network accepts (zeros, the mean of a
normalised image, as training patches that reach past an image are filled by ``PatchSampler``:
a mirrored border is a context the network never saw; on hippocampus crops smaller than the
patch, mean Dice 0.770 with mirrored, 0.811 with zero borders, same weights), then one forward
over the whole image when it fits ``infer.memory_budget_mb``, else even tiles sized to the
budget (``unetkit.infer.tiling``), or the user's ``infer.window``. 'valid' networks use the
overlap-tile strategy of the U-Net paper. Models trained on the 2D slices of volumes take as many
slices per forward as the budget allows.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from unetkit.config import Config
from unetkit.infer import tiling
from unetkit.infer.overlap_tile import overlap_tile_inference
from unetkit.infer.windows import Progress, sliding_window_inference
from unetkit.nn.sizes import model_multiples, nearest_valid_length, output_length, pad_spatial
from unetkit.runtime.device import PrecisionPlan
from unetkit.runtime.network import Network


class Strategy:
    """The window strategy of one model under its inference settings."""

    def __init__(self, config: Config, plan: PrecisionPlan, out_channels: int) -> None:
        self.config, self.infer, self.plan = config, config.infer, plan
        self.out_channels = out_channels
        self.in_channels = config.model.in_channels  # of the whole-input maps
        self.multiples = model_multiples(config.model)
        self.ramp: tuple[int, ...] | None = None  # planned tiles crossfade across their margin

    def bytes_per_voxel(self) -> int:
        """Estimated forward activation bytes per input voxel."""
        model = self.config.model
        width = model.widths[0] if model.widths else model.base_width
        return tiling.forward_bytes_per_voxel(width, 4 if self.plan.dtype is None else 2,
                                              model.name)

    def padded(self, spatial: tuple[int, ...]) -> list[int]:
        """``spatial`` rounded up to sizes the network accepts (per-axis multiples)."""
        return tiling.round_up_sizes(spatial, self.multiples)

    def scores_exceed_budget(self, x: torch.Tensor) -> bool:
        """True when the float class scores of ``(C, *S)`` would not fit the memory budget."""
        voxels = math.prod(self.padded(tuple(x.shape[1:])))
        return self.out_channels * voxels * 4 > self.infer.memory_budget_mb * 2**20

    def window_plan(self, spatial: tuple[int, ...], keep_scores: bool = True
                    ) -> tiling.WindowPlan:
        """Whole image or tiles for an input of ``spatial`` size under the memory budget."""
        return tiling.plan_window(self.padded(spatial), bytes_per_voxel=self.bytes_per_voxel(),
                                  out_channels=self.out_channels,
                                  budget_mb=self.infer.memory_budget_mb,
                                  multiple=self.multiples, keep_scores=keep_scores,
                                  in_channels=self.in_channels,
                                  batch_size=self.infer.batch_size)

    def windows(self, x: torch.Tensor, keep_scores: bool = True
                ) -> tuple[torch.Tensor, tuple[slice, ...], tuple[int, ...], Any]:
        """Zero-pad ``(B, C, *S)`` to the network's multiple; the crop back; window, overlap."""
        spatial = tuple(x.shape[2:])
        target = self.padded(spatial)
        if self.infer.window is not None:
            window = tuple(self.padded(tuple(self.infer.window)))
            target = [max(t, w) for t, w in zip(target, window, strict=True)]
            overlap: Any = self.infer.overlap
        else:
            plan = self.window_plan(spatial, keep_scores)
            window, overlap = plan.window, plan.overlap
            self.ramp = None if plan.whole else tuple(max(s, 1) for s in plan.shared)
        before = [(t - n) // 2 for t, n in zip(target, spatial, strict=True)]
        after = [t - n - b for t, n, b in zip(target, spatial, before, strict=True)]
        crop = tuple(slice(b, b + n) for b, n in zip(before, spatial, strict=True))
        return pad_spatial(x, before, after, "constant"), crop, window, overlap

    def options(self, progress: Progress | None) -> dict[str, Any]:
        """Keyword options of the sliding-window front-ends."""
        return dict(gaussian=self.infer.gaussian, batch_size=self.infer.batch_size,
                    accumulate=self.infer.accumulate, progress=progress, ramp=self.ramp)

    def blend(self, x: torch.Tensor, network: Network, progress: Progress | None
              ) -> torch.Tensor:
        """``(B, C, *S)`` -> blended logits ``(B, C_out, *S)``."""
        padded, crop, window, overlap = self.windows(x)
        logits = sliding_window_inference(padded, network, window, overlap,
                                          **self.options(progress))
        return logits[(slice(None), slice(None), *crop)]

    def slices_per_batch(self, plane: tuple[int, ...]) -> int:
        """How many 2D slices one forward may take within the memory budget."""
        padded = self.padded(plane)
        estimate = tiling.memory_estimate(padded, padded, bytes_per_voxel=self.bytes_per_voxel(),
                                          out_channels=self.out_channels, keep_scores=True,
                                          in_channels=self.in_channels)
        return max(1, int(self.infer.memory_budget_mb * 2**20 // max(estimate, 1)))

    def overlap_tile(self, x: torch.Tensor, network: Network, progress: Progress | None
                     ) -> torch.Tensor:
        """'valid' networks: ``(B, C, *S)`` -> ``(B, C_out, *S)`` by overlap-tile."""
        depth = self.config.model.depth
        smallest = nearest_valid_length(1, depth, "valid")
        margin = (smallest - output_length(smallest, depth, "valid")) // 2
        spatial = tuple(x.shape[2:])
        wanted = self.infer.window or tiling.plan_window(
            [n + 2 * margin for n in spatial], bytes_per_voxel=self.bytes_per_voxel(),
            out_channels=self.out_channels, budget_mb=self.infer.memory_budget_mb,
            multiple=1, batch_size=self.infer.batch_size).window
        tile = [nearest_valid_length(w, depth, "valid") for w in wanted]
        return overlap_tile_inference(x, network, tile, [margin] * len(spatial),
                                      step_multiple=2**depth, batch_size=self.infer.batch_size,
                                      progress=progress)
