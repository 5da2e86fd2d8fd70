"""Training losses summed on the device and read back every few steps, not after every step.

Reading a GPU value back (``float(loss)``, ``loss.item()``, ``if not torch.isfinite(loss)``)
waits for every queued kernel: the host can no longer prepare the next step while the GPU
computes this one. ``LossMeter.add`` only queues three small kernels (the sum, and the first
non-finite step and its value); ``read`` brings them back in one transfer every ``every`` steps
(after an epoch's first step, so that progress shows a loss at once, and at the end of every
epoch, before anything is saved), and raises ``NonFiniteLoss`` naming
the first step whose loss was not finite.
"""

from __future__ import annotations

import math

import torch

READ_EVERY = 16  # steps between read-backs


class NonFiniteLoss(ArithmeticError):
    """A step's loss was NaN or infinite: ``step`` is the first such (counted from 0), found
    when steps ``first`` to ``last`` were read back."""

    def __init__(self, step: int, value: float, first: int, last: int) -> None:
        super().__init__(f"training loss is {value} at step {step}")
        self.step, self.value, self.first, self.last = step, value, first, last


class LossMeter:
    """Sums step losses on their device; ``read()`` returns and clears the sum.

    Attributes:
        total, steps: the read-back losses' sum and count since ``reset()`` (an epoch's).
        reads: read-backs so far (each is one device synchronisation).
    """

    def __init__(self, device: torch.device, every: int | None = None) -> None:
        self.device, self.every = device, every or READ_EVERY
        self.total, self.steps, self.reads = 0.0, 0, 0
        self._clear()

    def _clear(self) -> None:
        # (sum of losses, first non-finite step or -1, its loss), in float64 where the device
        # has it: step numbers stay exact
        dtype = torch.float32 if self.device.type == "mps" else torch.float64
        # (made on the device: a copy from the host would wait for the device)
        self._pending = torch.zeros(3, dtype=dtype, device=self.device)
        self._pending[1] = -1.0
        self._count = 0
        self._first_step = self._last_step = -1

    def add(self, loss: torch.Tensor, step: int) -> None:
        """Add the 0-d ``loss`` of global step ``step`` (no read-back)."""
        value = loss.detach().to(self._pending.dtype)
        first = (self._pending[1] < 0) & ~torch.isfinite(value)
        self._pending[0] += value
        self._pending[1] = torch.where(first, float(step), self._pending[1])
        self._pending[2] = torch.where(first, value, self._pending[2])
        if self._count == 0:
            self._first_step = step
        self._count += 1
        self._last_step = step

    def due(self) -> bool:
        """True when ``every`` steps wait to be read, or when none was read since ``reset``
        (so that a progress display has a loss from the first step on)."""
        return self._count >= self.every or (self._count > 0 and self.steps == 0)

    def read(self) -> float:
        """Read the pending steps back (one synchronisation); their sum.

        Raises:
            NonFiniteLoss: one of them was not finite.
        """
        if self._count == 0:
            return 0.0
        total, bad_step, bad_value = self._pending.tolist()
        count, first, last = self._count, self._first_step, self._last_step
        self.reads += 1
        self._clear()
        if bad_step >= 0:
            raise NonFiniteLoss(int(bad_step), bad_value, first, last)
        if not math.isfinite(total):  # finite losses whose sum overflows
            raise NonFiniteLoss(first, total, first, last)
        self.total += total
        self.steps += count
        return total

    def reset(self, total: float = 0.0, steps: int = 0) -> None:
        """Start an epoch's sum (a resumed epoch starts from the checkpoint's)."""
        self._clear()
        self.total, self.steps = total, steps

    def mean(self) -> float:
        """Mean of the losses read back since ``reset`` (nan before the first read)."""
        return self.total / self.steps if self.steps else math.nan
