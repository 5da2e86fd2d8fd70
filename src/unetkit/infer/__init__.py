"""Inference: sliding windows, overlap-tile, post-processing and the checkpoint ``Predictor``."""

from unetkit.infer.overlap_tile import overlap_tile_inference
from unetkit.infer.postprocess import fill_holes, keep_largest_component, remove_small_components
from unetkit.infer.predictor import Prediction, Predictor
from unetkit.infer.regions import sliding_window_labels
from unetkit.infer.sliding_window import mirror_tta, sliding_window_inference

__all__ = [
    "Prediction",
    "Predictor",
    "fill_holes",
    "keep_largest_component",
    "mirror_tta",
    "overlap_tile_inference",
    "remove_small_components",
    "sliding_window_inference",
    "sliding_window_labels",
]
