"""Sparse labels on ISBI 2012: strokes of both classes labelled, the rest ignored, against the
fully labelled model at the same budget.

For every training slice a seeded set of strokes is drawn: random walks one pixel wide that stay
inside one class (membrane or cell interior, as a user scribbles along a membrane and across a
cell), ``--strokes`` per class and slice, ``--length`` pixels each. Stroke pixels keep their
label, every other pixel gets the ignore label (2, named ``ignore`` in the folder's
dataset.json: nnU-Net's convention). Both runs are the exact user command (``unetkit train``
with the same config and budget, then ``unetkit predict``); both are scored on the held-out
slices against their full masks (membrane Dice, IoU, pixel error, V_rand as
``benchmarks/isbi2012.py`` scores them).

Usage (the lead's quiet-machine run; two 8-minute trainings):
    python benchmarks/sparse_isbi.py /work/shared/data/isbi2012/train --time 8m \
        --config configs/isbi2012.yaml --heldout 15-19 --out /tmp/unetkit_sparse_isbi
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import UNETKIT, _link, cpu_name, run, write_json  # noqa: E402
from isbi2012 import parse_slices, score_slice  # noqa: E402
from unetkit.data.io import read_mask, write_mask  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
IGNORE = 2  # the mask value of unlabelled pixels in the sparse folder
TURN = 0.15  # std of a stroke's drift per step, radians
TURNS = [0.0] + [sign * k * 0.3 for k in range(1, 6) for sign in (1, -1)]  # tried in order


def stroke(mask: np.ndarray, label: int, length: int, rng: np.random.Generator
           ) -> list[tuple[int, int]]:
    """A random walk of up to ``length`` pixels that stays on pixels of ``label``: it drifts
    by ``TURN`` per step and, where the class ends ahead, turns by the smallest angle that
    keeps it inside (so it follows a membrane's curve)."""
    where = np.argwhere(mask == label)
    if len(where) == 0:
        return []
    y, x = (float(v) for v in where[rng.integers(len(where))])
    angle = rng.uniform(0, 2 * np.pi)
    path = [(int(y), int(x))]
    while len(path) < length:
        angle += rng.normal(0, TURN)
        for turn in TURNS:
            ny, nx = y + np.sin(angle + turn), x + np.cos(angle + turn)
            iy, ix = int(round(ny)), int(round(nx))
            inside = 0 <= iy < mask.shape[0] and 0 <= ix < mask.shape[1]
            if inside and mask[iy, ix] == label and (iy, ix) not in path[-3:-1]:
                y, x, angle = ny, nx, angle + turn
                break
        else:
            break
        if (iy, ix) != path[-1]:
            path.append((iy, ix))
    return path


def sparse_mask(mask: np.ndarray, strokes: int, length: int, seed: int) -> np.ndarray:
    """``mask`` (0/1) with only ``strokes`` strokes per class kept, ``IGNORE`` elsewhere."""
    rng = np.random.default_rng(seed)
    out = np.full(mask.shape, IGNORE, np.uint8)
    for label in (0, 1):
        for _ in range(strokes):
            for y, x in stroke(mask, label, length, rng):
                out[y, x] = label
    return out


def make_folders(data_dir: Path, work: Path, heldout: list[int], strokes: int, length: int,
                 seed: int) -> tuple[Path, Path, Path, list[str], dict]:
    """``work/full`` (links), ``work/sparse`` (sparse masks + dataset.json), the held-out
    images, their names and the labelled fractions."""
    images = sorted((data_dir / "images").glob("*.png"))
    held = [images[i].name for i in heldout]
    for name in ("full", "sparse", "heldout"):
        shutil.rmtree(work / name, ignore_errors=True)
    labelled = {}
    for index, image in enumerate(images):
        if image.name in held:
            _link(image, work / "heldout" / "images" / image.name)
            continue
        mask_path = data_dir / "masks" / image.name
        _link(image, work / "full" / "images" / image.name)
        _link(mask_path, work / "full" / "masks" / image.name)
        _link(image, work / "sparse" / "images" / image.name)
        mask, geometry = read_mask(mask_path)
        sparse = sparse_mask((mask > 0).astype(np.uint8), strokes, length, seed * 1000 + index)
        write_mask(work / "sparse" / "masks" / image.name, sparse, geometry)
        labelled[image.name] = {"labelled": float((sparse != IGNORE).mean()),
                                "membrane": float((sparse == 1).mean()),
                                "background": float((sparse == 0).mean())}
    (work / "sparse" / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "EM"}, "file_ending": ".png",
        "labels": {"background": 0, "membrane": 1, "ignore": IGNORE}}, indent=2))
    return work / "full", work / "sparse", work / "heldout" / "images", held, labelled


def train_and_score(data: Path, name: str, work: Path, args: argparse.Namespace,
                    heldout: Path, held: list[str]) -> dict:
    """Train ``name`` on ``data``, predict the held-out slices, score them."""
    run_dir, pred = work / f"{name}_run", work / f"{name}_pred"
    for folder in (run_dir, pred):
        shutil.rmtree(folder, ignore_errors=True)
    config = [] if str(args.config) == "none" else ["--config", str(args.config)]
    seconds = run([*UNETKIT, "train", "--data", str(data), *config, "--time", args.time,
                   "--out", str(run_dir), "--seed", str(args.seed), "--quiet"],
                  work / "logs" / f"{name}_train.log")
    run([*UNETKIT, "predict", str(run_dir / "best.pt"), str(heldout), "-o", str(pred),
         "--quiet"], work / "logs" / f"{name}_predict.log")
    per_image = {}
    for image in held:
        predicted, _ = read_mask(pred / image)
        truth, _ = read_mask(args.data_dir / "masks" / image)
        per_image[image] = score_slice(predicted > 0, truth > 0)
    mean = {k: float(np.mean([s[k] for s in per_image.values()]))
            for k in next(iter(per_image.values()))}
    return {"train_wall_seconds": seconds, "per_image": per_image, "mean": mean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="ISBI folder with images/ and masks/")
    parser.add_argument("--config", type=Path, default=Path("configs/isbi2012.yaml"),
                        help="config of both runs, or 'none' for planned runs")
    parser.add_argument("--time", default="8m", help="training budget of each run")
    parser.add_argument("--heldout", default="15-19", help="held-out slices: 15-19 or 3,7")
    parser.add_argument("--strokes", type=int, default=20, help="strokes per class and slice")
    parser.add_argument("--length", type=int, default=60, help="pixels per stroke (at most)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/unetkit_sparse_isbi"))
    parser.add_argument("--json", type=Path, default=RESULTS / "sparse_isbi.json")
    args = parser.parse_args()

    work = args.out.resolve()
    full, sparse, heldout, held, labelled = make_folders(
        args.data_dir, work, parse_slices(args.heldout), args.strokes, args.length, args.seed)
    result = {
        "data": str(args.data_dir), "cpu": cpu_name(), "config": str(args.config),
        "time_budget": args.time, "seed": args.seed, "heldout": held,
        "strokes_per_class": args.strokes, "stroke_length": args.length,
        "labelled_fraction": float(np.mean([v["labelled"] for v in labelled.values()])),
        "labelled_per_image": labelled,
        "full": train_and_score(full, "full", work, args, heldout, held),
        "sparse": train_and_score(sparse, "sparse", work, args, heldout, held),
    }
    result["dice_ratio"] = result["sparse"]["mean"]["dice"] / result["full"]["mean"]["dice"]
    write_json(args.json, result)
    print(f"labelled: {100 * result['labelled_fraction']:.2f}% of the training pixels")
    print("| masks | Dice | IoU | pixel error | V_rand |\n|---|---|---|---|---|")
    for name in ("full", "sparse"):
        s = result[name]["mean"]
        print(f"| {name} | {s['dice']:.4f} | {s['iou']:.4f} | {s['pixel_error']:.4f} "
              f"| {s['v_rand']:.4f} |")
    print(f"sparse / full Dice: {result['dice_ratio']:.3f}; results written to {args.json}")


if __name__ == "__main__":
    main()
