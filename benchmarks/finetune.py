"""Fine-tuning against training from scratch, at equal time, on a small labelled set.

A network is pre-trained on the cases of an nnU-Net data set with every foreground label merged
into one (hippocampus: anterior + posterior -> hippocampus), then fine-tuned with ``unetkit
train --init`` on ``--cases`` other cases with their own labels; a network trained from scratch
on the same cases gets the same budget. Both predict the same held-out cases, scored per label
with unetkit's Dice. The user commands run as a user types them (planned runs, no config).

Usage (the lead's quiet-machine run; about 10 + 5 + 5 minutes of training):
    python benchmarks/finetune.py /work/shared/data/hippocampus --pretrain-time 10m --time 5m \
        --cases 20 --test every:10:9 --out /tmp/unetkit_finetune

``--pretrain-set KEY=VALUE`` (repeatable) is a ``--set`` of the pre-training only: the
fine-tuned run keeps the pre-trained network, so ``--pretrain-set model.spatial_dims=2``
compares fine-tuning and training from scratch on the same network family when the small set's
plan is 2D.

The pre-training, fine-tuning and test folders are symlink/NIfTI folders under ``--out``
(outside the repository); the merged labels are written there, never next to the data.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import UNETKIT, _link, cpu_name, dice_scores, held_out, run, write_json  # noqa: E402
from unetkit.data.dataset import discover_cases, read_dataset_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def split_cases(data_dir: Path, test_spec: str, cases: int, seed: int
                ) -> tuple[list, list, list]:
    """``(pre-training cases, fine-tuning cases, test cases)``: the test cases by
    ``test_spec`` (``common.held_out``), ``cases`` others drawn with ``seed`` to fine-tune on,
    and every remaining case to pre-train on."""
    all_cases = discover_cases(data_dir)
    test_ids = set(held_out([c.case_id for c in all_cases], test_spec))
    rest = [c for c in all_cases if c.case_id not in test_ids]
    order = np.random.default_rng(seed).permutation(len(rest))
    tune = [rest[i] for i in sorted(order[:cases])]
    tune_ids = {c.case_id for c in tune}
    return ([c for c in rest if c.case_id not in tune_ids], tune,
            [c for c in all_cases if c.case_id in test_ids])


def write_folder(folder: Path, cases: list, labels: dict[int, str], merge: bool) -> Path:
    """An nnU-Net folder of ``cases``: images linked; masks linked, or with every foreground
    label written as 1 (``merge``) next to a dataset.json that says so."""
    from unetkit.data.io import read_mask, write_mask

    shutil.rmtree(folder, ignore_errors=True)
    for case in cases:
        for path in case.image_paths:
            _link(path, folder / "imagesTr" / path.name)
        target = folder / "labelsTr" / case.mask_path.name
        if merge:
            mask, geometry = read_mask(case.mask_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_mask(target, (mask > 0).astype(np.uint8), geometry)
        else:
            _link(case.mask_path, target)
    names = {0: labels.get(0, "background"), 1: "foreground"} if merge else labels
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "image"}, "file_ending": ".nii.gz",
        "labels": {name: value for value, name in names.items()}}, indent=2))
    return folder


def train(data: Path, run_dir: Path, budget: str, seed: int, extra: list[str], log: Path
          ) -> float:
    """``unetkit train`` as a user types it; its wall seconds."""
    shutil.rmtree(run_dir, ignore_errors=True)
    return run([*UNETKIT, "train", "--data", str(data), "--time", budget, "--out", str(run_dir),
                "--seed", str(seed), "--quiet", *extra], log)


def score(run_dir: Path, test_dir: Path, truth_dir: Path, ids: list[str], labels: list[int],
          log: Path) -> dict:
    """Predict the test images with ``best.pt``; per-case and mean Dice per label."""
    pred = run_dir.parent / f"{run_dir.name}_pred"
    shutil.rmtree(pred, ignore_errors=True)
    run([*UNETKIT, "predict", str(run_dir / "best.pt"), str(test_dir / "imagesTr"), "-o",
         str(pred), "--quiet"], log)
    per_case = dice_scores(pred, truth_dir, ids, labels)
    mean = {str(label): float(np.nanmean([per_case[c][label] for c in ids])) for label in labels}
    return {"mean_dice": mean, "mean_over_labels": float(np.mean(list(mean.values()))),
            "per_case": per_case}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="nnU-Net folder (imagesTr, labelsTr, "
                        "dataset.json), e.g. /work/shared/data/hippocampus")
    parser.add_argument("--pretrain-time", default="10m", help="pre-training budget")
    parser.add_argument("--time", default="5m", help="fine-tuning = from-scratch budget")
    parser.add_argument("--cases", type=int, default=20, help="cases to fine-tune on")
    parser.add_argument("--test", default="every:10:9", help="held-out cases (common.held_out)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/unetkit_finetune"),
                        help="work folder (outside the repository)")
    parser.add_argument("--json", type=Path, default=RESULTS / "finetune_hippocampus.json")
    parser.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE",
                        help="--set for the pre-training only (repeatable), e.g. "
                        "model.spatial_dims=2 to pre-train the network family the small set "
                        "is planned with")
    args = parser.parse_args()

    work = args.out.resolve()
    labels_by_value, _ = read_dataset_json(args.data_dir)
    labels = sorted(v for v in (labels_by_value or {}) if v != 0)
    pre, tune, test = split_cases(args.data_dir, args.test, args.cases, args.seed)
    pre_dir = write_folder(work / "pretrain", pre, labels_by_value or {}, merge=True)
    tune_dir = write_folder(work / "finetune", tune, labels_by_value or {}, merge=False)
    test_dir = write_folder(work / "test", test, labels_by_value or {}, merge=False)
    test_ids = [c.case_id for c in test]
    logs = work / "logs"
    pre_options = [a for item in args.pretrain_set for a in ("--set", item)]
    seconds = {"pretrain": train(pre_dir, work / "pretrain_run", args.pretrain_time, args.seed,
                                 pre_options, logs / "pretrain.log")}
    seconds["finetune"] = train(tune_dir, work / "finetune_run", args.time, args.seed,
                                ["--init", str(work / "pretrain_run")], logs / "finetune.log")
    seconds["scratch"] = train(tune_dir, work / "scratch_run", args.time, args.seed, [],
                               logs / "scratch.log")
    truth = test_dir / "labelsTr"
    result = {
        "data": str(args.data_dir), "cpu": cpu_name(), "seed": args.seed,
        "pretrain_time": args.pretrain_time, "time": args.time,
        "pretrain_set": args.pretrain_set,
        "cases": {"pretrain": len(pre), "finetune": len(tune), "test": len(test)},
        "test_ids": test_ids, "train_wall_seconds": seconds,
        "init": {k: v for k, v in json.loads((work / "finetune_run" / "init.json").read_text())
                 .items() if k != "layers"},
        "finetune": score(work / "finetune_run", test_dir, truth, test_ids, labels,
                          logs / "predict_finetune.log"),
        "scratch": score(work / "scratch_run", test_dir, truth, test_ids, labels,
                         logs / "predict_scratch.log"),
    }
    write_json(args.json, result)
    print("| model | " + " | ".join(f"Dice {label}" for label in labels) + " | mean |")
    print("|---|" + "---|" * (len(labels) + 1))
    for name in ("finetune", "scratch"):
        means = result[name]["mean_dice"]
        print(f"| {name} | " + " | ".join(f"{means[str(label)]:.4f}" for label in labels)
              + f" | {result[name]['mean_over_labels']:.4f} |")
    print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
