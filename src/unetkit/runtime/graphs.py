"""A function of tensors captured once in a CUDA graph and replayed: one launch per call.

``GraphedFunction(fn)`` calls ``fn`` eagerly for its first ``warmup`` calls (on a side stream,
as PyTorch's whole-network capture recipe asks: lazy initialisation, cuDNN/cuBLAS workspaces,
optimizer state), captures it on the next call with the inputs copied into static buffers, and
from then on copies each call's inputs into those buffers and replays the graph. Every call does
the work exactly once: warm-up calls run ``fn``, the capturing call replays the graph it just
recorded (capture itself computes nothing).

It falls back to eager calls, with the reason logged once, when the capture fails (an operation
that reads a value back to the host, a CPU tensor, ...) and, for one call at a time, when a call's
inputs differ in shape, dtype or device from the captured ones. The capture mechanics live in a
backend (``CudaBackend``); the tests drive the same logic on the CPU with a recording backend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import torch

log = logging.getLogger(__name__)
Fn = Callable[..., torch.Tensor]


class Backend(Protocol):
    """How to warm up and capture ``fn`` (a callable of no arguments reading static inputs)."""

    def warm(self, fn: Callable[[], torch.Tensor]) -> torch.Tensor: ...

    def capture(self, fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        """Record ``fn``; returns ``replay() -> output`` (run once per call, the capture's
        output tensor rewritten in place)."""
        ...


class CudaBackend:
    """``torch.cuda.CUDAGraph`` capture, warm-up on a side stream."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.graph: Any = None

    def warm(self, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            out = fn()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        return out

    def capture(self, fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = fn()
        self.graph = graph

        def replay() -> torch.Tensor:
            graph.replay()
            return out

        return replay


def _signature(tensors: tuple[torch.Tensor, ...]) -> tuple[Any, ...]:
    return tuple((t.shape, t.dtype, t.device, t.stride()) for t in tensors)


class GraphedFunction:
    """``fn(*tensors) -> tensor`` with a CUDA graph after ``warmup`` eager calls.

    Args:
        fn: the function; it must read its inputs only from its arguments (they become static
            buffers) and keep every other tensor it touches alive (parameters, optimizer state).
        backend: capture mechanics (``CudaBackend`` on a GPU).
        warmup: eager calls before the capture.
        before_capture: called right before capturing (e.g. to set gradients to None, so that
            the graph's backward writes them rather than adding to them).
        on_fallback: called once when the capture fails (e.g. to undo ``before_capture``).

    Attributes:
        calls: calls so far; ``captured``: a graph is being replayed; ``failed``: the reason
            the capture failed (None while it has not).
    """

    def __init__(self, fn: Fn, backend: Backend, *, warmup: int = 3,
                 before_capture: Callable[[], None] | None = None,
                 on_fallback: Callable[[], None] | None = None) -> None:
        self.fn, self.backend, self.warmup = fn, backend, warmup
        self.before_capture, self.on_fallback = before_capture, on_fallback
        self.calls, self.failed = 0, None
        self.static: tuple[torch.Tensor, ...] | None = None
        self.replay: Callable[[], torch.Tensor] | None = None
        self._mismatch_logged = False

    @property
    def captured(self) -> bool:
        return self.replay is not None

    @property
    def warming(self) -> bool:
        """True when the next call is a warm-up or the capture (not a replay's cost)."""
        return self.failed is None and self.calls <= self.warmup

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.failed is not None:
            return self.fn(*inputs)
        if self.calls <= self.warmup:
            return self.backend.warm(lambda: self.fn(*inputs))
        if self.replay is None:
            return self._capture(inputs)
        assert self.static is not None
        if _signature(inputs) != _signature(self.static):
            if not self._mismatch_logged:
                log.warning("CUDA graph: inputs %s differ from the captured %s; those steps "
                            "run without the graph", [tuple(t.shape) for t in inputs],
                            [tuple(t.shape) for t in self.static])
                self._mismatch_logged = True
            return self.fn(*inputs)
        for buffer, value in zip(self.static, inputs, strict=True):
            buffer.copy_(value, non_blocking=True)
        return self.replay()

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        self.static = tuple(t.clone() for t in inputs)
        static = self.static
        try:
            if self.before_capture is not None:
                self.before_capture()
            self.replay = self.backend.capture(lambda: self.fn(*static))
        except Exception as error:  # capture rejects many things; the eager step is still right
            self.failed = f"{type(error).__name__}: {error}".splitlines()[0]
            self.replay, self.static = None, None
            log.warning("CUDA graph capture failed (%s); the training step runs without it",
                        self.failed)
            if self.on_fallback is not None:
                self.on_fallback()
            return self.fn(*inputs)
        log.info("CUDA graph: training step captured after %d warm-up steps", self.warmup)
        return self.replay()
