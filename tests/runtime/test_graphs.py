"""GraphedFunction: warm-up, capture into static buffers, replay, and the fallbacks, driven on
the CPU by a backend that records what a CUDA graph would do (``recording_backend``)."""

from __future__ import annotations

import logging

import torch

from unetkit.runtime.graphs import GraphedFunction


def _doubling():
    seen = []

    def fn(x, y):
        seen.append((x, y))  # the tensors fn was called with
        return 2 * x + y

    return fn, seen


def test_warm_up_then_capture_then_replay_on_static_buffers(recording_backend):
    fn, seen = _doubling()
    backend = recording_backend()
    graphed = GraphedFunction(fn, backend, warmup=2)
    inputs = [(torch.full((3,), float(i)), torch.ones(3)) for i in range(5)]
    outputs = []
    for x, y in inputs:
        assert graphed.warming == (graphed.calls < 3)
        outputs.append(graphed(x, y))
    assert backend.warmed == 2 and backend.captures == 1 and backend.replays == 3
    for (x, y), out in zip(inputs, outputs, strict=True):
        assert torch.equal(out, 2 * x + y)  # each call did its work exactly once
    static = graphed.static
    assert seen[2][0] is static[0] and seen[-1][0] is static[0]  # replays read the buffers
    assert not any(x is static[0] for x, _ in inputs)  # the callers' tensors are untouched
    assert graphed.captured and graphed.failed is None


def test_inputs_of_another_shape_run_eagerly_and_are_logged_once(caplog, recording_backend):
    fn, _ = _doubling()
    backend = recording_backend()
    graphed = GraphedFunction(fn, backend, warmup=1)
    graphed(torch.ones(3), torch.ones(3))
    graphed(torch.ones(3), torch.ones(3))  # captured
    with caplog.at_level(logging.WARNING, logger="unetkit.runtime.graphs"):
        out = graphed(torch.ones(4), torch.zeros(4))
        graphed(torch.ones(4), torch.zeros(4))
    assert torch.equal(out, torch.full((4,), 2.0))
    assert backend.replays == 1  # the capturing call only
    assert len([r for r in caplog.records if "differ from the captured" in r.message]) == 1
    assert torch.equal(graphed(torch.ones(3), torch.ones(3)), torch.full((3,), 3.0))
    assert backend.replays == 2


def test_a_failed_capture_falls_back_to_eager_with_its_reason(caplog, recording_backend):
    fn, _ = _doubling()
    undone = []
    backend = recording_backend(fail=RuntimeError("operation not permitted when stream is "
                                                 "capturing\nmore detail"))
    graphed = GraphedFunction(fn, backend, warmup=1, before_capture=lambda: undone.append("in"),
                              on_fallback=lambda: undone.append("out"))
    graphed(torch.ones(2), torch.ones(2))
    with caplog.at_level(logging.WARNING, logger="unetkit.runtime.graphs"):
        out = graphed(torch.ones(2), torch.zeros(2))  # the capture fails: eager result
    assert torch.equal(out, torch.full((2,), 2.0))
    assert graphed.failed == "RuntimeError: operation not permitted when stream is capturing"
    assert undone == ["in", "out"] and not graphed.captured and not graphed.warming
    assert "capture failed (RuntimeError: operation not permitted" in caplog.text
    graphed(torch.ones(2), torch.ones(2))
    assert backend.captures == 1  # never tried again
