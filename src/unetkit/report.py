"""Pictures people would rather see than read: overlays, training curves and the HTML report.

Matplotlib is used with the non-interactive Agg backend; nothing here needs a display.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

# --- training curves ---

# --- overlays ---

# --- html report ---
