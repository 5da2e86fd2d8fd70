"""The memory peak of a prediction in a fresh process, for the ``memory_peak`` fixture.

    python memory_probe.py SIZE BUDGET_MB PRECISION BATCH MODEL [MODEL ...]
        -> {"peak": bytes, "precision": plan name}

The peak is the RSS high-water mark of the second prediction of a SIZE x SIZE image, as every
image after the first of ``unetkit predict`` on a folder of one size. The first prediction pays
one-time costs that no budget can bound (the libraries' code paged in, the thread pools, the
convolution primitives JIT-compiled for each window shape: tests/infer/test_memory.py's
docstring). Between the two ``malloc_trim`` gives the heap the first one freed back to the
system, so the high-water mark counts every page the second one touches. Several models predict
as their ensemble (``unetkit.infer.load_models``); one model as itself.
"""

import ctypes
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


size, budget, precision, batch = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
paths = sys.argv[5:]
predictor = load_models(paths[0], paths[1:], settings={
    "infer.memory_budget_mb": budget, "infer.precision": precision,
    "infer.batch_size": int(batch)})
image = np.random.default_rng(0).normal(0, 1, (1, size, size)).astype(np.float32)
predictor.predict(image, probabilities=False)  # the one-time costs
ctypes.CDLL(None).malloc_trim(0)
base = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")
predictor.predict(image, probabilities=False)
print(json.dumps({"peak": status("VmHWM") - base, "precision": predictor.plan.name}))
