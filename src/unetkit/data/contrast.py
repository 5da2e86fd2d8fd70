"""Local contrast equalisation (CLAHE) of images, per channel, before intensity normalisation.

Fundus photographs are lit unevenly: the vessels near the optic disc are bright, those at the
rim of the field of view dim and low in contrast. Contrast-limited adaptive histogram
equalisation (Zuiderveld 1994; ``skimage.exposure.equalize_adapthist``) equalises the histogram
in tiles of about 1/8 of the image, limits each tile's contrast gain (``clip``) and blends the
tiles bilinearly, so thin dark structures have the same contrast everywhere. Retinal-vessel
U-Nets apply it as their standard preprocessing (orobix/retina-unet, SA-UNet).

``equalize(image, clip)`` maps each channel of ``(C, *spatial)`` to ``[0, 1]`` by its own
minimum and maximum, equalises it, and returns float32 ``(C, *spatial)`` in ``[0, 1]``. It is a
deterministic function of the image alone, so training, validation and prediction apply it the
same way (``unetkit.data.preprocessing.Preprocessor``) and nothing needs fitting.
"""

from __future__ import annotations

import numpy as np


def equalize(image: np.ndarray, clip: float = 0.01) -> np.ndarray:
    """CLAHE of each channel of ``(C, *spatial)`` (2D or 3D) -> float32 in ``[0, 1]``.

    Args:
        image: the raw image, any numeric type; channel first.
        clip: contrast limit in ``(0, 1]`` (skimage's ``clip_limit``; larger: more contrast).

    A constant channel (nothing to equalise) becomes zeros.
    """
    from skimage.exposure import equalize_adapthist

    if not 0 < clip <= 1:
        raise ValueError(f"CLAHE clip limit must be in (0, 1], got {clip}")
    out = np.zeros(image.shape, dtype=np.float32)
    for c, channel in enumerate(np.asarray(image, dtype=np.float64)):
        low, high = float(channel.min()), float(channel.max())
        if high <= low:
            continue
        unit = (channel - low) / (high - low)
        out[c] = equalize_adapthist(unit, clip_limit=clip).astype(np.float32)
    return out
