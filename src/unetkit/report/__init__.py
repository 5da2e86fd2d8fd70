"""Pictures people would rather see than read: overlays, training curves and the HTML report.

Modules: ``slices`` (which slice of a volume, turned to the radiological convention),
``overlays`` (the panels: prediction and ground truth, the error map), ``picture`` (panels with
caption and colour legend, as users get them), ``curves`` (ROC and precision-recall curves of
the threshold-free scores), ``page`` (the self-contained evaluation report). Matplotlib is used
with the non-interactive Agg backend; nothing here needs a display.
"""

import matplotlib

matplotlib.use("Agg")

from unetkit.report.overlays import error_image, overlay_image  # noqa: E402
from unetkit.report.page import render_html_report, write_html_report  # noqa: E402
from unetkit.report.picture import (  # noqa: E402
    overlay_picture,
    render_overlay,
    save_overlay,
)
from unetkit.report.slices import pick_slice, radiological_view  # noqa: E402
from unetkit.train.curves import plot_training_curves  # noqa: E402  (re-exported)

__all__ = ["error_image", "overlay_image", "overlay_picture", "pick_slice",
           "plot_training_curves", "radiological_view", "render_html_report", "render_overlay",
           "save_overlay", "write_html_report"]
