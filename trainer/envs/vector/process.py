"""The process backend: envs in worker processes over shared memory.

Longer than 500 lines because a pool's whole life (start, step, restart, close) is one
state machine, read top to bottom.

`ProcessVecEnv` runs worker processes that each own `envs_per_worker` envs. Each worker
creates its envs itself (PyBoy is not thread- or fork-safe to share) and writes observations,
rewards, flags and final observations in place into one shared-memory block; nothing but a
one-byte command and a one-byte answer crosses a pipe on the hot path. The rare episode infos
(and errors, with the worker's traceback) travel pickled on the same pipe (`worker.py`).

Design notes (measured on the 2-core dev box; see `scripts/bench_pool.py`):

- Start method: **forkserver**. `fork` starts fastest, but the trainer's parent has torch
  (OpenMP pools), MLflow and rollout threads by the time a crashed worker must be replaced, and
  forking a multi-threaded process can copy a held lock into the child and deadlock it. `spawn`
  is safe but re-imports everything per worker. The forkserver is a clean single-threaded
  process that imports numpy, pyboy and trainer.env once (`FORKSERVER_PRELOAD`) and forks
  workers from that, so starting (and restarting) a worker costs a fork plus building its envs:
  a SIGKILLed PyBoy worker is replaced in ~0.15 s (0.75 s without pyboy preloaded, 1.0 s with
  spawn); a cold 2-worker pool is up in ~1.4 s (spawn ~2.0 s) on the loaded 2-core dev box.
- Signalling: the parent writes one byte per worker on a pipe; the worker answers on a
  `multiprocessing` pipe (length-prefixed), `b"k"` when there is nothing to say. The parent
  `poll`s the answer pipes together with the process sentinels, so a dead worker (even by
  SIGKILL) is seen at once, and a hung one after `worker_timeout`. Pipe round trips measured
  31–51 µs for 1–4 workers, the same as a semaphore per worker (41–49 µs) and far below an
  emulator step; a busy-wait on shared flags (PufferLib) would be faster but burns the cores
  that the emulators and the learner share.
- Memory layout: one `multiprocessing.shared_memory` block per pool, named
  `trainer-vec-<pid>-<random>`, holding, each 64-byte aligned: actions (N,) int64, rewards (N,)
  float32, terminated (N,) bool, truncated (N,) bool, obs (N, *shape), final_obs (N, *shape).
  Worker w reads and writes only its rows. The parent unlinks the block in `close()`, which is
  also registered with `weakref.finalize` (runs at exit); if the parent is SIGKILLed, workers see
  EOF on their command pipe and exit, and multiprocessing's resource tracker unlinks the block.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import pickle
import secrets
import select
import signal
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.shared_memory import SharedMemory
from typing import Any, Literal

import numpy as np

from trainer.envs.vector import worker as commands
from trainer.envs.vector.buffers import (
    Buffers,
    EnvDescription,
    EnvEvent,
    check_env_fns,
    check_same,
)
from trainer.envs.vector.layout import resolve_envs_per_worker
from trainer.envs.vector.protocol import Env, VecEnv, WorkerError
from trainer.errors import InvalidInput

logger = logging.getLogger(__name__)

#: Modules the forkserver imports once, so every worker forks with them loaded. Missing ones
#: are skipped silently by multiprocessing (pyboy is absent in a launcher-only install).
FORKSERVER_PRELOAD = (
    "trainer.envs.vector.forkserver_signals",
    "numpy",
    "pyboy",
    "trainer.envs.env",
    "trainer.envs.vector.worker",
)


class _WorkerDied(Exception):
    """A worker exited or stopped answering (message: what happened); the pool restarts it."""


@dataclass
class _Worker:
    index: int
    first: int  # its envs are first..stop-1
    stop: int
    env_fns: list[Callable[[], Env]]
    process: Any = None  # multiprocessing Process
    command: Any = None  # Connection: parent writes one raw byte per command
    answers: Any = None  # Connection: worker sends framed answers
    restarts: deque[float] = field(default_factory=deque)  # monotonic times, within the window

    @property
    def label(self) -> str:
        envs = (
            f"env {self.first}"
            if self.stop - self.first == 1
            else f"envs {self.first}-{self.stop - 1}"
        )
        pid = self.process.pid if self.process is not None else None
        return f"worker {self.index} ({envs}, pid {pid})"


@dataclass
class _PoolState:
    """Everything `close()` must release; held by `weakref.finalize`, never referencing the pool."""

    workers: list[_Worker]
    shm: SharedMemory | None = None
    buffers: Buffers | None = None
    on_env_closed: EnvEvent | None = None


def _stop_worker(worker: _Worker, grace: float = 0.0) -> None:
    process = worker.process
    if process is not None:
        if grace > 0:
            process.join(grace)
        if process.is_alive():
            process.kill()
        process.join(5.0)
        try:
            process.close()
        except ValueError:  # still running after SIGKILL + 5 s: leave it to the OS
            pass
    for conn in (worker.command, worker.answers):
        if conn is not None:
            conn.close()
    worker.process = worker.command = worker.answers = None


def _shutdown(state: _PoolState) -> None:
    """Stop workers (politely, then SIGKILL), unlink the shared memory. Safe to call twice."""
    for worker in state.workers:
        if worker.command is not None:
            try:
                os.write(worker.command.fileno(), commands.CLOSE)
            except OSError:
                pass
    deadline = time.monotonic() + 2.0
    for worker in state.workers:
        _stop_worker(worker, grace=max(0.0, deadline - time.monotonic()))
        if state.on_env_closed is not None:
            for index in range(worker.first, worker.stop):
                state.on_env_closed(index)
    state.on_env_closed = None  # once: a second call finds nothing left to close
    state.buffers = None
    if state.shm is not None:
        shm, state.shm = state.shm, None
        try:
            shm.unlink()
        except FileNotFoundError:
            pass
        try:
            shm.close()
        except BufferError:  # a caller still holds a StepResult view; the mapping dies with it
            pass


def _ensure_forkserver(ctx: Any) -> None:
    """Start this process's forkserver (once) with `FORKSERVER_PRELOAD` imported.

    pysdl2 prints a "Using SDL2 binaries" notice when pyboy is imported; `trainer.env` hides it
    with a warnings filter, which the server does not inherit, so pass one through the
    environment for the moment it starts (its forked workers keep it; they never open a window).

    It ignores SIGTERM, and so do the workers it forks (`forkserver_signals`, preloaded first):
    a SIGTERM to the whole process group is the trainer's to handle.
    """
    from multiprocessing import forkserver

    ctx.set_forkserver_preload(list(FORKSERVER_PRELOAD))
    saved = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = ",".join(
        filter(None, [saved, "ignore:Using SDL2 binaries:UserWarning"])
    )
    try:
        forkserver.ensure_running()
    finally:
        if saved is None:
            del os.environ["PYTHONWARNINGS"]
        else:
            os.environ["PYTHONWARNINGS"] = saved


def _exit_text(process: Any) -> str:
    process.join(0.5)
    code = process.exitcode
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class ProcessVecEnv(VecEnv):
    """Envs in worker processes over shared memory (see the module docstring for the design).

    `envs_per_worker`: envs each worker steps in sequence; an int must divide `len(env_fns)`;
    `"auto"` spreads the envs over `trainer.spec.available_cpus()` workers (the last may get
    fewer). `worker_timeout`: seconds a worker may take to answer one command (build its envs,
    reset them, or step them) before it is considered hung, killed and replaced; None waits
    forever (deaths are still seen at once). `max_restarts`: replacements of one worker allowed
    within any `restart_window` seconds; one more and the pool gives up with `WorkerError`
    naming the worker's envs and what happened (a ROM that keeps crashing or hanging PyBoy
    fails the run instead of restarting forever, while a rare crash over a long run is fine).

    Fault policy: a worker that dies or hangs is replaced by a fresh one; its envs are rebuilt
    and reset. In the step where that happens their episodes are dropped: `truncated=True`,
    `reward=0`, no info, and `final_obs` = `obs` = the new first observation (the last one was
    lost with the worker). A Python exception inside an env is a bug, not a crash: it closes the
    pool and raises `WorkerError` with the worker's traceback. Any other exception while waiting
    for the workers (KeyboardInterrupt) also closes the pool before it propagates.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], Env]],
        envs_per_worker: int | Literal["auto"] = "auto",
        worker_timeout: float | None = 120.0,
        max_restarts: int = 3,
        restart_window: float = 600.0,
        start_method: Literal["forkserver", "spawn", "fork"] = "forkserver",
        on_env_ready: EnvEvent | None = None,
        on_env_closed: EnvEvent | None = None,
    ):
        fns = check_env_fns(env_fns)
        if worker_timeout is not None and worker_timeout <= 0:
            raise ValueError(f"worker_timeout: must be > 0 seconds or None, got {worker_timeout!r}")
        if not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError(f"max_restarts: must be an int ≥ 0, got {max_restarts!r}")
        if not restart_window > 0:
            raise ValueError(f"restart_window: must be > 0 seconds, got {restart_window!r}")
        if start_method not in ("forkserver", "spawn", "fork"):
            raise ValueError(
                f"start_method: must be forkserver, spawn or fork, got {start_method!r}"
            )
        self.num_envs = len(fns)
        self.envs_per_worker = resolve_envs_per_worker(self.num_envs, envs_per_worker)
        self.worker_timeout = worker_timeout
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.worker_restarts = 0
        self._ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            _ensure_forkserver(self._ctx)
        workers = [
            _Worker(
                index,
                first,
                min(first + self.envs_per_worker, self.num_envs),
                fns[first : first + self.envs_per_worker],
            )
            for index, first in enumerate(range(0, self.num_envs, self.envs_per_worker))
        ]
        self._state = _PoolState(workers)
        self._finalizer = weakref.finalize(self, _shutdown, self._state)
        self.shm_name = f"trainer-vec-{os.getpid()}-{secrets.token_hex(4)}"
        self._needs_reset = True
        self._pending = False
        self._dead: dict[int, str] = {}  # worker index → what happened, found while sending
        try:
            for worker in workers:
                self._launch(worker)
            specs = []
            for worker in workers:  # each answers with its env description once they are built
                specs.append(self._await_spec(worker))
                if on_env_ready is not None:
                    for index in range(worker.first, worker.stop):
                        on_env_ready(index)
            check_same(specs)
            self._spec = specs[0]
            self._state.shm = SharedMemory(
                name=self.shm_name, create=True, size=Buffers.nbytes(self.num_envs, self._spec)
            )
            self._state.buffers = Buffers.create(self.num_envs, self._spec, self._state.shm.buf)
            for worker in workers:
                self._send(worker, commands.ATTACH)
            for worker in workers:
                self._check_answer(worker, self._await(worker))
        except _WorkerDied as exc:
            self._finalizer()
            raise WorkerError(f"vector env: {exc} while starting") from None
        except BaseException:
            self._finalizer()
            raise
        self.observation_shape = self._spec.shape
        self.observation_dtype = np.dtype(self._spec.dtype)
        self.num_actions = self._spec.num_actions
        self._state.on_env_closed = on_env_closed  # from now on every env is up

    # ---- public API -------------------------------------------------------------------------
    @property
    def num_workers(self) -> int:
        return len(self._state.workers)

    def worker_pids(self) -> list[int | None]:
        """Current process id of each worker (changes when a worker is replaced)."""
        return [w.process.pid if w.process is not None else None for w in self._state.workers]

    def _reset(self) -> None:
        self._broadcast(commands.RESET)
        self._collect_or_close(restart_marks=False)

    def _step_async(self) -> None:
        self._broadcast(commands.STEP)

    def _step_wait(self) -> list[dict[str, Any]]:
        return self._collect_or_close(restart_marks=True)

    def close(self) -> None:
        self._finalizer()

    # ---- internals --------------------------------------------------------------------------
    @property
    def _buffers(self) -> Buffers:
        return self._state.buffers  # type: ignore[return-value]

    def _check_open(self) -> None:
        if not self._finalizer.alive:
            raise RuntimeError("vector env is closed")

    def _launch(self, worker: _Worker) -> None:
        command_read, command_write = self._ctx.Pipe(duplex=False)
        answers_read, answers_write = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=commands.worker_main,
            args=(
                worker.env_fns,
                worker.first,
                self.num_envs,
                self.shm_name,
                command_read,
                answers_write,
            ),
            name=f"trainer-vec-worker-{worker.index}",
            daemon=True,
        )
        process.start()
        # Drop our copies of the child's ends: its death then reads as EOF on `answers`.
        command_read.close()
        answers_write.close()
        worker.process, worker.command, worker.answers = process, command_write, answers_read

    def _send(self, worker: _Worker, command: bytes) -> None:
        try:
            os.write(worker.command.fileno(), command)
        except OSError:  # it died since its last answer; `_gather` reads what it left (an error)
            if not worker.answers.poll():
                self._dead.setdefault(worker.index, _exit_text(worker.process))

    def _broadcast(self, command: bytes) -> None:
        for worker in self._state.workers:
            self._send(worker, command)

    def _await(self, worker: _Worker) -> bytes:
        answers, dead = self._gather([worker])
        if dead:
            raise _WorkerDied(f"{worker.label} {dead[worker.index]}")
        return answers[worker.index]

    def _await_spec(self, worker: _Worker) -> EnvDescription:
        message = self._decode(worker, self._await(worker))
        if not (isinstance(message, tuple) and message[0] == "spec"):
            raise WorkerError(
                f"vector env: {worker.label} sent {message!r} instead of its env description"
            )
        return message[1]

    def _gather(self, workers: Sequence[_Worker]) -> tuple[dict[int, bytes], dict[int, str]]:
        """Wait for one answer from each worker; returns (answers, deaths) by worker index."""
        answers: dict[int, bytes] = {}
        dead: dict[int, str] = {}
        poller = select.poll()
        owner: dict[int, tuple[_Worker, bool]] = {}
        for worker in workers:
            if worker.index in self._dead:
                dead[worker.index] = self._dead.pop(worker.index)
                continue
            for fd, is_answer in (
                (worker.answers.fileno(), True),
                (worker.process.sentinel, False),
            ):
                poller.register(fd, select.POLLIN)
                owner[fd] = (worker, is_answer)
        deadline = None if self.worker_timeout is None else time.monotonic() + self.worker_timeout
        while len(answers) + len(dead) < len(workers):
            wait_ms = (
                1000
                if deadline is None
                else max(0, math.ceil((deadline - time.monotonic()) * 1000))
            )
            events = poller.poll(wait_ms)
            if not events and deadline is not None and time.monotonic() >= deadline:
                for worker in workers:
                    if worker.index not in answers and worker.index not in dead:
                        dead[worker.index] = (
                            f"did not answer within worker_timeout={self.worker_timeout} s"
                        )
                break
            # Answers before sentinels: a worker that answered and then died still answered.
            for fd, _ in sorted(events, key=lambda event: not owner[event[0]][1]):
                worker, is_answer = owner[fd]
                if worker.index in answers or worker.index in dead:
                    continue
                if is_answer:
                    try:
                        answers[worker.index] = worker.answers.recv_bytes()
                    except (EOFError, OSError):
                        dead[worker.index] = _exit_text(worker.process)
                else:
                    dead[worker.index] = _exit_text(worker.process)
                poller.unregister(worker.answers.fileno())
                poller.unregister(worker.process.sentinel)
        return answers, dead

    def _decode(self, worker: _Worker, answer: bytes) -> Any:
        message = pickle.loads(answer)
        if isinstance(message, tuple) and message and message[0] in ("error", "invalid"):
            kind, what, text = message
            label = worker.label
            self._finalizer()
            failure = WorkerError(f"vector env: {label} failed while {what}:\n{text}")
            raise InvalidInput(text) if kind == "invalid" else failure
        return message

    def _check_answer(self, worker: _Worker, answer: bytes) -> list[dict[str, Any]]:
        if answer == commands.OK:
            return []
        message = self._decode(worker, answer)
        if isinstance(message, tuple) and message[0] == "infos":
            return message[1]
        label = worker.label
        self._finalizer()
        raise WorkerError(f"vector env: unexpected answer from {label}: {message!r}")

    def _collect_or_close(self, restart_marks: bool) -> list[dict[str, Any]]:
        # Interrupted half way (Ctrl-C, an error), the pipes hold answers nobody will match to
        # their commands: the pool cannot be trusted any more, so close it rather than desync.
        try:
            return self._collect(restart_marks)
        except BaseException:
            self._finalizer()
            raise

    def _collect(self, restart_marks: bool) -> list[dict[str, Any]]:
        workers = self._state.workers
        answers, dead = self._gather(workers)
        infos: list[dict[str, Any]] = []
        for worker in workers:
            if worker.index in answers:
                infos.extend(self._check_answer(worker, answers[worker.index]))
        for index, what in sorted(dead.items()):
            worker = workers[index]
            self._restart(worker, what)
            if restart_marks:
                rows = slice(worker.first, worker.stop)
                b = self._buffers
                b.rewards[rows] = 0.0
                b.terminated[rows] = False
                b.truncated[rows] = True
                b.final_obs[rows] = b.obs[rows]
        return infos

    def _restart(self, worker: _Worker, what: str) -> None:
        """Replace a dead or hung worker by a fresh one with freshly reset envs."""
        while True:
            self._count_restart(worker, what)
            _stop_worker(worker)
            self._launch(worker)
            try:
                spec = self._await_spec(worker)
                if spec != self._spec:
                    self._finalizer()
                    raise WorkerError(
                        f"vector env: restarted {worker.label} built envs {tuple(spec)}, expected {tuple(self._spec)}"
                    )
                for command in (commands.ATTACH, commands.RESET):
                    self._send(worker, command)
                    self._check_answer(worker, self._await(worker))
                return
            except _WorkerDied as exc:
                what = str(exc).removeprefix(f"{worker.label} ")

    def _count_restart(self, worker: _Worker, what: str) -> None:
        """Record one more restart of `worker`; too many within the window fail the pool."""
        now = time.monotonic()
        times = worker.restarts
        times.append(now)
        while times and times[0] < now - self.restart_window:
            times.popleft()
        self.worker_restarts += 1
        if len(times) > self.max_restarts:
            label = worker.label
            self._finalizer()
            raise WorkerError(
                f"vector env: {label} {what}, its restart {len(times)} within "
                f"restart_window={self.restart_window:g} s (max_restarts={self.max_restarts}); "
                "giving up: the environment keeps crashing or hanging (a bad ROM or save state?)"
            )
        logger.warning(
            "vector env: %s %s; starting a new one (restart %d of at most %d within %g s); "
            "its episodes are dropped",
            worker.label, what, len(times), self.max_restarts, self.restart_window,
        )  # fmt: skip
