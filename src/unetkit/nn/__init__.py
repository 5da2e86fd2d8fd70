"""The U-Net family (pure torch, no I/O): models, blocks, size rules and summaries."""

from unetkit.nn.models import AttentionUNet, ResUNet, UNet, UNetPlusPlus
from unetkit.nn.registry import MODELS, build_model
from unetkit.nn.sizes import axis_multiples, pad_to_valid, valid_input_sizes
from unetkit.nn.summary import StageRow, model_summary, summary_totals

__all__ = [
    "MODELS",
    "AttentionUNet",
    "ResUNet",
    "StageRow",
    "UNet",
    "UNetPlusPlus",
    "axis_multiples",
    "build_model",
    "model_summary",
    "pad_to_valid",
    "summary_totals",
    "valid_input_sizes",
]
