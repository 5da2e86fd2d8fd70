"""DRIVE retinal vessels: train under a CPU budget on 16 images, score the 4 held-out ones inside
their field of view, per image and pooled (the published protocol), beside the published table.

    python benchmarks/drive.py ../shared/data/drive/train --time 15m --folds 0 [--folds 0,1,2,3,4]

The 20 training images (ids 21..40) are split into 5 folds of 4 consecutive ids; fold ``k``
holds out ids ``21+4k .. 24+4k`` and trains on the other 16. Each fold runs the exact user
commands: ``unetkit train --data TRAIN --time T --out RUN`` (no config: the planner decides) and
``unetkit predict RUN/best.pt TEST/images -o PRED --save-probabilities``. Scores (from the
probability maps and the written 0/255 masks, inside ``fov/``): ROC AUC, PR AUC, accuracy,
sensitivity, specificity, precision, F1. Writes ``benchmarks/results/NAME.json`` (``--name``,
default ``drive``); ``--rescore`` scores the predictions of an earlier run in ``--work`` again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import UNETKIT, cpu_name, make_split, run, write_json  # noqa: E402
from unetkit.data.io import read_image, read_mask  # noqa: E402
from unetkit.metrics.probability import binary_scores  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = [  # DRIVE test set, pooled inside the FOV, first observer
    ("second human observer", 0.789, None), ("U-Net, orobix/retina-unet (20 GPU-hours)", 0.816,
                                             0.979),
    ("U-Net as reported by R2U-Net", 0.814, None), ("SA-UNet", 0.826, 0.986),
    ("FR-UNet", 0.832, 0.989)]
KEYS = ("f1", "roc_auc", "pr_auc", "accuracy", "sensitivity", "specificity", "precision")


def load_case(pred: Path, data: Path, case: str) -> tuple[np.ndarray, ...]:
    """``(probability, prediction, truth, fov)`` of one held-out image."""
    probability = np.load(pred / "probabilities" / f"{case}.npz")["data"][1]
    prediction = read_mask(pred / f"{case}.png")[0] > 0  # PNG like the training masks
    truth = read_mask(data / "masks" / f"{case}.png")[0] > 0
    fov = read_image(data / "fov" / f"{case}.png")[0][0] > 0
    return probability, prediction, truth, fov


def run_fold(data: Path, fold: int, budget: str, work: Path, overrides: list[str],
             rescore: bool = False) -> dict:
    """Train, predict and score one fold; ``rescore``: score the predictions already in
    ``work`` (an earlier or interrupted run of this script) without training."""
    ids = [str(i) for i in range(21 + 4 * fold, 25 + 4 * fold)]
    test_ids, train_s, predict_s = ids, None, None
    if not rescore:
        train, test, test_ids = make_split(data, work / "split", "ids:" + ",".join(ids))
        options = [a for item in overrides for a in ("--set", item)]
        train_s = run([*UNETKIT, "train", "--data", str(train), "--time", budget, "--out",
                       str(work / "run"), "-q", *options], work / "train.log")
        predict_s = run([*UNETKIT, "predict", str(work / "run" / "best.pt"),
                         str(test / "images"), "-o", str(work / "pred"),
                         "--save-probabilities", "-q"], work / "predict.log")
    cases = [load_case(work / "pred", data, case) for case in test_ids]
    per_image = {case: binary_scores([c[0]], [c[1]], [c[2]], [c[3]])
                 for case, c in zip(test_ids, cases, strict=True)}
    pooled = binary_scores(*(list(x) for x in zip(*cases, strict=True)))
    rows = (work / "run" / "metrics.csv").read_text().splitlines()[1:]
    return {"fold": fold, "test": test_ids, "train_s": train_s, "predict_s": predict_s,
            "steps": int(rows[-1].split(",")[1]) if rows else 0, "per_image": per_image,
            "pooled": pooled, "cases": cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--time", default="15m")
    parser.add_argument("--folds", default="0", help="comma-separated folds 0..4")
    parser.add_argument("--work", type=Path, default=Path("/tmp/unetkit_drive"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--name", default="drive")
    parser.add_argument("--rescore", action="store_true",
                        help="score the predictions already under --work; no training")
    args = parser.parse_args()
    results = [run_fold(args.data, int(f), args.time, args.work / f"fold{f}", args.overrides,
                        args.rescore) for f in args.folds.split(",")]
    pooled = binary_scores(*(list(x) for x in zip(*[c for r in results for c in r["cases"]],
                                                     strict=True)))
    print(f"{'':>26}" + "".join(f"{k:>12}" for k in KEYS))
    for result in results:
        for case, scores in result["per_image"].items():
            print(f"fold {result['fold']} image {case:>12}" + "".join(
                f"{scores[k]:>12.4f}" for k in KEYS))
        print(f"fold {result['fold']} pooled ({result['steps']} steps)".rjust(26) + "".join(
            f"{result['pooled'][k]:>12.4f}" for k in KEYS))
    print("all held-out images pooled".rjust(26) + "".join(f"{pooled[k]:>12.4f}" for k in KEYS))
    for name, f1, auc in PUBLISHED:
        print(f"  published: {name}: F1 {f1:.3f}" + (f", AUC {auc:.3f}" if auc else ""))
    for result in results:
        del result["cases"]
    write_json(ROOT / "benchmarks" / "results" / f"{args.name}.json",
               {"data": str(args.data), "time": args.time, "machine": cpu_name(),
                "overrides": args.overrides, "folds": results, "pooled": pooled,
                "published": PUBLISHED})


if __name__ == "__main__":
    main()
