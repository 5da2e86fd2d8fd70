"""unetkit: the U-Net family for 2D and 3D segmentation, from folders of images to reports.

Imports here stay light: submodules (``unetkit.nn``, ``unetkit.data``, ...) load torch lazily.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
