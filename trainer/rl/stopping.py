"""Stopping on signals: SIGTERM (pod eviction, `kubectl delete`) and a first Ctrl-C ask the loop
to checkpoint and exit; a second Ctrl-C interrupts at once."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any


class StopFlag:
    """Set by the signal handler; the loop checks it between vector steps and phases."""

    requested: bool = False
    signum: signal.Signals = signal.SIGTERM


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """Install the handlers for the block; the previous handlers come back after it.

    Installed before anything slow starts (MLflow, the emulators), so a SIGTERM during start-up
    is seen too: the loop then exits at its first check."""
    flag = StopFlag()

    def handler(signum: int, frame: Any) -> None:
        if flag.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.requested, flag.signum = True, signal.Signals(signum)

    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread (e.g. called from a test thread): no handlers
        pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
