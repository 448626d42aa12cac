"""Stop requests for the training loop: SIGINT (Ctrl-C) and SIGTERM (``kill``, a cluster's time limit).

Without this, a run stopped before its first periodic checkpoint lost everything. While
:class:`StopSignals` is active, the first SIGINT or SIGTERM only records the request; the engine
finishes the step in progress, writes a checkpoint at that step boundary and raises
:class:`~semantic_genesis.errors.RunInterrupted` (the CLI exits with 130 / 143). A second signal of
either kind restores the previous handlers and re-delivers itself: the default behaviour (stop at
once, no checkpoint) for a user who insists.

Handlers can only be installed from the main thread; elsewhere (a training call inside a worker
thread) the signals keep their previous behaviour. DataLoader workers forked while the handlers are
active inherit them, so a Ctrl-C sent to the whole process group does not kill them mid-epoch.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Context manager recording the first SIGINT / SIGTERM in :attr:`received`.

    Attributes:
        received: the signal number received first (``None``: none yet).
        active: whether the handlers were installed (main thread only).
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self.active = False
        self._previous: dict[int, object] = {}

    @property
    def name(self) -> str:
        """``"SIGINT"`` / ``"SIGTERM"`` of :attr:`received` (``""`` when none)."""
        return signal.Signals(self.received).name if self.received is not None else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
            return
        self._restore()  # a second signal: do what it would have done without us
        os.kill(os.getpid(), signum)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        self.active = False

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
            self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            self._restore()
