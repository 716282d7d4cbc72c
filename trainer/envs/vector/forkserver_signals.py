"""Imported by multiprocessing's forkserver, first of `FORKSERVER_PRELOAD`: the forkserver then
ignores SIGTERM, and so does every worker it forks (fork keeps signal actions).

A SIGTERM sent to the whole process group (`timeout`, `kill -- -PGID`, Slurm's `scancel`) is
the trainer's to handle: a checkpoint, then a clean close of its workers. Killed by it, the
forkserver took every worker's exit status along (popen_forkserver reports 255 once the server
is gone), and the pool restarted all the workers as crashed while the trainer checkpointed.

Ignoring the signal in the trainer for the moment the forkserver starts (exec keeps an ignored
signal ignored) would race with the trainer's own threads: a SIGTERM delivered to another
thread meanwhile is dropped. So the forkserver sets it itself. Imported anywhere else, this
module changes nothing: it acts only when multiprocessing's forkserver loop is importing it.
"""

from __future__ import annotations

import signal
import sys


def imported_by_the_forkserver() -> bool:
    """Whether multiprocessing.forkserver's `main` (its preload loop) is on the stack."""
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "main" and code.co_filename.endswith("forkserver.py"):
            return "multiprocessing" in code.co_filename
        frame = frame.f_back
    return False


if imported_by_the_forkserver():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
