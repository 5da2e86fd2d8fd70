"""The training step in its measured mode: eager, ``torch.compile``, a CUDA graph, or both.

``StepRunner(pieces, modes, ...)`` runs one optimisation step per call and returns the loss as a
0-d tensor on the device, never read back (``unetkit.train.loss_meter`` reads losses every few
steps). Which mode runs is decided by ``unetkit.runtime.compile``: a single candidate or cached
timings decide at once; otherwise the runner *tries* the candidates on the run's own first
steps (each: a few warm-up steps, then ``TIMED`` steps timed as one block between two device
synchronisations), keeps the fastest and caches every timing. Warm-up and compile steps are
flagged (``warming``) so that the time budget charges them to the elapsed time but not to the
seconds per step. A mode that fails to compile or capture is dropped with its reason logged;
the step in hand is redone eagerly, so no batch is lost or trained twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from unetkit.losses.targets import unchecked_labels
from unetkit.runtime.compile import Timing, TimingCache
from unetkit.runtime.device import PrecisionPlan
from unetkit.runtime.graphs import CudaBackend, GraphedFunction

log = logging.getLogger(__name__)
TIMED = 10  # steps per timed block
WARMUP = {"eager": 2, "compile": 2, "graphs": 4, "compile+graphs": 4}
COMPILE_MODES = {"compile": "default", "compile+graphs": "reduce-overhead"}


@dataclass
class StepPieces:
    """What one optimisation step touches."""

    model: torch.nn.Module  # the network as trained (the DDP wrapper under DDP)
    optimizer: torch.optim.Optimizer
    loss_fn: torch.nn.Module
    plan: PrecisionPlan
    device: torch.device
    grad_clip: float | None = None
    scaler: torch.amp.GradScaler | None = None


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate; a tensor rate (captured by a CUDA graph) is filled."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def forward_loss(p: StepPieces, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The loss of ``image (B, C, *patch)`` against ``mask (B, *patch)``, in float32."""
    # Without autocast's cast cache: a CUDA graph must not keep casts that autocast frees when
    # its region ends (PyTorch's CUDA graph notes); a U-Net uses each weight once anyway.
    precision = nullcontext() if p.plan.dtype is None else torch.autocast(
        device_type=p.device.type, dtype=p.plan.dtype, cache_enabled=False)
    with precision:
        output = p.model(image)
    # Every loss computes in float32 from the logits as the network returned them (a float32
    # copy made here would be what autograd keeps: unetkit.losses.fused).
    return p.loss_fn(output, mask)


def step_function(p: StepPieces, forward: Callable[..., torch.Tensor]
                  ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``step(image, mask) -> loss`` (detached): gradients, clipping, optimizer step; no
    value is read back to the host (the fused optimizers take a GradScaler's inf check too)."""

    def step(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        p.optimizer.zero_grad(set_to_none=True)
        # Every mask value was mapped to a label when the data were loaded (train.data), and
        # augmentation only moves labels: the loss's range check would read back every step.
        with unchecked_labels():
            loss = forward(p, image, mask)
        parameters = [q for group in p.optimizer.param_groups for q in group["params"]]
        if p.scaler is not None:
            p.scaler.scale(loss).backward()
            p.scaler.unscale_(p.optimizer)
            if p.grad_clip:
                torch.nn.utils.clip_grad_norm_(parameters, p.grad_clip)
            p.scaler.step(p.optimizer)
            p.scaler.update()
        else:
            loss.backward()
            if p.grad_clip:
                torch.nn.utils.clip_grad_norm_(parameters, p.grad_clip)
            p.optimizer.step()
        return loss.detach()

    return step


def graphed_step(p: StepPieces, step: Callable[..., torch.Tensor], backend: Any = None
                 ) -> GraphedFunction:
    """``step`` captured in a CUDA graph after its warm-up steps (``runtime.graphs``).

    The learning rate becomes a device tensor (the graph reads it at every replay; ``set_lr``
    fills it) and Adam's groups ``capturable``; checkpoints still store plain floats.
    """
    optimizer = p.optimizer
    plain = [(g["lr"], g.get("capturable")) for g in optimizer.param_groups]

    def prepare() -> None:
        for group in optimizer.param_groups:
            group["lr"] = torch.tensor(float(group["lr"]), device=p.device)
            if "capturable" in group:
                group["capturable"] = True

    def undo() -> None:
        for group, (lr, capturable) in zip(optimizer.param_groups, plain, strict=True):
            group["lr"] = float(group["lr"]) if isinstance(group["lr"], torch.Tensor) else lr
            if capturable is not None:
                group["capturable"] = capturable

    optimizer.register_state_dict_post_hook(_plain_state)
    return GraphedFunction(step, backend or CudaBackend(p.device), warmup=WARMUP["graphs"] - 1,
                           before_capture=prepare, on_fallback=undo)


def _plain_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state dict as an eager run writes it (float rates, not capturable)."""
    for group in state["param_groups"]:
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = float(group["lr"])
        if group.get("capturable"):
            group["capturable"] = False
    return state


class StepRunner:
    """One optimisation step per call in the measured-fastest mode (module docstring).

    Args:
        pieces: what the step touches.
        modes: the candidate modes (``runtime.compile.candidate_modes``), eager first.
        chosen: the decided mode, or None to try the candidates on the first steps.
        cache, key: where timings are stored (None: nowhere).
        agree: makes every process take the same decision (rank 0's under DDP).
        sync: waits for the device (timed blocks); clock: seconds.
        builders: ``{mode: factory() -> step}`` overrides (tests).
    """

    def __init__(self, pieces: StepPieces, modes: list[str], chosen: str | None, *,
                 cache: TimingCache | None = None, key: str = "",
                 agree: Callable[[Any], Any] = lambda value: value,
                 sync: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.perf_counter,
                 builders: dict[str, Callable[[], Callable[..., torch.Tensor]]] | None = None
                 ) -> None:
        self.pieces, self.cache, self.key = pieces, cache, key
        self.agree, self.sync, self.clock = agree, sync, clock
        self.queue = list(modes) if chosen is None else [chosen]
        self.trial = chosen is None
        self.timings: dict[str, Timing] = {}
        self.steps: dict[str, Callable[..., torch.Tensor]] = {}
        self.builders = builders or {}
        self.calls, self.marks = 0, []  # calls in the current mode; clock readings
        self.mode = self.queue[0]
        self.warming = self.switched = False  # switched: this call settled on a new mode
        if self.trial:
            log.info("train step: trying %s on the first steps", ", ".join(self.queue))

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, lr: float) -> torch.Tensor:
        """One step on ``image (B, C, *patch)`` / ``mask (B, *patch)`` at ``lr``; the loss."""
        set_lr(self.pieces.optimizer, lr)
        measuring, warm = bool(self.queue), WARMUP[self.mode]
        self.calls, self.switched = self.calls + 1, False
        self.warming = measuring and self.calls <= warm
        if measuring and self.calls in (1, warm + 1):  # warm-up and timed block start here
            self.sync()
            self.marks.append(self.clock())
        loss = self._run(image, mask)
        if self.queue and self.calls == warm + TIMED:
            self.sync()
            self.marks.append(self.clock())
            self._timed(warm)
        return loss

    def _run(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The step in the current mode; a mode that fails while warming up is dropped."""
        if self.mode == "eager" or not self.warming:
            return self._step(self.mode)(image, mask)
        try:
            loss = self._step(self.mode)(image, mask)
            failed = getattr(self.steps[self.mode], "failed", None)
        except Exception as error:  # a compiler or capture failure: the eager step still works
            failed = f"{type(error).__name__}: {error}".splitlines()[0]
            loss = None
        if failed is None:
            return loss
        log.warning("train step: %s failed (%s); dropped", self.mode, failed)
        self._next(drop=True)
        return loss if loss is not None else self._step("eager")(image, mask)

    def _step(self, mode: str) -> Callable[..., torch.Tensor]:
        if mode not in self.steps:
            self.steps[mode] = self.builders[mode]() if mode in self.builders else \
                self._build(mode)
        return self.steps[mode]

    def _build(self, mode: str) -> Callable[..., torch.Tensor]:
        p = self.pieces
        forward: Callable[..., torch.Tensor] = forward_loss
        if mode in COMPILE_MODES:
            forward = torch.compile(forward_loss, mode=COMPILE_MODES[mode])
        step = step_function(p, forward)
        return graphed_step(p, step) if mode == "graphs" else step

    def _timed(self, warm: int) -> None:
        start, block, end = self.marks
        step_s = (end - block) / TIMED
        self.timings[self.mode] = Timing(step_s, max(block - start - warm * step_s, 0.0))
        log.info("train step: %s %.2f ms per step, %.1f s to set up", self.mode,
                 1000 * step_s, self.timings[self.mode].setup_s)
        self._next(drop=False)

    def _next(self, drop: bool) -> None:
        """Go on to the next candidate, or settle on the fastest measured one."""
        done = self.queue.pop(0)
        if drop and not self.trial:
            self.queue = []
        self.calls, self.marks = 0, []
        if self.queue:
            self.mode = self.queue[0]
            return
        if self.cache is not None and self.timings:
            self.cache.put(self.key, self.timings)
        # what each tried mode cost to set up is paid: the fastest step wins
        fastest = min(self.timings, key=lambda m: self.timings[m].step_s) if self.timings \
            else "eager"
        self.mode = self.agree(fastest if self.trial else (done if not drop else "eager"))
        self.switched = self.trial or drop
        if self.trial:
            log.info("train step: %s (measured %s)", self.mode, ", ".join(
                f"{m} {1000 * t.step_s:.2f} ms" for m, t in self.timings.items()))
