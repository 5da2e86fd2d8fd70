"""ISBI 2012 EM membranes: train under a CPU time budget, predict held-out slices, score them.

Runs the exact user commands (``unetkit train`` then ``unetkit predict``) on a split of the 20
training slices and reports membrane Dice, IoU, pixel error and the foreground-restricted Rand score
V_rand (``skimage.metrics.adapted_rand_error`` between the 4-connected components of the
non-membrane pixels), per image and mean, as a table and JSON.

Usage:
    python benchmarks/isbi2012.py ../shared/data/isbi2012/train --config configs/isbi2012.yaml \
        --time 8m --heldout 15-19 --out bench_runs/isbi
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def parse_slices(text: str) -> list[int]:
    """'15-19' or '3,7,11' -> slice indices."""
    if "-" in text:
        low, high = (int(v) for v in text.split("-"))
        return list(range(low, high + 1))
    return [int(v) for v in text.split(",")]


def make_split(data_dir: Path, work: Path, heldout: list[int]) -> tuple[Path, Path, list[str]]:
    """Symlink the training slices into work/train and the held-out images into work/heldout."""
    images = sorted((data_dir / "images").glob("*.png"))
    if len(images) == 0:
        raise SystemExit(f"{data_dir}/images holds no PNG files")
    held_names = [images[i].name for i in heldout]
    for sub in ("train/images", "train/masks", "heldout/images"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    for image in images:
        mask = data_dir / "masks" / image.name
        if image.name in held_names:
            _link(image, work / "heldout/images" / image.name)
        else:
            _link(image, work / "train/images" / image.name)
            _link(mask, work / "train/masks" / image.name)
    return work / "train", work / "heldout/images", held_names


def _link(source: Path, target: Path) -> None:
    if not target.exists():
        target.symlink_to(source.resolve())


def run(command: list[str]) -> float:
    """Run a command, streaming its output; returns its wall time in seconds."""
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def cell_labels(membrane: np.ndarray) -> np.ndarray:
    """4-connected components of the non-membrane pixels; membrane pixels get label 0."""
    labels, _ = ndimage.label(~membrane, structure=FOUR_CONNECTED)
    return labels


def score_slice(pred_membrane: np.ndarray, gt_membrane: np.ndarray) -> dict[str, float]:
    """Membrane Dice/IoU, pixel error and V_rand for one slice (boolean arrays, True = membrane)."""
    from skimage.metrics import adapted_rand_error

    tp = float(np.logical_and(pred_membrane, gt_membrane).sum())
    fp = float(np.logical_and(pred_membrane, ~gt_membrane).sum())
    fn = float(np.logical_and(~pred_membrane, gt_membrane).sum())
    rand_error, _, _ = adapted_rand_error(cell_labels(gt_membrane), cell_labels(pred_membrane))
    return {
        "dice": 2 * tp / (2 * tp + fp + fn),
        "iou": tp / (tp + fp + fn),
        "pixel_error": float((pred_membrane != gt_membrane).mean()),
        "v_rand": 1.0 - float(rand_error),
    }


def training_speed(run_dir: Path, batch_size: int) -> dict[str, float]:
    """Iterations per minute and images per second of a run, from its metrics.csv.

    The ``seconds`` column is per epoch (training steps plus that epoch's validation), so the
    rates are over the time spent in epochs; set-up and checkpoint writing are excluded.
    """
    path = run_dir / "metrics.csv"
    rows = list(csv.DictReader(path.open())) if path.is_file() else []
    if not rows:
        return {}
    steps = float(rows[-1]["step"])
    seconds = sum(float(r["seconds"]) for r in rows)
    dice = [float(r["val_dice"]) for r in rows if r["val_dice"] not in ("", "nan")]
    return {
        "epochs": len(rows),
        "iterations": steps,
        "epoch_seconds": seconds,
        "iterations_per_minute": 60 * steps / seconds,
        "images_per_second": steps * batch_size / seconds,
        "best_val_dice": max(dice) if dice else float("nan"),
    }


def _calibration_summary(run_dir: Path) -> dict | None:
    """The threshold ``best.pt`` predicts with when calibrated (by training with
    ``infer.threshold: auto`` or by ``--calibrate``), without its curve."""
    from unetkit.runtime.checkpoint import load_checkpoint

    record = load_checkpoint(run_dir / "best.pt").get("calibration")
    return {k: v for k, v in record.items() if k != "curve"} if record else None


def peer_speed(data_dir: Path, seconds: float, batch_size: int, patch: int) -> dict[str, dict]:
    """Training-step speed of MONAI's U-Nets on the same slices (fp32, Adam, Dice + BCE).

    Random crops and flips as the peers used; each network trains for ``seconds`` after two
    warm-up steps. Returns ``{name: {"iterations_per_minute", "images_per_second"}}``.
    """
    import torch
    from monai.losses import DiceCELoss
    from monai.networks.nets import BasicUNet, UNet

    images = np.stack([np.asarray(Image.open(p), dtype=np.float32) / 255.0
                       for p in sorted((data_dir / "images").glob("*.png"))])
    masks = np.stack([np.asarray(Image.open(p)) == 255
                      for p in sorted((data_dir / "masks").glob("*.png"))]).astype(np.float32)
    rng = np.random.default_rng(0)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for _ in range(batch_size):
            i = rng.integers(len(images))
            r, c = rng.integers(0, images.shape[1] - patch + 1, 2)
            x, y = images[i, r:r + patch, c:c + patch], masks[i, r:r + patch, c:c + patch]
            if rng.random() < 0.5:
                x, y = x[:, ::-1], y[:, ::-1]
            xs.append(x.copy())
            ys.append(y.copy())
        return torch.from_numpy(np.stack(xs))[:, None], torch.from_numpy(np.stack(ys))[:, None]

    nets = {
        "monai.UNet(16..256, 2 res units, batch norm)": lambda: UNet(
            2, 1, 1, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2,
            norm="batch"),
        "monai.BasicUNet(32,32,64,128,256,32)": lambda: BasicUNet(2, 1, 1),
    }
    result = {}
    for name, build in nets.items():
        net = build()
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        loss_fn = DiceCELoss(sigmoid=True)
        warmup, steps, started = 2, 0, None
        while started is None or time.perf_counter() - started < seconds:
            x, y = batch()
            loss = loss_fn(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if started is None:
                warmup -= 1
                if warmup == 0:
                    started = time.perf_counter()
            else:
                steps += 1
        elapsed = time.perf_counter() - started
        result[name] = {"iterations_per_minute": 60 * steps / elapsed,
                        "images_per_second": steps * batch_size / elapsed, "steps": steps}
        print(f"peer {name}: {result[name]}", flush=True)
    return result


def profile_step(data_dir: Path, config_path: Path, steps: int, overrides: list[str]) -> dict:
    """Milliseconds per phase of ``steps`` training steps (after 2 warm-up steps) as unetkit
    builds them from the config: patch sampling, augmentation, forward, loss, backward, optimizer
    (with gradient clipping). Single process, no time budget, no validation."""
    import torch

    from unetkit.config import build_config
    from unetkit.runtime.checkpoint import build_model_from_config
    from unetkit.runtime.device import (
        autocast,
        model_to_memory_format,
        resolve_precision,
        to_memory_format,
    )
    from unetkit.runtime.distributed import DistInfo
    from unetkit.train import builders
    from unetkit.train.data import prepare_data

    config = build_config(config_path, {}, overrides)
    data = prepare_data(config, data_dir, check=False)
    config = builders.resolve_model_config(config, data)
    device = torch.device("cpu")
    plan = resolve_precision(config.train.precision, config.train.channels_last, device)
    model = build_model_from_config(config)
    model_to_memory_format(model, plan, config.model.spatial_dims)
    optimizer, loss_fn = builders.build_optimizer(config, model), builders.build_loss_fn(config)
    sampler = builders.build_sampler(config, data, DistInfo())
    sampler.batches_per_epoch = None  # endless
    augmenter, generator = builders.build_augmenter(config), torch.Generator().manual_seed(0)
    phases = dict.fromkeys(("sampling", "augmentation", "forward", "loss", "backward",
                            "optimizer"), 0.0)
    stream = iter(sampler)
    for index in range(steps + 2):
        marks = [time.perf_counter()]
        image, mask = next(stream)
        marks.append(time.perf_counter())
        if augmenter is not None:
            image, mask = augmenter(image, mask, generator)
        image = to_memory_format(image, plan)
        marks.append(time.perf_counter())
        with autocast(plan, device):
            output = model(image)
        output = output.float()
        marks.append(time.perf_counter())
        loss = loss_fn(output, mask)
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        marks.append(time.perf_counter())
        if config.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()
        marks.append(time.perf_counter())
        if index >= 2:
            for name, start, end in zip(phases, marks, marks[1:], strict=False):
                phases[name] += end - start
    result = {name: 1000 * seconds / steps for name, seconds in phases.items()}
    result["total"] = sum(result.values())
    result["images_per_second"] = 1000 * config.data.batch_size / result["total"]
    result["precision"] = plan.name
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="folder with images/ and masks/ (0/255 PNGs)")
    parser.add_argument("--config", type=Path, default=Path("configs/isbi2012.yaml"),
                        help="config file, or 'none' for a zero-config (planned) run")
    parser.add_argument("--time", default="8m", help="training budget, e.g. 8m")
    parser.add_argument("--heldout", default="15-19", help="held-out slice indices: 15-19 or 3,7")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench_runs/isbi2012"))
    parser.add_argument("--set", action="append", default=[], help="config override, repeatable")
    parser.add_argument("--predict-set", action="append", default=[],
                        help="infer.* override for predict only, repeatable")
    parser.add_argument("--skip-train", action="store_true",
                        help="re-predict and re-score the run already in --out")
    parser.add_argument("--calibrate", type=float, default=None, metavar="BETA",
                        help="before predicting, calibrate best.pt's threshold on the training "
                        "slices for this F-beta (unetkit calibrate); with --skip-train re-scores "
                        "an old run")
    parser.add_argument("--peers", type=float, default=0.0,
                        help="also time MONAI's U-Nets for this many seconds each (0: no)")
    parser.add_argument("--profile", type=int, default=0,
                        help="only time the phases of this many training steps and exit")
    parser.add_argument("--json", type=Path, default=None, help="where to write the results JSON")
    args = parser.parse_args()
    if args.profile:
        timings = profile_step(args.data_dir, args.config, args.profile, args.set)
        print(json.dumps(timings, indent=2))
        return

    work = args.out
    heldout = parse_slices(args.heldout)
    train_dir, heldout_images, held_names = make_split(args.data_dir, work, heldout)
    run_dir, pred_dir = work / "run", work / "pred"
    unetkit = [sys.executable, "-m", "unetkit"]
    overrides = [item for value in args.set for item in ("--set", value)]
    train_seconds = None
    # --config none: no config file, the planner decides (the zero-config user command)
    config_args = [] if str(args.config) == "none" else ["--config", str(args.config)]
    if not args.skip_train:
        train_seconds = run(
            [*unetkit, "train", "--data", str(train_dir), *config_args,
             "--time", args.time, "--out", str(run_dir), "--seed", str(args.seed), *overrides]
        )
    if args.calibrate is not None:  # (re-)choose best.pt's threshold on the training slices
        run([*unetkit, "calibrate", str(run_dir / "best.pt"), "--data", str(train_dir),
             "--beta", str(args.calibrate), "--max-images", "20"])
    predict_overrides = [item for value in args.predict_set for item in ("--set", value)]
    predict_seconds = run([*unetkit, "predict", str(run_dir / "best.pt"), str(heldout_images),
                           "-o", str(pred_dir), "--quiet", "--force",  # --skip-train reruns
                           *predict_overrides])

    per_image = {}
    for name in held_names:
        pred = np.asarray(Image.open(pred_dir / name)) == 255
        gt = np.asarray(Image.open(args.data_dir / "masks" / name)) == 255
        per_image[name] = score_slice(pred, gt)
    keys = next(iter(per_image.values()))
    mean = {k: float(np.mean([s[k] for s in per_image.values()])) for k in keys}

    import yaml

    trained = yaml.safe_load((run_dir / "config.yaml").read_text())
    batch_size, patch = trained["data"]["batch_size"], trained["data"]["patch_size"]
    result = {
        "config": str(args.config), "time_budget": args.time, "heldout": held_names,
        "seed": args.seed, "overrides": args.set, "predict_overrides": args.predict_set,
        "train_wall_seconds": train_seconds, "predict_wall_seconds": predict_seconds,
        "batch_size": batch_size, "patch_size": patch,
        "speed": training_speed(run_dir, batch_size), "per_image": per_image, "mean": mean,
        "calibration": _calibration_summary(run_dir),
    }
    if args.peers > 0:
        result["peers"] = peer_speed(args.data_dir, args.peers, batch_size, patch[0])
    print("\n| image | Dice | IoU | pixel error | V_rand |\n|---|---|---|---|---|")
    for name, s in [*per_image.items(), ("mean", mean)]:
        print(f"| {name} | {s['dice']:.4f} | {s['iou']:.4f} | {s['pixel_error']:.4f} "
              f"| {s['v_rand']:.4f} |")
    print("speed:", result["speed"])
    if result["calibration"]:
        print("calibrated threshold:", result["calibration"])
    json_path = args.json or work / "result.json"
    json_path.write_text(json.dumps(result, indent=2))
    print(f"results written to {json_path}")


if __name__ == "__main__":
    main()
