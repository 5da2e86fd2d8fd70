"""Cross-validation: K folds of one config, each scored out of fold exactly as ``unetkit
predict`` + ``unetkit evaluate`` score its held-out cases; the post-processing chosen on the
pooled out-of-fold predictions; resume skipping finished folds; one budget for all folds."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.config import load_config, parse_duration, save_config
from unetkit.runtime.checkpoint import load_checkpoint
from unetkit.train.cross_validation import (
    PREDICT_SHARE,
    SUMMARY_SHARE,
    cross_validate,
    fold_budget_s,
    plan_share_s,
)
from unetkit.train.out_of_fold import LARGEST, PLAIN, pooled_summary

runner = CliRunner()
CASES = [f"c{i}" for i in range(6)]


def evaluate_fold(tmp_path, data, run, fold: int, cases: list[str]) -> dict[str, float]:
    """``unetkit predict fold_k/best.pt`` + ``unetkit evaluate`` on the fold's held-out cases:
    ``{case: Dice of label 1}``."""
    held = tmp_path / f"held_{fold}"
    for folder in ("images", "masks"):
        (held / folder).mkdir(parents=True)
        for case in cases:
            shutil.copy(data / folder / f"{case}.png", held / folder / f"{case}.png")
    pred = tmp_path / f"pred_{fold}"
    done = runner.invoke(app, ["predict", str(run / f"fold_{fold}" / "best.pt"),
                               str(held / "images"), "-o", str(pred), "-q"])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["evaluate", str(pred), str(held / "masks")])
    assert done.exit_code == 0, done.output
    with (pred / "evaluation" / "per_case.csv").open() as handle:
        return {row["case"]: float(row["dice"]) for row in csv.DictReader(handle)
                if row["label"] == "1"}


@pytest.mark.slow
def test_cross_validation_scores_are_predict_plus_evaluate_scores(tmp_path, disks,
                                                                  tiny_config) -> None:
    data = disks(tmp_path / "data", n_cases=6, size=44, seed=3)
    config = tiny_config("model.base_width=8", "train.epochs=3", "train.steps_per_epoch=6",
                         "infer.postprocess.keep_largest=auto", "infer.tta_axes=[0]")
    save_config(config, tmp_path / "config.yaml")
    run = tmp_path / "cv"
    done = runner.invoke(app, ["train", "--data", str(data), "--config",
                               str(tmp_path / "config.yaml"), "--cross-validate", "3",
                               "--out", str(run), "-q"])
    assert done.exit_code == 0, done.output
    assert "cross-validation Dice" in done.output and f"unetkit predict {run}" in done.output
    summary = json.loads((run / "cross_validation.json").read_text())
    assert summary["folds"] == 3 and sorted(summary["per_case"]) == CASES
    held = [fold["cases"] for fold in summary["per_fold"]]
    assert sorted(c for cases in held for c in cases) == CASES  # each case out of fold once
    choice = summary["postprocessing"]["keep_largest"]
    for k, cases in enumerate(held):
        best = load_checkpoint(run / f"fold_{k}" / "best.pt")
        assert best["config"]["data"]["fold"] == k and best["config"]["data"]["folds"] == 3
        # the pooled choice is in every fold's best.pt, so predict applies it
        assert best["config"]["infer"]["postprocess"]["keep_largest"] is choice
        assert best["postprocessing"]["source"] == "cross-validation"
        scores = evaluate_fold(tmp_path, data, run, k, cases)
        for case in cases:
            assert summary["per_case"][case]["fold"] == k
            assert summary["per_case"][case]["dice"]["1"] == pytest.approx(scores[case],
                                                                          abs=1e-12)
        assert summary["per_fold"][k]["mean_dice"] == pytest.approx(np.mean(
            [scores[c] for c in cases]))
    pooled = np.mean([summary["per_case"][c]["dice"]["1"] for c in CASES])
    assert summary["mean_dice"] == pytest.approx(pooled) and 0.0 < pooled <= 1.0
    # the folder predicts with the ensemble of its three folds
    done = runner.invoke(app, ["predict", str(run), str(data / "images"), "-o",
                               str(tmp_path / "ensemble")])
    assert done.exit_code == 0, done.output
    assert "ensemble of 3 models" in done.output
    assert len(list((tmp_path / "ensemble").glob("*.png"))) == 6


def fold(cases: dict[str, tuple[float, float]], seconds: float = 1.0) -> dict:
    """A ``score_fold`` result: ``{case: (Dice as predicted, with the largest component)}``."""
    return {"cases": {c: {PLAIN: {"1": a}, LARGEST: {"1": b}} for c, (a, b) in cases.items()},
            "seconds": seconds}


def test_the_largest_component_is_chosen_on_the_pooled_out_of_fold_predictions() -> None:
    # fold 0 alone would keep it (+0.1 on one case), fold 1 alone would not (-0.02 on three):
    # pooled over all four cases it lowers the mean, so it stays off
    folds = [fold({"a": (0.6, 0.7)}), fold({"b": (0.9, 0.88), "c": (0.8, 0.78),
                                            "d": (0.7, 0.6)})]
    summary = pooled_summary(folds, ["1"], decide=True, fixed="auto")
    assert summary["postprocessing"]["keep_largest"] is False
    assert "pooled out-of-fold Dice" in summary["postprocessing"]["reason"]
    assert summary["mean_dice"] == pytest.approx((0.6 + 0.9 + 0.8 + 0.7) / 4)
    assert summary["per_fold"][0]["mean_dice"] == pytest.approx(0.6)  # chosen variant
    # ... and with another case it raises the pooled mean: kept, per-case Dice follow it
    folds[1]["cases"]["d"][LARGEST]["1"] = 0.9
    summary = pooled_summary(folds, ["1"], decide=True, fixed="auto")
    assert summary["postprocessing"]["keep_largest"] is True
    assert summary["per_case"]["d"]["dice"] == {"1": 0.9}
    assert summary["mean_dice"] == pytest.approx((0.7 + 0.88 + 0.78 + 0.9) / 4)
    # undefined Dice (no foreground anywhere) is left out of the means, written as null
    folds.append(fold({"e": (None, None)}))
    assert pooled_summary(folds, ["1"], decide=True, fixed="auto")["per_fold"][2][
        "mean_dice"] is None
    fixed = pooled_summary(folds[:1], ["1"], decide=False, fixed=True)
    assert fixed["postprocessing"]["keep_largest"] is True and fixed["mean_dice"] == 0.6


def test_the_folds_share_one_budget() -> None:
    total = 600.0
    share = plan_share_s(total, 5)
    assert share == pytest.approx(600 * (1 - SUMMARY_SHARE) / 5 * (1 - PREDICT_SHARE))
    # after 30 s of planning, the first fold gets a fifth of what is left, less its prediction
    first = fold_budget_s(total, 30.0, 5, None)
    assert first == pytest.approx((594 - 30) / 5 * (1 - PREDICT_SHARE))
    # measured predictions replace the estimate; a fold that overran shortens the next ones
    assert fold_budget_s(total, 150.0, 4, 3.0) == pytest.approx((594 - 150) / 4 - 3.0)
    assert fold_budget_s(total, 200.0, 4, 3.0) < fold_budget_s(total, 150.0, 4, 3.0)
    # folds that use exactly their budgets end with the summary's share left
    spent = 0.0
    for left in range(5, 0, -1):
        budget = fold_budget_s(total, spent, left, 2.0)
        spent += budget + 2.0
    assert spent == pytest.approx(total * (1 - SUMMARY_SHARE))


@pytest.mark.slow
def test_resume_skips_finished_folds_and_continues_the_interrupted_one(tmp_path, disks,
                                                                       tiny_config) -> None:
    data = disks(tmp_path / "data", n_cases=4, size=32, seed=1)
    config = tiny_config("train.steps_per_epoch=3", "train.time_budget=8s")
    run = tmp_path / "cv"
    started: list[int] = []

    def progress(k: int, folds: int):
        started.append(k)

        def on_step(info: dict) -> None:
            if k == 1 and info["step"] == 4:  # fold 1, in its second epoch
                raise KeyboardInterrupt
        return on_step

    with pytest.raises(KeyboardInterrupt):
        cross_validate(config, data, run, folds=2, progress=progress)
    assert started == [0, 1] and (run / "fold_0" / "out_of_fold.json").is_file()
    assert load_checkpoint(run / "fold_1" / "last.pt")["training"]["step"] == 4
    state = json.loads((run / "cv_state.json").read_text())
    assert state["trained"] == [0] and state["spent_s"] > 0
    fold0 = (run / "fold_0" / "best.pt").stat().st_mtime_ns
    first_epoch = (run / "fold_1" / "metrics.csv").read_text().splitlines()[:2]
    started.clear()
    result = cross_validate(None, None, resume=run, progress=progress)
    assert started == [1]  # fold 0 was not trained again
    assert (run / "fold_0" / "best.pt").stat().st_mtime_ns == fold0
    # fold 1 went on from its step 4 (its first epoch kept), it did not start again
    assert result.folds[0] is None and result.folds[1].steps > 4
    assert (run / "fold_1" / "metrics.csv").read_text().splitlines()[:2] == first_epoch
    assert not list(tmp_path.glob("cv/fold_1.unfinished*"))
    assert sorted(result.summary["per_case"]) == ["c0", "c1", "c2", "c3"]
    # one budget: the folds' budgets (after the interruption too) fit in the whole
    budgets = [parse_duration(load_config(run / f"fold_{k}" / "config.yaml").train.time_budget)
               for k in range(2)]
    assert sum(budgets) <= 8.0 * (1 - SUMMARY_SHARE)
    assert load_config(run / "config.yaml").train.time_budget == "8s"
    # a finished cross-validation resumed has nothing to train
    started.clear()
    again = cross_validate(None, None, resume=run, progress=progress)
    assert started == [] and again.summary["mean_dice"] == result.summary["mean_dice"]


@pytest.mark.parametrize("args, message", [
    (["--cross-validate", "1"], "at least 2 folds"),
    (["--cross-validate", "0"], "at least 2 folds"),
    (["--cross-validate", "2", "--fold", "0"], "--fold"),
    (["--cross-validate", "9"], "use fewer folds"),
])
def test_bad_cross_validation_requests_are_one_line(tmp_path, disks, tiny_config, args,
                                                    message) -> None:
    data = disks(tmp_path / "data", n_cases=4)
    save_config(tiny_config(), tmp_path / "config.yaml")
    done = runner.invoke(app, ["train", "--data", str(data), "--config",
                               str(tmp_path / "config.yaml"), "--out", str(tmp_path / "cv"),
                               "-q", *args])
    assert done.exit_code == 1 and message in done.output
    assert len(done.output.strip().splitlines()) == 1
    assert not (tmp_path / "cv" / "fold_0").exists()


def test_a_finished_cross_validation_folder_is_not_overwritten(tmp_path, disks,
                                                               tiny_config) -> None:
    data = disks(tmp_path / "data", n_cases=4)
    run = tmp_path / "cv"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"x": 1}))
    with pytest.raises(FileExistsError, match="already holds a run"):
        cross_validate(tiny_config(), data, run, folds=2)
    assert yaml.safe_load((run / "config.yaml").read_text()) == {"x": 1}
    with pytest.raises(ValueError, match="not a cross-validation folder"):
        cross_validate(None, None, resume=run)


def _ddp_worker(rank: int, world: int, port: int, data_dir: str, out: str) -> None:
    import os

    import torch
    import torch.distributed as dist

    from unetkit.config import Config, apply_overrides

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        config = apply_overrides(Config(), [
            "model.base_width=4", "model.depth=2", "model.norm=instance",
            "data.patch_size=[32, 32]", "data.batch_size=2", "train.precision=fp32",
            "train.device=cpu", "train.steps_per_epoch=2", "train.epochs=1",
            "data.augment.enabled=false"])
        result = cross_validate(config, data_dir, os.path.join(out, "cv"), folds=2)
        with open(os.path.join(out, f"rank{rank}.json"), "w") as handle:
            json.dump({"run_dir": str(result.run_dir), "summary": result.summary is not None,
                       "steps": [f.steps for f in result.folds]}, handle)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_under_torchrun_every_fold_trains_on_all_ranks_and_rank0_writes(tmp_path, disks
                                                                         ) -> None:
    import socket

    import torch.multiprocessing as mp

    data = disks(tmp_path / "data", n_cases=4)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(data), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["run_dir"] == ranks[1]["run_dir"] == str(tmp_path / "cv")
    assert [r["summary"] for r in ranks] == [True, False]
    assert ranks[0]["steps"] == ranks[1]["steps"] == [2, 2]
    summary = json.loads((tmp_path / "cv" / "cross_validation.json").read_text())
    assert sorted(summary["per_case"]) == ["c0", "c1", "c2", "c3"]


def test_train_resume_of_a_cross_validation_folder_continues_it(tmp_path, disks,
                                                                tiny_config) -> None:
    data = disks(tmp_path / "data", n_cases=4)
    config = tiny_config("train.epochs=1", "train.steps_per_epoch=2")
    run = tmp_path / "cv"

    def stop_in_fold_1(k: int, folds: int):
        if k == 1:
            raise KeyboardInterrupt  # before fold 1 trains: it has no folder yet

    with pytest.raises(KeyboardInterrupt):
        cross_validate(config, data, run, folds=2, progress=stop_in_fold_1)
    assert not (run / "cross_validation.json").exists()
    with pytest.raises(Exception, match="has not finished"):  # nothing to predict with yet
        from unetkit.infer.ensemble import load_models
        load_models(run)
    done = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "9", "-q"])
    assert done.exit_code == 0, done.output
    assert "ignored: train.epochs" in done.output  # the saved config continues
    assert load_config(run / "fold_1" / "config.yaml").train.epochs == 1
    assert "fold 1: mean Dice" in done.output and "cross-validation Dice" in done.output
    assert sorted(json.loads((run / "cross_validation.json").read_text())["per_case"]) == [
        "c0", "c1", "c2", "c3"]
