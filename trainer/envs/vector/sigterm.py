"""A SIGTERM sent to the whole process group (`timeout`, `kill -- -PGID`, Slurm's `scancel`) is
the trainer's to handle (a checkpoint, then a clean close), not its emulator processes'.

The workers ignore it themselves (`worker.worker_main`). The forkserver they are forked from
must ignore it too: killed by it, it takes every worker's exit status along (multiprocessing's
popen_forkserver then reports 255), and the pool restarts them all as crashed while the trainer
checkpoints. The forkserver is a fresh interpreter (fork + exec) with no code of ours before
multiprocessing's loop, and exec keeps an ignored signal ignored (signal(7)), so it is started
with SIGTERM ignored; the signal mask is reset by `_posixsubprocess` in the child, so blocking
alone would not do.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def children_ignore_sigterm() -> Iterator[None]:
    """Within: processes started by fork + exec ignore SIGTERM. This process's own SIGTERM is
    not lost: it is blocked meanwhile (Linux keeps a blocked signal pending even when ignored),
    and one already pending when the action changes, which SIG_IGN would discard, is raised again.
    Only the main thread may change signal actions; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        pending = signal.SIGTERM in signal.sigpending()
        handler = signal.getsignal(signal.SIGTERM)
        if handler is None:  # installed outside Python: it could not be put back
            yield
            return
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, handler)
            if pending:
                os.kill(os.getpid(), signal.SIGTERM)  # pending again, delivered on unblock
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
