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

import signal
import sys
from types import FrameType


def _exit_now(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write(f"{signal.Signals(signum).name} before training started: exiting\n")
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_now)
    from trainer.cli import main as cli

    cli()
