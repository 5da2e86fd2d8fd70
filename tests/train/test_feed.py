"""The data path of a run: losses read back every few steps (not after every step), a non-finite
loss still stops the run, batch workers change nothing, compile time charged to the budget."""

from __future__ import annotations

import math

import pytest
import torch

from unetkit.runtime.checkpoint import load_checkpoint
from unetkit.train import loss_meter
from unetkit.train.budget import TimeBudget
from unetkit.train.fit import fit

READS = ("item", "tolist", "__bool__", "__float__", "__int__")


class ReadBacks:
    """Counts the calls that read a tensor's value back to the host (each waits for a GPU)."""

    def __init__(self, monkeypatch) -> None:
        self.count, self.on = 0, False
        for name in READS:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(original))

    def _counting(self, original):
        def read(tensor, *args, **kwargs):
            if self.on:
                self.count += 1
            return original(tensor, *args, **kwargs)

        return read


def test_the_loss_is_read_back_every_few_steps_not_every_step(tmp_path, disks_dir, tiny_config,
                                                              monkeypatch):
    import unetkit.train.fit as fit_module

    monkeypatch.setattr(loss_meter, "READ_EVERY", 4)
    reads = ReadBacks(monkeypatch)
    original = fit_module.train_one_epoch

    def counted(run, on_step=None):
        reads.on = True
        try:
            return original(run, on_step)
        finally:
            reads.on = False

    monkeypatch.setattr(fit_module, "train_one_epoch", counted)
    result = fit(tiny_config("train.steps_per_epoch=12", "train.epochs=2"), disks_dir,
                 tmp_path / "run")
    assert result.steps == 24
    # per epoch: after the first step (a loss to show), steps 2-5, 6-9, then 10-12 at its end;
    # today's loop read every loss twice (isfinite and float): 48 read-backs
    assert reads.count == 8
    assert all(math.isfinite(row["train_loss"]) for row in result.history)


def test_the_epoch_loss_is_the_mean_of_every_step(tmp_path, disks_dir, tiny_config, monkeypatch):
    monkeypatch.setattr(loss_meter, "READ_EVERY", 5)
    seen = []
    import unetkit.train.loop as loop

    original = loop.train_step

    def recording(run, image, mask):
        loss = original(run, image, mask)
        seen.append(float(loss))
        return loss

    monkeypatch.setattr(loop, "train_step", recording)
    result = fit(tiny_config("train.steps_per_epoch=7", "train.epochs=1"), disks_dir,
                 tmp_path / "run")
    assert result.history[0]["train_loss"] == pytest.approx(sum(seen) / 7, rel=1e-6)


def test_a_non_finite_loss_stops_the_run_naming_its_step(tmp_path, disks_dir, tiny_config,
                                                         monkeypatch):
    monkeypatch.setattr(loss_meter, "READ_EVERY", 4)
    config = tiny_config("train.steps_per_epoch=6", "train.epochs=3", "train.lr=1e30")
    with pytest.raises(FloatingPointError) as raised:
        fit(config, disks_dir, tmp_path / "run")
    # step 0 is finite (read at once), the huge step makes step 1's loss nan; steps 1-4 are
    # read together
    assert str(raised.value) == ("training loss is nan at step 1; lower train.lr (no checkpoint "
                                 "was written yet); found when the losses of steps 1-4 were read "
                                 "back")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_non_finite_loss_later_keeps_the_last_good_checkpoint(tmp_path, disks_dir,
                                                                tiny_config, monkeypatch):
    import unetkit.train.loop as loop

    original = loop.train_step

    def poisoned(run, image, mask):
        loss = original(run, image, mask)
        return loss * math.inf if run.state.step == 9 else loss

    monkeypatch.setattr(loop, "train_step", poisoned)
    run = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"training loss is inf at step 9; lower "
                       r"train.lr \(last good checkpoint: .*last.pt\)"):
        fit(tiny_config("train.steps_per_epoch=4", "train.epochs=4"), disks_dir, run)
    last = load_checkpoint(run / "last.pt")
    assert last["training"]["step"] == 8  # the end of epoch 2, before the bad step
    assert all(torch.isfinite(v).all() for v in last["model_state"].values())


def _weights(path):
    return load_checkpoint(path)["model_state"]


def test_batch_workers_train_the_same_network(tmp_path, disks_dir, tiny_config):
    """Batches drawn and augmented in two worker processes = in the training process."""
    config = ["data.augment.enabled=true", "data.augment.device=cpu", "train.epochs=2"]
    fit(tiny_config(*config, "data.num_workers=0"), disks_dir, tmp_path / "alone")
    fit(tiny_config(*config, "data.num_workers=2"), disks_dir, tmp_path / "workers")
    alone, workers = _weights(tmp_path / "alone" / "last.pt"), _weights(
        tmp_path / "workers" / "last.pt")
    assert all(torch.equal(alone[k], workers[k]) for k in alone)
    saved = load_checkpoint(tmp_path / "workers" / "last.pt")["config"]["data"]
    assert saved["augment"]["device"] == "cpu" and saved["num_workers"] == 2


def test_resume_with_workers_is_exact(tmp_path, disks_dir, tiny_config):
    config = tiny_config("data.augment.enabled=true", "data.num_workers=2", "train.epochs=3",
                         "train.optimizer=sgd", "train.momentum=0.9")
    assert config.data.augment.device == "auto"
    fit(config, disks_dir, tmp_path / "straight")

    def interrupt(info):
        if info["step"] == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config, disks_dir, tmp_path / "cut", on_step=interrupt)
    fit(None, disks_dir, resume=tmp_path / "cut")
    straight, resumed = _weights(tmp_path / "straight" / "last.pt"), _weights(
        tmp_path / "cut" / "last.pt")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


class Compiling:
    """The run's step, whose first two calls compile (the first takes 30 s of fake time)."""

    switched = False

    def __init__(self, step, clock: Clock) -> None:
        self.step, self.clock, self.calls, self.warming = step, clock, 0, False

    def __call__(self, image, mask, lr):
        self.calls += 1
        self.warming = self.calls <= 2
        self.clock.now += 30.0 if self.calls == 1 else 0.5
        return self.step(image, mask, lr)


def test_compile_time_is_charged_to_the_budget_not_to_the_step(tmp_path, disks_dir,
                                                              tiny_config, monkeypatch):
    """The first steps compile (the runner says ``warming``): their time is spent, so the plan
    counts it, but the seconds per step come from the steps after them."""
    from unetkit.train.data import prepare_data
    from unetkit.train.loop import train_one_epoch
    from unetkit.train.setup import set_up_run

    clock = Clock()
    for module in ("budget", "loop"):
        monkeypatch.setattr(f"unetkit.train.{module}.time", clock)
    config = tiny_config("train.steps_per_epoch=12", "train.time_budget=10m")
    run = set_up_run(config, disks_dir, tmp_path / "run", None, True, None, prepare_data)
    run.budget = TimeBudget(600.0, 12, start=clock.now)
    run.stepper = Compiling(run.stepper, clock)
    try:
        train_one_epoch(run)
    finally:
        run.close()
    budget = run.budget
    assert budget.warmup_s == pytest.approx(30.5) and budget.timed_steps == 10
    assert budget.step_s == pytest.approx(0.5)  # the compile is not a step's cost
    assert budget.elapsed() == pytest.approx(30.0 + 11 * 0.5)  # but it is time spent
    # what is left after the compile, in epochs of 12 steps of 0.5 s (3 % kept spare)
    assert budget.plan(1) <= 1 + (600 * 0.97 - 35.5) / 6.0
    assert budget.plan(1) > 1 + (600 * 0.97 - 35.5) / 6.0 - 3  # validation estimate aside
