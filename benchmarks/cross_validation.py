"""Cross-validation and its fold ensemble against one model, each within the same budget.

    python benchmarks/cross_validation.py /work/shared/data/hippocampus --time 15m --folds 5 \\
        --holdout every:5:4 [--work /tmp/unetkit_cv] [--name cv_hippocampus]

1. ``--holdout`` splits off the test cases (``every:5:4``: every fifth from the fourth on, as
   ``benchmarks/peers.py``); the others train, as symlinks in the data set's own layout;
2. exactly ``unetkit train --data TRAIN --time T --cross-validate K --out CV`` (planned once,
   all K folds inside T), then ``unetkit predict CV TEST -o PRED``: the fold ensemble;
3. exactly ``unetkit train --data TRAIN --time T --out SINGLE`` and ``unetkit predict
   SINGLE/best.pt TEST -o PRED``: one model trained for the whole budget;
4. both scored on the test cases with ``unetkit.metrics`` (Dice per foreground label, mean over
   cases), next to the cross-validation Dice of ``CV/cross_validation.json`` (pooled over the
   out-of-fold training cases).

Writes ``benchmarks/results/<name>.json`` (``--results`` elsewhere) and prints the table; the
winner is the higher mean held-out Dice.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import UNETKIT, cpu_name, dice_scores, make_split, run, write_json  # noqa: E402
from unetkit.data.dataset import find_layout  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def held_out_dice(pred: Path, test: Path, test_ids: list[str], labels: list[int]) -> dict:
    """Mean Dice per label over the test cases, and their mean."""
    scores = dice_scores(pred, find_layout(test)[1], test_ids, labels)
    per_label = {label: float(np.nanmean([s[label] for s in scores.values()]))
                 for label in labels}
    return {"mean_dice": float(np.mean(list(per_label.values()))), "per_class": per_label,
            "per_case": scores}


def run_both(train: Path, test: Path, test_ids: list[str], budget: str, folds: int,
             work: Path, overrides: list[str]) -> dict:
    """Train and predict both ways; the scores and the seconds of each command."""
    options = [a for item in overrides for a in ("--set", item)]
    images = find_layout(test)[0]
    for name in ("cv", "single"):
        shutil.rmtree(work / name, ignore_errors=True)
    cv_s = run([*UNETKIT, "train", "--data", str(train), "--time", budget, "--cross-validate",
                str(folds), "--out", str(work / "cv" / "run"), "-q", *options],
               work / "cv" / "train.log")
    ensemble_s = run([*UNETKIT, "predict", str(work / "cv" / "run"), str(images), "-o",
                      str(work / "cv" / "pred"), "-q"], work / "cv" / "predict.log")
    single_s = run([*UNETKIT, "train", "--data", str(train), "--time", budget, "--out",
                    str(work / "single" / "run"), "-q", *options], work / "single" / "train.log")
    predict_s = run([*UNETKIT, "predict", str(work / "single" / "run" / "best.pt"), str(images),
                     "-o", str(work / "single" / "pred"), "-q"], work / "single" / "predict.log")
    summary = json.loads((work / "cv" / "run" / "cross_validation.json").read_text())
    labels = [int(k) for k in summary["labels"]]
    ensemble = held_out_dice(work / "cv" / "pred", test, test_ids, labels)
    single = held_out_dice(work / "single" / "pred", test, test_ids, labels)
    return {
        "labels": summary["labels"],
        "cross_validation": {"mean_dice": summary["mean_dice"],
                             "per_class": summary["per_class"],
                             "per_fold": [f["mean_dice"] for f in summary["per_fold"]],
                             "postprocessing": summary["postprocessing"]["reason"],
                             "cases": len(summary["per_case"]), "train_s": cv_s},
        "ensemble": {**ensemble, "train_s": cv_s, "predict_s": ensemble_s},
        "single": {**single, "train_s": single_s, "predict_s": predict_s},
        "winner": "ensemble" if ensemble["mean_dice"] > single["mean_dice"] else "single",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--time", default="15m", help="the budget of each side")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--holdout", default="every:5:4")
    parser.add_argument("--work", type=Path, default=Path("/tmp/unetkit_cv"))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="section.field=value for both runs (experiments)")
    parser.add_argument("--name", default=None, help="result name (default cv_<data folder>)")
    parser.add_argument("--results", type=Path, default=None,
                        help="result file (default benchmarks/results/<name>.json)")
    args = parser.parse_args()
    train, test, test_ids = make_split(args.data, args.work / "split", args.holdout)
    record = run_both(train, test, test_ids, args.time, args.folds, args.work, args.overrides)
    names = record["labels"]
    for side in ("ensemble", "single"):
        result = record[side]
        print(f"{side}: held-out Dice " + ", ".join(
            f"{names[str(k)]} {v:.4f}" for k, v in result["per_class"].items())
            + f", mean {result['mean_dice']:.4f} (train {result['train_s']:.0f} s)", flush=True)
    cv = record["cross_validation"]
    print(f"cross-validation Dice {cv['mean_dice']:.4f} over {cv['cases']} training cases; "
          f"folds {', '.join(f'{d:.4f}' for d in cv['per_fold'] if d is not None)}")
    print(f"winner on the {len(test_ids)} held-out cases: {record['winner']}")
    name = args.name or f"cv_{args.data.name}"
    write_json(args.results or ROOT / "benchmarks" / "results" / f"{name}.json",
               {"data": str(args.data), "time": args.time, "folds": args.folds,
                "holdout": args.holdout, "test_cases": len(test_ids), "machine": cpu_name(),
                "overrides": args.overrides, **record})


if __name__ == "__main__":
    main()
