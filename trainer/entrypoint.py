"""The `trainer` command's entry point: SIGTERM is handled from the first instruction on.

In a container the entrypoint is PID 1, and the kernel drops any signal that PID 1 has no
handler for (pid_namespaces(7): "only signals for which the init process has established a
signal handler can be sent to it"). Python starts without a SIGTERM handler and importing torch
and MLflow takes seconds, so a pod deleted during start-up would lose its SIGTERM and be killed
only after its grace period (exit 137, counted as a failure). Until `trainer run` installs its
own handler (`trainer.rl.stopping`, which checkpoints), SIGTERM here exits at once with 143,
what any process without a handler reports outside a container. Imports nothing at start.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _in_import(frame: FrameType | None) -> bool:
    """Whether the interrupted code is a module being imported (importlib's frames below it)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _exit_now(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write(f"{signal.Signals(signum).name} before training started: exiting\n")
    if _in_import(frame):
        # Raised inside an import, SystemExit leaves modules half-initialised, and a library
        # that swallows it imports them again: in CI (a pod's SIGTERM 0.5 s in) numpy's lazy
        # `numpy.dtypes` then recursed until RecursionError, exit 1 instead of 143. An import
        # starts nothing that needs cleaning up: leave now.
        sys.stderr.flush()
        os._exit(128 + signum)
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_now)
    from trainer.cli import main as cli

    cli()
