"""Pictures people would rather see than read: overlays, training curves and the HTML report.

Modules: ``overlays`` (labels on images), ``curves`` (ROC and precision-recall curves of the
threshold-free scores), ``page`` (the self-contained evaluation report). Matplotlib is used with
the non-interactive Agg backend; nothing here needs a display.
"""

import matplotlib

matplotlib.use("Agg")

from unetkit.report.overlays import overlay_image, pick_slice, save_overlay  # noqa: E402
from unetkit.report.page import render_html_report, write_html_report  # noqa: E402
from unetkit.train.curves import plot_training_curves  # noqa: E402  (re-exported)

__all__ = ["overlay_image", "pick_slice", "plot_training_curves", "render_html_report",
           "save_overlay", "write_html_report"]
