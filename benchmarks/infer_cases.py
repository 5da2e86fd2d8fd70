"""Pieces of ``bench_infer.py``: trained default-width checkpoints, inputs, MONAI's inferer,
label Dice, interleaved timing and the peak-memory probe run in a fresh process."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference as monai_swi

from unetkit.config import Config, config_to_dict
from unetkit.data.synthetic import make_blobs_3d, make_cells
from unetkit.nn import build_model
from unetkit.runtime.checkpoint import save_checkpoint

ROI = {2: 256, 3: 96}


def default_config(dims: int) -> Config:
    """The default network (base width 32, depth 4, batch norm), two classes."""
    return Config.model_validate({"model": {"spatial_dims": dims, "out_channels": 2,
                                            "base_width": 32, "depth": 4, "norm": "batch"},
                                  "data": {"normalization": {"scheme": "zscore"}}})


def training_data(dims: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Normalised synthetic images (cells in 2D, blobs in 3D) and their masks."""
    images, masks = [], []
    for i in range(4):
        image, mask = (make_cells((256, 256), seed=100 + i) if dims == 2
                       else make_blobs_3d((64, 64, 64), seed=100 + i, n_blobs=12))
        images.append((image - image.mean()) / image.std())
        masks.append(mask)
    return images, masks


def quick_train(model: torch.nn.Module, dims: int, steps: int, seed: int = 0) -> None:
    """A few Adam steps of cross-entropy on random crops (64^2 x 8 in 2D, 32^3 x 2 in 3D)."""
    images, masks = training_data(dims)
    crop, batch = (64, 8) if dims == 2 else (32, 2)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        xs, ys = [], []
        for _ in range(batch):
            k = rng.integers(4)
            origin = rng.integers(0, images[k].shape[1] - crop, dims)
            box = tuple(slice(o, o + crop) for o in origin)
            xs.append(images[k][(slice(None), *box)])
            ys.append(masks[k][box])
        logits = model(torch.from_numpy(np.stack(xs)))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(np.stack(ys)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def trained_checkpoint(dims: int, steps: int, folder: Path) -> tuple[Path, torch.nn.Module]:
    """Train the default network briefly and save it; ``(checkpoint path, model)``."""
    torch.manual_seed(0)
    config = default_config(dims)
    model = build_model("unet", **config.model.build_options())
    quick_train(model, dims, steps)
    path = save_checkpoint({"config": config_to_dict(config), "model_state": model.state_dict(),
                            "labels": {0: "background", 1: "foreground"},
                            "preprocessing": {"normalization": {"scheme": "zscore"}}},
                           folder / f"unet{dims}d.pt")
    return path, model


def test_image(dims: int, size: int) -> np.ndarray:
    """A raw ``(1, *spatial)`` test image: synthetic cells (2D, made at up to 1024^2 and tiled
    beyond) or blobs (3D)."""
    if dims == 3:
        return make_blobs_3d((size,) * 3, seed=7, n_blobs=max(6, size // 8))[0]
    made = min(size, 1024)
    image = make_cells((made, made), seed=7)[0]
    reps = -(-size // made)
    return np.tile(image, (1, reps, reps))[:, :size, :size].copy()


def monai_labels(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """MONAI ``sliding_window_inference`` (roi 256 / 96, overlap 0.5, gaussian, sw_batch 4,
    fp32, the plain model) on the z-scored image; arg-max labels."""
    dims = image.ndim - 1
    x = torch.from_numpy((image - image.mean()) / image.std())[None]
    with torch.inference_mode():
        out = monai_swi(x, (ROI[dims],) * dims, 4, model, overlap=0.5, mode="gaussian")
    return out[0].argmax(0).numpy().astype(np.uint8)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of the foregrounds (label > 0) of two label maps."""
    a, b = a > 0, b > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else float(2 * int((a & b).sum()) / total)


def interleaved(calls: dict[str, Callable[[], object]], repeats: int, warm: bool = True
                ) -> tuple[dict[str, float], dict[str, object]]:
    """Best seconds per call over ``repeats`` interleaved rounds (after one warm-up round, whose
    results are returned)."""
    results = {name: call() for name, call in calls.items()} if warm else {}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            out = call()
            times[name].append(time.perf_counter() - start)
            results.setdefault(name, out)
    return {name: min(t) for name, t in times.items()}, results


def machine() -> dict:
    """CPU, vector unit, threads and versions, for the record."""
    from unetkit.runtime.device import cpu_has_fast_bf16
    from unetkit.runtime.engine import cpu_kind

    name = "unknown"
    try:
        name = next(line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or name
    try:
        import onnxruntime
        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    return {"cpu": name, "kind": cpu_kind(), "fast_bf16": cpu_has_fast_bf16(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "onnxruntime": ort}


# --- peak memory: one prediction in a fresh process -------------------------------------

def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def peak_probe(checkpoint: str, dims: int, size: int, budget: float, engine: str) -> dict:
    """Run in a fresh process: load, make the image, predict a small one (the first forward's
    one-time costs), reset the RSS high-water mark, predict labels (as ``unetkit predict``
    does), report the peak above the RSS before."""
    from unetkit.infer.predictor import Predictor
    from unetkit.infer.strategy import Strategy

    predictor = Predictor.from_checkpoint(checkpoint, settings={
        "infer.memory_budget_mb": budget, "infer.engine": engine})
    image = test_image(dims, size)
    strategy = Strategy(predictor.config, predictor.plan, 2)
    spatial = tuple(image.shape[1:])
    plan = strategy.window_plan(spatial, keep_scores=not strategy.scores_exceed_budget(
        torch.empty((1, *spatial), device="meta")))
    # the first forward of a process pages in the libraries' code and starts the thread pools
    # (tens of MB whatever the image): done once on a small image, as for every image after the
    # first of ``unetkit predict``
    predictor.predict(test_image(dims, 64 if dims == 2 else 32), probabilities=False)
    base = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    start = time.perf_counter()
    predictor.predict(image, probabilities=False)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM") - base
    return {"dims": dims, "size": size, "budget_mb": budget, "engine": predictor.engine,
            "peak_mb": peak / 2**20, "estimate_mb": plan.estimate_bytes / 2**20,
            "window": list(plan.window), "tiles": list(plan.tiles), "seconds": seconds}


def peak_in_subprocess(checkpoint: Path, dims: int, size: int, budget: float,
                       engine: str) -> dict:
    """``peak_probe`` in a fresh Python process (its own RSS high-water mark)."""
    command = [sys.executable, str(Path(__file__).with_name("bench_infer.py")), "--peak",
               json.dumps([str(checkpoint), dims, size, budget, engine])]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
