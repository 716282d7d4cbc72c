"""A worker process's side of the process backend: build its envs, then serve one-byte commands.

Commands (parent → worker, one raw byte on a pipe) and the empty answer (worker → parent, on a
`multiprocessing` pipe, length-prefixed): nothing else crosses a pipe on the hot path. Episode
infos and errors (with the worker's traceback) travel pickled on the answer pipe; invalid input
(`InvalidInput`, e.g. a save state PyBoy cannot load) travels as its message alone, so the parent
raises it as the same refusal (exit 2) rather than as a crash.
"""

from __future__ import annotations

import _posixshmem  # CPython's shm_open (what SharedMemory uses); POSIX only, like select.poll
import mmap
import os
import pickle
import signal
import traceback
from collections.abc import Callable
from typing import Any

from trainer.envs.vector.buffers import Buffers, close_envs, describe_envs, reset_slice, step_slice
from trainer.envs.vector.protocol import Env
from trainer.errors import InvalidInput

STEP, RESET, ATTACH, CLOSE = b"s", b"r", b"a", b"c"
OK = b"k"


def attach_shared_memory(name: str) -> mmap.mmap:
    """Map the pool's block in a worker without telling the resource tracker.

    `SharedMemory(name)` registers the block with the resource tracker in Python < 3.13
    (gh-82300; 3.13 adds `track=False`). A worker started by `fork` before the parent's tracker
    existed gets a tracker of its own, which unlinks the parent's block when the worker is
    killed: measured here, the replacement worker then failed to attach. Only the parent, which
    created the block, registers it.
    """
    fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def worker_main(
    env_fns: list[Callable[[], Env]],
    first: int,
    num_envs: int,
    shm_name: str,
    command: Any,
    answers: Any,
) -> None:
    """A worker's command loop: build envs, describe them, then serve one-byte commands."""
    # Ctrl-C goes to the whole process group, and so may SIGTERM (`forkserver_signals`): the
    # parent handles them (a checkpoint, a clean close) and closes us; killed first, we would be
    # restarted as crashed workers. We still stop on CLOSE, on the parent's exit (EOF on the
    # command pipe) and on SIGKILL, which is how the pool ends a hung worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    envs: list[Env] = []
    what = "creating its environments"
    try:
        for fn in env_fns:
            envs.append(fn())
        spec = describe_envs(envs, first)
        answers.send_bytes(pickle.dumps(("spec", spec)))
        buffers = None
        fd = command.fileno()
        while True:
            byte = os.read(fd, 1)
            if byte == STEP:
                what = "stepping"
                infos = step_slice(envs, first, buffers)
                answers.send_bytes(pickle.dumps(("infos", infos)) if infos else OK)
            elif byte == RESET:
                what = "resetting"
                reset_slice(envs, first, buffers)
                answers.send_bytes(OK)
            elif byte == ATTACH:
                what = "attaching shared memory"
                mapping = attach_shared_memory(shm_name)
                buffers = Buffers.create(num_envs, spec, mapping)
                answers.send_bytes(OK)
            elif byte in (CLOSE, b""):  # b"": the parent is gone
                break
            else:
                what = "reading its command pipe"
                raise RuntimeError(f"unknown command {byte!r}")
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    except BaseException as exc:
        # The user's input is at fault, not the code: its message says which field; a traceback
        # would only hide it.
        answer = ("invalid", what, exc.problems) if isinstance(exc, InvalidInput) else None
        try:
            answers.send_bytes(pickle.dumps(answer or ("error", what, traceback.format_exc())))
        except OSError:
            pass
    finally:
        buffers = None
        close_envs(envs)
