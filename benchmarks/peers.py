"""unetkit and nnU-Net v2 side by side: same split, same time budget, same scoring.

    python benchmarks/peers.py ../shared/data/hippocampus --time 15m --holdout every:5:4 \\
        --nnunet-python /work/nnunet_venv/bin/python [--peers unetkit,nnunet] [--work /tmp/peers]

The data folder is an nnU-Net raw data set (``imagesTr/``, ``labelsTr/``, ``dataset.json``).
``--holdout`` picks the test cases (``every:5:4``: every fifth case from the fourth on; the others
train). Both tools train on the same training cases for the same wall-clock budget and predict
the same test cases; the scores come from ``unetkit.metrics`` for both.

* unetkit: exactly ``unetkit train --data TRAIN --time T --out RUN`` (no config: the planner
  decides) and ``unetkit predict RUN/best.pt TEST/imagesTr -o PRED``. Its budget includes its
  own planning and data loading.
* nnU-Net v2 (installed in its own virtual environment, ``pip install nnunetv2``): its default
  recipe (``nnUNetv2_plan_and_preprocess``, then ``nnUNetv2_train DATASET CONFIG all``, then
  ``nnUNetv2_predict`` with its default mirroring) with one change, the schedule: a trainer
  subclass (``nnUNetTrainer_UnetkitBudget``, written into the nnU-Net environment by this
  script) runs 50 iterations per epoch instead of 250 and re-plans the number of epochs after
  every epoch from the measured epoch time, so that its poly schedule ends when the training
  budget does. Planning/preprocessing and the final validation are not counted in its budget
  (the validation is switched off: the test split is scored here).

Writes ``benchmarks/results/peers_<dataset>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import UNETKIT, cpu_name, dice_scores, make_split, run, write_json  # noqa: E402
from unetkit.config import parse_duration  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRAINER = "nnUNetTrainer_UnetkitBudget"
TRAINER_SOURCE = '''
import time

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class {name}(nnUNetTrainer):
    """nnU-Net's default trainer, its schedule fitted to a wall-clock budget (unetkit's
    benchmarks/peers.py): 50 iterations per epoch, epochs re-planned after every epoch."""

    budget_s = {budget_s}

    def __init__(self, plans, configuration, fold, dataset_json,
                 device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_iterations_per_epoch = 50
        self.num_val_iterations_per_epoch = 5
        self.num_epochs = 1000

    def run_training(self):
        started = time.monotonic()
        self.on_train_start()
        epoch = self.current_epoch
        while epoch < self.num_epochs:
            self.on_epoch_start()
            self.on_train_epoch_start()
            outputs = [self.train_step(next(self.dataloader_train))
                       for _ in range(self.num_iterations_per_epoch)]
            self.on_train_epoch_end(outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                outputs = [self.validation_step(next(self.dataloader_val))
                           for _ in range(self.num_val_iterations_per_epoch)]
                self.on_validation_epoch_end(outputs)
            self.on_epoch_end()
            epoch += 1
            per_epoch = (time.monotonic() - started) / epoch
            self.num_epochs = max(epoch, min(1000, int(self.budget_s / per_epoch)))
            self.lr_scheduler.max_steps = self.num_epochs
        self.on_train_end()

    def perform_actual_validation(self, save_probabilities: bool = False):
        pass  # the benchmark scores its own held-out cases
'''


def run_unetkit(train: Path, test: Path, test_ids: list[str], labels: list[int], budget: str,
                work: Path, overrides: list[str] = (), name: str = "unetkit") -> dict:
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    options = [a for item in overrides for a in ("--set", item)]
    train_s = run([*UNETKIT, "train", "--data", str(train), "--time", budget, "--out",
                   str(out / "run"), "-q", *options], out / "train.log")
    predict_s = run([*UNETKIT, "predict", str(out / "run" / "best.pt"), str(test / "imagesTr"),
                     "-o", str(out / "pred"), "-q"], out / "predict.log")
    rows = (out / "run" / "metrics.csv").read_text().splitlines()[1:]
    steps = int(rows[-1].split(",")[1]) if rows else 0
    scores = dice_scores(out / "pred", test / "labelsTr", test_ids, labels)
    return {"train_s": train_s, "predict_s": predict_s, "steps": steps, "scores": scores}


def _nnunet_env(work: Path) -> dict:
    env = dict(os.environ)
    for name in ("raw", "preprocessed", "results"):
        (work / name).mkdir(parents=True, exist_ok=True)
    env.update(nnUNet_raw=str(work / "raw"), nnUNet_preprocessed=str(work / "preprocessed"),
               nnUNet_results=str(work / "results"), nnUNet_n_proc_DA="2",
               nnUNet_compile="false")
    return env


def run_nnunet(python: str, train: Path, test: Path, test_ids: list[str], labels: list[int],
               budget: str, work: Path, dataset_id: int = 500) -> dict:
    out = work / "nnunet"
    shutil.rmtree(out, ignore_errors=True)
    env = _nnunet_env(out)
    meta = json.loads((train / "dataset.json").read_text())
    name = f"Dataset{dataset_id}_{meta.get('name', 'Data').replace(' ', '')}"
    raw = out / "raw" / name
    shutil.copytree(train, raw, symlinks=True)
    meta["numTraining"] = len(list((train / "labelsTr").iterdir()))
    (raw / "dataset.json").unlink()
    (raw / "dataset.json").write_text(json.dumps(meta, indent=2))
    site = subprocess.run([python, "-c", "import nnunetv2, os; print(os.path.dirname("
                           "nnunetv2.__file__))"], capture_output=True, text=True, check=True)
    variants = Path(site.stdout.strip()) / "training" / "nnUNetTrainer" / "variants"
    (variants / "unetkit_budget.py").write_text(TRAINER_SOURCE.format(
        name=TRAINER, budget_s=parse_duration(budget)))
    bin_dir = Path(python).parent
    dims = 3 if "nii" in meta.get("file_ending", ".nii.gz") else 2
    configuration = "3d_fullres" if dims == 3 else "2d"

    def call(args: list[str], log: str) -> float:
        started = time.monotonic()
        with (out / log).open("w") as handle:
            done = subprocess.run(args, env=env, stdout=handle, stderr=subprocess.STDOUT)
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed; see {out / log}")
        return time.monotonic() - started

    plan_s = call([str(bin_dir / "nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c",
                   configuration, "-np", "2"], "plan.log")
    train_s = call([str(bin_dir / "nnUNetv2_train"), str(dataset_id), configuration, "all",
                    "-tr", TRAINER, "-device", "cpu"], "train.log")
    predict_s = call([str(bin_dir / "nnUNetv2_predict"), "-i", str(test / "imagesTr"), "-o",
                      str(out / "pred"), "-d", str(dataset_id), "-c", configuration, "-f", "all",
                      "-tr", TRAINER, "-chk", "checkpoint_final.pth", "-device", "cpu",
                      "-npp", "1", "-nps", "1"], "predict.log")
    epochs = sum(1 for line in (out / "train.log").read_text().splitlines()
                 if re.search(r"(^|: )Epoch \d+$", line.strip()))
    scores = dice_scores(out / "pred", test / "labelsTr", test_ids, labels)
    return {"plan_s": plan_s, "train_s": train_s, "predict_s": predict_s,
            "steps": 50 * epochs, "scores": scores}


def summarise(result: dict, labels: list[int]) -> dict[int, float]:
    return {label: float(np.nanmean([s[label] for s in result["scores"].values()]))
            for label in labels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--time", default="15m")
    parser.add_argument("--holdout", default="every:5:4")
    parser.add_argument("--peers", default="unetkit,nnunet")
    parser.add_argument("--nnunet-python", default="/work/nnunet_venv/bin/python")
    parser.add_argument("--work", type=Path, default=Path("/tmp/unetkit_peers"))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="unetkit: section.field=value on top of its plan (experiments)")
    parser.add_argument("--name", default=None, help="result name (default: the data folder's)")
    args = parser.parse_args()
    train, test, test_ids = make_split(args.data, args.work / "split", args.holdout)
    meta = json.loads((args.data / "dataset.json").read_text())
    names = {int(v): k for k, v in meta["labels"].items()}
    labels = sorted(v for v in names if v != 0)
    results = {}
    for peer in args.peers.split(","):
        if peer == "unetkit":
            results[peer] = run_unetkit(train, test, test_ids, labels, args.time, args.work,
                                        args.overrides, args.name or "unetkit")
        elif peer == "nnunet":
            results[peer] = run_nnunet(args.nnunet_python, train, test, test_ids, labels,
                                       args.time, args.work)
        means = summarise(results[peer], labels)
        print(f"{peer}: " + ", ".join(f"{names[k]} {v:.4f}" for k, v in means.items())
              + f", mean {np.mean(list(means.values())):.4f}, {results[peer]['steps']} steps, "
              f"train {results[peer]['train_s']:.0f} s", flush=True)
    record = {"data": str(args.data), "time": args.time, "holdout": args.holdout,
              "test_cases": len(test_ids), "machine": cpu_name(), "labels": names,
              "overrides": args.overrides,
              "results": {p: {**r, "mean_dice": summarise(r, labels)} for p, r in results.items()}}
    name = args.name or args.data.name
    write_json(ROOT / "benchmarks" / "results" / f"peers_{name}.json", record)


if __name__ == "__main__":
    main()
