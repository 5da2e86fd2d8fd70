"""unetkit and nnU-Net v2 side by side: same split, same time budget, same scoring.

    python benchmarks/peers.py ../shared/data/hippocampus --time 15m --holdout every:5:4 \\
        --nnunet-python /work/nnunet_venv/bin/python [--peers unetkit,nnunet] [--work /tmp/peers]
    # nnU-Net on one of its own fixed-length schedules, unetkit on the same wall-clock time:
    python benchmarks/peers.py ../shared/data/hippocampus --holdout every:5:4 \\
        --peers nnunet,unetkit --nnunet-trainer nnUNetTrainer_1epoch --time match

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
  (the validation is switched off: the test split is scored here). A budget far below
  nnU-Net's own schedules (its shortest, ``nnUNetTrainer_1epoch``, is 250 iterations; the
  default 1000 x 250) is not a fair comparison: ``--nnunet-trainer NAME`` runs one of
  nnU-Net's own fixed-length trainers instead, to its end, and ``--time match`` (nnU-Net
  first) gives unetkit the wall-clock time nnU-Net's training took.
  Its steps are counted from its training log (``training_log_*.txt``; ``nnunet_epochs``):
  epochs whose "Epoch time" line was written, times the trainer's iterations per epoch.

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
    benchmarks/peers.py): {iterations} iterations per epoch, epochs re-planned after every
    epoch."""

    budget_s = {budget_s}

    def __init__(self, plans, configuration, fold, dataset_json,
                 device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_iterations_per_epoch = {iterations}
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
# One of nnU-Net's own trainers (its schedule untouched), without the final validation, which
# would predict every training case inside the timed training call.
FIXED_SOURCE = '''
from {module} import {base}


class {name}({base}):
    """nnU-Net's {base} run to its end (unetkit's benchmarks/peers.py); no final validation:
    the benchmark scores its own held-out cases."""

    def perform_actual_validation(self, save_probabilities: bool = False):
        pass
'''
XEPOCHS = "nnunetv2.training.nnUNetTrainer.variants.training_length.nnUNetTrainer_Xepochs"


def run_unetkit(train: Path, test: Path, test_ids: list[str], labels: list[int], budget: str,
                work: Path, overrides: list[str] = (), name: str = "unetkit",
                rescore: bool = False) -> dict:
    """Train, predict the held-out cases and score them; ``rescore``: score the predictions
    already in ``work/name`` (their run's steps from its metrics; no seconds)."""
    out = work / name
    train_s = predict_s = None
    if not rescore:
        shutil.rmtree(out, ignore_errors=True)
        options = [a for item in overrides for a in ("--set", item)]
        train_s = run([*UNETKIT, "train", "--data", str(train), "--time", budget, "--out",
                       str(out / "run"), "-q", *options], out / "train.log")
        predict_s = run([*UNETKIT, "predict", str(out / "run" / "best.pt"),
                         str(test / "imagesTr"), "-o", str(out / "pred"), "-q"],
                        out / "predict.log")
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


# nnU-Net v2 prints each line as "YYYY-MM-DD HH:MM:SS.ffffff: TEXT" (its print_to_log_file; the
# log file adds a space after every part): "Epoch N" when an epoch starts, then
# "Current learning rate: ...", and when it ends "train_loss X", "val_loss X", "Pseudo dice
# [...]", "Epoch time: S s".
NNUNET_LINE = re.compile(r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?: )?(.*?)\s*$")
NNUNET_ITERATIONS = 250  # nnUNetTrainer.num_iterations_per_epoch (its fixed-length variants too)
BUDGET_ITERATIONS = 50  # the budget trainer's (TRAINER_SOURCE)


def nnunet_epochs(log: str) -> list[dict]:
    """The epochs an nnU-Net v2 training log shows as finished, in order:
    ``{"epoch": N, "train_loss": float | None, "seconds": float}``. An epoch that started
    ("Epoch N") but wrote no "Epoch time" line (training stopped inside it) is not counted."""
    done, current = [], None
    for raw in log.splitlines():
        text = NNUNET_LINE.match(raw).group(1)
        if started := re.fullmatch(r"Epoch (\d+)", text):
            current = {"epoch": int(started.group(1)), "train_loss": None}
        elif current is not None and (loss := re.fullmatch(r"train_loss (\S+)", text)):
            current["train_loss"] = float(loss.group(1))
        elif current is not None and (took := re.fullmatch(r"Epoch time: ([\d.]+) s", text)):
            done.append({**current, "seconds": float(took.group(1))})
            current = None
    return done


def _training_log(out: Path) -> str:
    """nnU-Net's own training log (written line by line), else its captured console output."""
    logs = sorted((out / "results").glob("*/*/fold_all/training_log_*.txt"))
    return "".join(p.read_text() for p in logs) if logs else (out / "train.log").read_text()


def write_trainer(variants: Path, trainer: str, budget: str) -> str:
    """Write the trainer class nnU-Net runs into its ``variants`` folder; return its name.
    ``trainer``: ``budget`` (schedule fitted to ``budget``), ``nnUNetTrainer`` or one of its
    fixed-length variants (``nnUNetTrainer_1epoch``, ``nnUNetTrainer_5epochs``, ...)."""
    if trainer == "budget":
        (variants / "unetkit_budget.py").write_text(TRAINER_SOURCE.format(
            name=TRAINER, budget_s=parse_duration(budget), iterations=BUDGET_ITERATIONS))
        return TRAINER
    if not re.fullmatch(r"nnUNetTrainer(_\d+epochs?)?", trainer):
        raise ValueError(f"--nnunet-trainer {trainer}: use 'budget', nnUNetTrainer or "
                         "nnUNetTrainer_<N>epoch(s)")
    module = XEPOCHS if "_" in trainer else "nnunetv2.training.nnUNetTrainer.nnUNetTrainer"
    name = f"{trainer}_UnetkitNoFinalVal"
    (variants / "unetkit_fixed.py").write_text(FIXED_SOURCE.format(module=module, base=trainer,
                                                                   name=name))
    return name


def run_nnunet(python: str, train: Path, test: Path, test_ids: list[str], labels: list[int],
               budget: str, work: Path, dataset_id: int = 500, trainer: str = "budget",
               configuration: str | None = None) -> dict:
    """nnU-Net v2's plan, train (``trainer``: the budget-fitted subclass, or the name of one
    of nnU-Net's own trainers, run to its end) and predict on the same split."""
    out = work / "nnunet"
    shutil.rmtree(out, ignore_errors=True)
    env = _nnunet_env(out)
    meta = json.loads((train / "dataset.json").read_text())
    raw = out / "raw" / f"Dataset{dataset_id}_{meta.get('name', 'Data').replace(' ', '')}"
    shutil.copytree(train, raw, symlinks=True)
    meta["numTraining"] = len(list((train / "labelsTr").iterdir()))
    (raw / "dataset.json").unlink()
    (raw / "dataset.json").write_text(json.dumps(meta, indent=2))
    site = subprocess.run([python, "-c", "import nnunetv2, os; print(os.path.dirname("
                           "nnunetv2.__file__))"], capture_output=True, text=True, check=True)
    variants = Path(site.stdout.strip()) / "training" / "nnUNetTrainer" / "variants"
    trainer_class = write_trainer(variants, trainer, budget)
    bin_dir = Path(python).parent
    dims = 3 if "nii" in meta.get("file_ending", ".nii.gz") else 2
    configuration = configuration or ("3d_fullres" if dims == 3 else "2d")

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
                    "-tr", trainer_class, "-device", "cpu"], "train.log")
    predict_s = call([str(bin_dir / "nnUNetv2_predict"), "-i", str(test / "imagesTr"), "-o",
                      str(out / "pred"), "-d", str(dataset_id), "-c", configuration, "-f", "all",
                      "-tr", trainer_class, "-chk", "checkpoint_final.pth", "-device", "cpu",
                      "-npp", "1", "-nps", "1"], "predict.log")
    epochs = nnunet_epochs(_training_log(out))
    per_epoch = BUDGET_ITERATIONS if trainer == "budget" else NNUNET_ITERATIONS
    scores = dice_scores(out / "pred", test / "labelsTr", test_ids, labels)
    return {"plan_s": plan_s, "train_s": train_s, "predict_s": predict_s, "trainer": trainer_class,
            "configuration": configuration, "iterations_per_epoch": per_epoch,
            "epochs": len(epochs), "steps": per_epoch * len(epochs),
            "epoch_seconds": [e["seconds"] for e in epochs], "scores": scores}


def summarise(result: dict, labels: list[int]) -> dict[int, float]:
    return {label: float(np.nanmean([s[label] for s in result["scores"].values()]))
            for label in labels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--time", default="15m", help="training budget, or 'match': nnU-Net "
                        "(listed first in --peers) trains to its schedule's end and unetkit gets "
                        "the wall-clock time that took")
    parser.add_argument("--holdout", default="every:5:4")
    parser.add_argument("--peers", default="unetkit,nnunet")
    parser.add_argument("--nnunet-python", default="/work/nnunet_venv/bin/python")
    parser.add_argument("--nnunet-trainer", default="budget",
                        help="'budget' (schedule fitted to --time) or one of nnU-Net's own "
                        "trainers, e.g. nnUNetTrainer_1epoch or nnUNetTrainer_5epochs")
    parser.add_argument("--nnunet-config", default=None,
                        help="nnU-Net configuration (default: 3d_fullres for volumes, else 2d)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/unetkit_peers"))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="unetkit: section.field=value on top of its plan (experiments)")
    parser.add_argument("--name", default=None, help="result name (default: the data folder's)")
    parser.add_argument("--rescore", action="store_true", help="unetkit: score the predictions "
                        "already under --work (same --name); no training")
    args = parser.parse_args()
    if args.rescore and args.peers != "unetkit":
        parser.error("--rescore: with --peers unetkit only")
    train, test, test_ids = make_split(args.data, args.work / "split", args.holdout)
    meta = json.loads((args.data / "dataset.json").read_text())
    names = {int(v): k for k, v in meta["labels"].items()}
    labels = sorted(v for v in names if v != 0)
    results, budget = {}, args.time
    if budget == "match" and (not args.peers.startswith("nnunet")
                               or args.nnunet_trainer == "budget"):
        parser.error("--time match: list nnunet first in --peers and name one of its "
                     "fixed-length trainers (--nnunet-trainer nnUNetTrainer_1epoch)")
    for peer in args.peers.split(","):
        if peer == "unetkit":
            results[peer] = run_unetkit(train, test, test_ids, labels, budget, args.work,
                                        args.overrides, args.name or "unetkit", args.rescore)
        elif peer == "nnunet":
            results[peer] = run_nnunet(args.nnunet_python, train, test, test_ids, labels,
                                       "15m" if budget == "match" else budget, args.work,
                                       trainer=args.nnunet_trainer,
                                       configuration=args.nnunet_config)
            if budget == "match":
                budget = f"{round(results[peer]['train_s'])}s"
        means = summarise(results[peer], labels)
        print(f"{peer}: " + ", ".join(f"{names[k]} {v:.4f}" for k, v in means.items())
              + f", mean {np.mean(list(means.values())):.4f}, {results[peer]['steps']} steps"
              + ("" if results[peer]["train_s"] is None
                 else f", train {results[peer]['train_s']:.0f} s"), flush=True)
    record = {"data": str(args.data), "time": budget, "holdout": args.holdout,
              "test_cases": len(test_ids), "machine": cpu_name(), "labels": names,
              "overrides": args.overrides, "rescored": args.rescore,
              "results": {p: {**r, "mean_dice": summarise(r, labels)} for p, r in results.items()}}
    name = args.name or args.data.name
    write_json(ROOT / "benchmarks" / "results" / f"peers_{name}.json", record)


if __name__ == "__main__":
    main()
