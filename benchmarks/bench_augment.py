"""Benchmark: unetkit's batched augmentation vs MONAI dictionary transforms applied per sample.

Both sides run the same operations with the same probabilities on the same batch: per-axis
flips, rot90, rotation + scaling + elastic deformation (MONAI: ``Rand2DElasticd`` /
``Rand3DElasticd`` with rotate/scale ranges, i.e. also one resampling), Gaussian noise,
Gaussian blur, brightness/contrast, low-resolution simulation and gamma.  Masks are resampled
nearest on both sides.  Two presets: ``all`` (every transform on every sample) and ``default``
(``AugmentConfig()`` probabilities).  Measured side by side in one run; prints a table, writes
JSON and replaces the ``augment`` section of ``docs/BENCHMARKS.md`` (unless ``--no-docs``).

    .venv/bin/python benchmarks/bench_augment.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from unetkit.config import AugmentConfig
from unetkit.data.augment import Augmenter

ROOT = Path(__file__).resolve().parents[1]
CASES = {"2d": (8, 1, 256, 256), "3d": (2, 1, 128, 128, 128)}
ALL_ON = dict(flip_prob=0.5, rot90_prob=0.5, affine_prob=1.0, elastic_prob=1.0, gamma_prob=1.0,
              brightness_contrast_prob=1.0, noise_prob=1.0, blur_prob=1.0, lowres_prob=1.0)


def monai_pipeline(config: AugmentConfig, dims: int, seed: int):  # noqa: ANN201
    """MONAI dictionary transforms mirroring ``config`` (per-sample, image + label)."""
    from monai import transforms as mt

    keys, image = ["image", "label"], ["image"]
    elastic_prob = max(config.affine_prob, config.elastic_prob)
    rotate = math.radians(config.rotation_degrees)
    scale = (config.scale_range[1] - config.scale_range[0]) / 2
    common = dict(keys=keys, prob=elastic_prob, rotate_range=[rotate] * (1 if dims == 2 else 3),
                  scale_range=[scale] * dims, mode=("bilinear", "nearest"),
                  padding_mode="reflection")
    if dims == 2:
        elastic = mt.Rand2DElasticd(spacing=(config.elastic_sigma,) * 2,
                                    magnitude_range=(0, config.elastic_alpha), **common)
    else:
        elastic = mt.Rand3DElasticd(sigma_range=(5, 8), magnitude_range=(100, 200), **common)
    sigma = config.blur_sigma
    steps = [mt.RandFlipd(keys, prob=config.flip_prob, spatial_axis=axis) for axis in range(dims)]
    steps += [
        mt.RandRotate90d(keys, prob=config.rot90_prob, max_k=3, spatial_axes=(0, 1)),
        elastic,
        mt.RandGaussianNoised(image, prob=config.noise_prob, std=config.noise_std),
        mt.RandGaussianSmoothd(image, sigma_x=sigma, sigma_y=sigma, sigma_z=sigma,
                               prob=config.blur_prob),
        mt.RandScaleIntensityd(image, factors=0.25, prob=config.brightness_contrast_prob),
        mt.RandShiftIntensityd(image, offsets=0.2, prob=config.brightness_contrast_prob),
        mt.RandSimulateLowResolutiond(image, prob=config.lowres_prob,
                                      upsample_mode="bilinear" if dims == 2 else "trilinear",
                                      zoom_range=config.lowres_scale),
        mt.RandAdjustContrastd(image, prob=config.gamma_prob, gamma=config.gamma_range),
    ]
    pipeline = mt.Compose(steps)
    pipeline.set_random_state(seed)
    return pipeline


def make_batch(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(shape, generator=generator)
    return image, (image[:, 0] > 0.5).long()


def time_call(function: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` runs after one warm-up run."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_case(name: str, preset: str, repeats: int) -> dict:
    shape = CASES[name]
    dims = len(shape) - 2
    config = AugmentConfig(**ALL_ON) if preset == "all" else AugmentConfig()
    image, mask = make_batch(shape)
    augmenter = Augmenter(config, dims)
    generator = torch.Generator().manual_seed(0)
    unetkit_s = time_call(lambda: augmenter(image, mask, generator), repeats)
    pipeline = monai_pipeline(config, dims, seed=0)

    def monai_batch() -> tuple[torch.Tensor, torch.Tensor]:
        outs = [pipeline({"image": image[i], "label": mask[i][None]}) for i in range(shape[0])]
        return (torch.stack([torch.as_tensor(o["image"]) for o in outs]),
                torch.stack([torch.as_tensor(o["label"])[0] for o in outs]))

    monai_s = time_call(monai_batch, repeats)
    batch = shape[0]
    return {"case": name, "preset": preset, "shape": list(shape),
            "unetkit_s": unetkit_s, "monai_s": monai_s,
            "unetkit_samples_per_s": batch / unetkit_s, "monai_samples_per_s": batch / monai_s,
            "speedup": monai_s / unetkit_s}


def write_docs(results: dict, command: str) -> None:
    """Replace the text under ``<!-- section: augment -->`` up to the next section anchor."""
    path = ROOT / "docs" / "BENCHMARKS.md"
    lines = [
        "<!-- section: augment -->",
        "## Augmentation throughput (unetkit batched vs MONAI per-sample dict transforms)",
        "",
        "Same operations and probabilities on both sides: per-axis flips, rot90, rotation +",
        "scaling + elastic deformation (MONAI: `Rand2DElasticd`/`Rand3DElasticd` with rotate and",
        "scale ranges, so also one resampling), Gaussian noise, blur, brightness/contrast,",
        "low-resolution simulation, gamma; image linear, mask nearest. `all`: every transform on",
        "every sample; `default`: `AugmentConfig()` probabilities. unetkit augments the batch in",
        "one call, MONAI runs its dictionary pipeline per sample. CPU float32, median of",
        f"{results['repeats']} runs after a warm-up, torch {results['torch']},",
        f"{results['threads']} intra-op thread(s) on both sides (the benchmark machine is shared;",
        "oversubscribed OpenMP threads made 2-thread timings vary up to 10x between runs).",
        "",
        "| batch | preset | unetkit (samples/s) | MONAI (samples/s) | speed-up |",
        "|---|---|---:|---:|---:|",
    ]
    for row in results["rows"]:
        shape = "x".join(str(s) for s in row["shape"])
        lines.append(f"| {shape} | {row['preset']} | {row['unetkit_samples_per_s']:.1f} | "
                     f"{row['monai_samples_per_s']:.1f} | **{row['speedup']:.1f}x** |")
    lines += ["", f"Command: `{command}`", "", ""]
    text = path.read_text()
    pattern = re.compile(r"<!-- section: augment -->.*?(?=<!-- section: |\Z)", re.S)
    path.write_text(pattern.sub(lambda _: "\n".join(lines), text, count=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--presets", default="all,default")
    parser.add_argument("--cases", default="2d,3d")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads for both sides (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" /
                        "augment.json")
    parser.add_argument("--no-docs", action="store_true", help="do not edit docs/BENCHMARKS.md")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [run_case(name, preset, args.repeats)
            for preset in args.presets.split(",") for name in args.cases.split(",")]
    print(f"{'batch':>18} {'preset':>8} {'unetkit s':>10} {'MONAI s':>10} {'speed-up':>9}")
    for row in rows:
        shape = "x".join(str(s) for s in row["shape"])
        print(f"{shape:>18} {row['preset']:>8} {row['unetkit_s']:>10.3f} "
              f"{row['monai_s']:>10.3f} {row['speedup']:>8.1f}x")
    results = {"rows": rows, "repeats": args.repeats, "torch": torch.__version__,
               "threads": torch.get_num_threads(), "machine": platform.processor()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    if not args.no_docs:
        options = f"--repeats {args.repeats}" + (f" --threads {args.threads}" if args.threads
                                                 else "")
        write_docs(results, f"python benchmarks/bench_augment.py {options}")


if __name__ == "__main__":
    main()
