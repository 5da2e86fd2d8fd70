"""StepRunner: the step's mode tried, timed, chosen and cached; graphs' optimizer handling; a real
torch.compile on the CPU."""

from __future__ import annotations

import logging

import pytest
import torch

from unetkit.config import LossConfig
from unetkit.losses import build_loss
from unetkit.nn import UNet
from unetkit.runtime.compile import Timing, TimingCache
from unetkit.runtime.device import resolve_precision
from unetkit.train.step import (
    TIMED,
    WARMUP,
    StepPieces,
    StepRunner,
    forward_loss,
    graphed_step,
    step_function,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _pieces(seed: int = 0, lr: float = 1e-2) -> StepPieces:
    torch.manual_seed(seed)
    model = UNet(1, 2, base_width=4, depth=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
    plan = resolve_precision("fp32", "off", torch.device("cpu"))
    return StepPieces(model, optimizer, build_loss(LossConfig(), 2), plan, torch.device("cpu"),
                      grad_clip=12.0)


def _fake_modes(clock: Clock, costs: dict[str, float], setup: dict[str, float] | None = None,
                fail: str | None = None):
    """Step factories that only advance the clock (a mode's first call also pays its setup)."""
    setup = setup or {}

    def factory(mode):
        calls = []

        def step(image, mask):
            calls.append(1)
            if mode == fail:
                raise RuntimeError(f"{mode} cannot compile here")
            clock.now += costs[mode] + (setup.get(mode, 0.0) if len(calls) == 1 else 0.0)
            return torch.tensor(float(len(calls)))

        return lambda: step

    return {mode: factory(mode) for mode in costs}


def _run(runner: StepRunner, calls: int) -> list[tuple[str, bool, bool]]:
    x, y = torch.zeros(1, 1, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long)
    trace = []
    for _ in range(calls):
        mode = runner.mode
        runner(x, y, 1e-3)
        trace.append((mode, runner.warming, runner.switched))
    return trace


def test_the_trial_times_each_candidate_and_keeps_the_fastest(tmp_path):
    clock, cache = Clock(), TimingCache(tmp_path / "t.json")
    costs = {"eager": 0.020, "compile": 0.008, "graphs": 0.004}
    runner = StepRunner(_pieces(), list(costs), None, cache=cache, key="k", clock=clock,
                        builders=_fake_modes(clock, costs, setup={"compile": 30.0}))
    trace = _run(runner, 60)
    trial = sum(WARMUP[m] + TIMED for m in costs)
    assert [mode for mode, _, _ in trace[:trial]] == \
        [m for m in costs for _ in range(WARMUP[m] + TIMED)]
    warming = [w for _, w, _ in trace[:trial]]
    assert warming == [i < WARMUP[m] for m in costs for i in range(WARMUP[m] + TIMED)]
    assert [i for i, (_, _, s) in enumerate(trace) if s] == [trial - 1]  # settled once
    assert runner.mode == "graphs" and {m for m, _, _ in trace[trial:]} == {"graphs"}
    assert not any(w for _, w, _ in trace[trial:])
    timings = cache.get("k")
    assert timings["eager"].step_s == pytest.approx(0.020)
    assert timings["compile"].step_s == pytest.approx(0.008)
    assert timings["compile"].setup_s == pytest.approx(30.0)  # the compile, not the steps
    assert timings["graphs"].setup_s == pytest.approx(0.0)


def test_a_decided_mode_runs_at_once_and_records_its_timing(tmp_path):
    clock, cache = Clock(), TimingCache(tmp_path / "t.json")
    costs = {"eager": 0.020, "compile": 0.008}
    runner = StepRunner(_pieces(), list(costs), "eager", cache=cache, key="k", clock=clock,
                        builders=_fake_modes(clock, costs))
    trace = _run(runner, 20)
    assert {mode for mode, _, _ in trace} == {"eager"} and not any(s for _, _, s in trace)
    assert cache.get("k") == {"eager": Timing(pytest.approx(0.020), 0.0)}


def test_a_mode_that_fails_is_dropped_and_its_batch_trained_eagerly(tmp_path, caplog):
    clock = Clock()
    costs = {"eager": 0.020, "compile": 0.008, "graphs": 0.010}
    builders = _fake_modes(clock, costs, fail="compile")
    runner = StepRunner(_pieces(), list(costs), None, clock=clock, builders=builders)
    with caplog.at_level(logging.WARNING, logger="unetkit.train.step"):
        trace = _run(runner, 40)
    assert "compile failed (RuntimeError: compile cannot compile here); dropped" in caplog.text
    assert [m for m, _, _ in trace].count("compile") == 1
    assert runner.mode == "graphs" and set(runner.timings) == {"eager", "graphs"}


def test_a_required_mode_that_fails_leaves_eager(tmp_path):
    clock = Clock()
    costs = {"eager": 0.02, "compile": 0.008}
    runner = StepRunner(_pieces(), ["compile"], "compile", clock=clock,
                        builders=_fake_modes(clock, costs, fail="compile"))
    _run(runner, 3)
    assert runner.mode == "eager" and not runner.warming


def test_graphed_step_keeps_training_exact_and_checkpoints_plain(recording_backend):
    """The graph path (learning rate as a tensor, Adam capturable, static buffers) trains as
    the eager step does (to the rounding of a float32 learning rate); its optimizer state dict
    still holds float rates."""
    batches = [(torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(i)),
                torch.randint(0, 2, (2, 16, 16), generator=torch.Generator().manual_seed(i)))
               for i in range(7)]
    eager, graphed = _pieces(), _pieces()
    backend = recording_backend()
    eager_step = step_function(eager, forward_loss)
    graph_runner = StepRunner(graphed, ["graphs"], "graphs",
                              builders={"graphs": lambda: graphed_step(
                                  graphed, step_function(graphed, forward_loss), backend)})
    for i, (x, y) in enumerate(batches):
        lr = 1e-2 * (1 - i / 10)
        for group in eager.optimizer.param_groups:
            group["lr"] = lr
        eager_loss = eager_step(x, y)
        assert graph_runner(x, y, lr).item() == pytest.approx(eager_loss.item(), rel=1e-5)
    assert backend.captures == 1 and backend.replays == len(batches) - WARMUP["graphs"] + 1
    assert isinstance(graphed.optimizer.param_groups[0]["lr"], torch.Tensor)
    assert graphed.optimizer.param_groups[0]["lr"].item() == pytest.approx(1e-2 * 0.4)
    state = graphed.optimizer.state_dict()["param_groups"][0]
    assert isinstance(state["lr"], float) and state["capturable"] is False
    for a, b in zip(eager.model.parameters(), graphed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_compile_on_the_cpu_trains_like_eager(tmp_path):
    """A real torch.compile (inductor, C++ on the CPU) of forward and loss: same losses as the
    eager step to float tolerance; its compile counted as setup, not as a step."""
    eager, compiled = _pieces(seed=1), _pieces(seed=1)
    cache = TimingCache(tmp_path / "t.json")
    runner = StepRunner(compiled, ["compile"], "compile", cache=cache, key="c")
    eager_step = step_function(eager, forward_loss)
    generator = torch.Generator().manual_seed(0)
    for _ in range(WARMUP["compile"] + TIMED):
        x = torch.randn(2, 1, 16, 16, generator=generator)
        y = torch.randint(0, 2, (2, 16, 16), generator=generator)
        for group in eager.optimizer.param_groups:
            group["lr"] = 1e-2
        assert runner(x, y, 1e-2).item() == pytest.approx(eager_step(x, y).item(), abs=1e-4)
    assert runner.mode == "compile" and not runner.warming
    timing = cache.get("c")["compile"]
    assert timing.setup_s > timing.step_s


def test_a_run_decides_its_mode_from_this_devices_cached_timings(tmp_path, monkeypatch, caplog):
    """``build_step_runner``: eager on a CPU with nothing measured; compile once a measurement
    of this step on this device says it is faster; an impossible ``on`` only warns."""
    from unetkit.config import Config, apply_overrides
    from unetkit.runtime import compile as modes
    from unetkit.runtime.distributed import DistInfo
    from unetkit.train.builders import build_step_runner, step_signature

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    config = apply_overrides(Config(), ["train.device=cpu", "train.epochs=10"])
    pieces = _pieces()
    monkeypatch.setattr(modes, "support", lambda device, **_: modes.StepSupport("cpu", True))
    assert build_step_runner(config, pieces, DistInfo()).mode == "eager"
    key = modes.step_key(pieces.device, step_signature(config, pieces.plan.name, 1))
    TimingCache().put(key, {"eager": Timing(0.02), "compile": Timing(0.01, 2.0)})
    runner = build_step_runner(config, pieces, DistInfo())
    assert runner.mode == "compile" and not runner.trial
    # 10 epochs of 50 steps: 500 * 0.01 + 2 = 7 s against 10 s eager, so it compiles; 2 epochs
    # (100 steps) do not win the compile back: 1 + 2 = 3 s against 2 s
    short = apply_overrides(config, ["train.epochs=2"])
    assert build_step_runner(short, pieces, DistInfo()).mode == "eager"
    with caplog.at_level(logging.WARNING):
        off = apply_overrides(config, ["train.cuda_graphs=on", "train.compile=off"])
        assert build_step_runner(off, pieces, DistInfo()).mode == "eager"
    assert "train.cuda_graphs: on, but CUDA graphs need a CUDA device" in caplog.text
