"""Inference: windows and tiling, the decision step, overlap-tile, post-processing and the
staged ``Predictor``."""

from unetkit.infer.decision import decide, probabilities
from unetkit.infer.ensemble import EnsemblePredictor, load_models
from unetkit.infer.overlap_tile import overlap_tile_inference
from unetkit.infer.postprocess import fill_holes, keep_largest_component, remove_small_components
from unetkit.infer.predictor import Prediction, Predictor
from unetkit.infer.tta import mirror_tta
from unetkit.infer.windows import sliding_window_inference, sliding_window_labels

__all__ = [
    "EnsemblePredictor",
    "Prediction",
    "Predictor",
    "decide",
    "fill_holes",
    "keep_largest_component",
    "load_models",
    "mirror_tta",
    "overlap_tile_inference",
    "probabilities",
    "remove_small_components",
    "sliding_window_inference",
    "sliding_window_labels",
]
