"""Stopping a run cleanly: Ctrl-C (SIGINT) and SIGTERM end it at the next step boundary.

A signal that arrives inside a training step (in the middle of the backward pass, say) must not
interrupt it: the checkpoint would record a half-finished step, and the resumed run would redo it
on top (BatchNorm statistics and optimizer moments already updated). ``StopSignals`` only sets a
flag; the loop finishes the step it is in, writes ``last.pt`` and raises ``Interrupted``. A second
Ctrl-C aborts at once (no checkpoint), for a run that hangs. SIGTERM is what batch schedulers
(SLURM, Kubernetes) send before they kill a job; it is handled like the first Ctrl-C.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType

log = logging.getLogger(__name__)

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(KeyboardInterrupt):
    """The run stopped on a signal after saving ``last.pt`` at a step boundary."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(f"{signal.Signals(signum).name} at step {step}")
        self.signum = signum
        self.step = step

    @property
    def exit_code(self) -> int:
        """The conventional shell exit code: 130 for SIGINT, 143 for SIGTERM."""
        return EXIT_CODES.get(self.signum, 1)


class StopSignals:
    """Context manager: while active, SIGINT/SIGTERM request a stop instead of interrupting.

    Only the main thread can install handlers; elsewhere (a run started from a worker thread)
    the context does nothing and signals keep their usual effect.
    """

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt  # the second Ctrl-C: abort now
        self.requested = signum
        log.warning("%s received: stopping after this step and saving last.pt "
                    "(Ctrl-C again to abort without saving)", signal.Signals(signum).name)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous.clear()
