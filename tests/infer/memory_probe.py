"""The memory peak of one prediction in a fresh process, for the ``memory_peak`` fixture.

    python memory_probe.py SIZE BUDGET_MB MODEL [MODEL ...]   -> {"peak": bytes}

The peak is the RSS high-water mark over a prediction of a SIZE x SIZE image after one prediction
of a small image: the first forward of a process pages in the libraries and starts the thread
pools (about 20 MB on a 2-core EPYC whatever the image size), no memory of the prediction that a
budget could bound. Several models predict as their ensemble (``unetkit.infer.load_models``).
"""

import json
import sys
from pathlib import Path

import numpy as np

from unetkit.infer.ensemble import load_models


def status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


size, budget, paths = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
predictor = load_models(paths[0], paths[1:], settings={"infer.memory_budget_mb": budget})
image = np.random.default_rng(0).normal(0, 1, (1, size, size)).astype(np.float32)
predictor.predict(image[:, :64, :64], probabilities=False)  # the one-time costs
base = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")
predictor.predict(image, probabilities=False)
print(json.dumps({"peak": status("VmHWM") - base}))
