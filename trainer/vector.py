"""Vector environments: N emulators stepped together, in this process or in worker processes.

One contract (`VecEnv`), two interchangeable backends tested the same way (PufferLib's
`vector.py` and SB3's `common/vec_env` are the models):

- `SerialVecEnv` steps every env in this process (1 env, debugging, the determinism reference).
- `ProcessVecEnv` runs worker processes that each own `envs_per_worker` envs. Each worker
  creates its envs itself (PyBoy is not thread- or fork-safe to share) and writes
  observations, rewards, flags and final observations in place into one shared-memory block;
  nothing but a one-byte command and a one-byte answer crosses a pipe on the hot path. The rare
  episode infos (and errors, with the worker's traceback) travel pickled on the same pipe.

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

import _posixshmem  # CPython's shm_open (what SharedMemory uses); POSIX only, like select.poll
import logging
import math
import mmap
import multiprocessing as mp
import os
import pickle
import secrets
import select
import signal
import time
import traceback
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.shared_memory import SharedMemory
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np

logger = logging.getLogger(__name__)

#: Modules the forkserver imports once, so every worker forks with them loaded. Missing ones
#: are skipped silently by multiprocessing (pyboy is absent in a launcher-only install).
FORKSERVER_PRELOAD = ("numpy", "pyboy", "trainer.env", "trainer.vector")

# Commands (parent → worker, one byte) and the empty answer (worker → parent).
_STEP, _RESET, _ATTACH, _CLOSE = b"s", b"r", b"a", b"c"
_OK = b"k"
_ALIGN = 64


class Env(Protocol):
    """What a pool needs from one environment (`trainer.env.GameBoyEnv`, `tests/toy_env.py`)."""

    observation_shape: tuple[int, ...]
    observation_dtype: np.dtype
    num_actions: int

    def reset(self) -> np.ndarray: ...
    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]: ...
    def close(self) -> None: ...


@dataclass
class StepResult:
    """One step of all N envs. Arrays may be views into the pool's (shared) buffers: they are
    valid until the next `step_async`/`reset`; copy what you keep (PPO copies them into its
    rollout storage anyway).

    - `obs` (N, *shape): the observation to act on next. Where an episode ended this step it is
      already the first observation of the next episode (auto-reset).
    - `rewards` (N,) float32, `terminated` (N,) bool (a real ending: no bootstrap),
      `truncated` (N,) bool (time limit, or the env's worker was restarted: bootstrap).
    - `final_obs` (N, *shape): the last observation of the episode that ended this step; valid
      only where `terminated | truncated` (elsewhere it holds stale data).
    - `infos`: one dict per finished episode, in env order, the env's final `info` plus
      `"env_index"`. Episodes cut short by a worker restart have no info.
    """

    obs: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray
    infos: list[dict[str, Any]] = field(default_factory=list)

    @property
    def dones(self) -> np.ndarray:
        """(N,) bool: the episode ended this step, for either reason."""
        return self.terminated | self.truncated


class WorkerError(RuntimeError):
    """A worker failed in a way a restart cannot fix (an exception in the env, too many
    restarts). The message carries the worker's traceback text. The pool is closed."""


class VecEnv(ABC):
    """N environments stepped as one. `step` is `step_async` + `step_wait` (SB3's contract).

    Attributes: `num_envs` (N), `observation_shape` (one env's obs shape), `observation_dtype`,
    `num_actions` (actions are ints in [0, num_actions)), `worker_restarts` (workers replaced
    after dying or hanging; always 0 for the serial backend).

    Use as a context manager, or call `close()`: it is idempotent.
    """

    num_envs: int
    observation_shape: tuple[int, ...]
    observation_dtype: np.dtype
    num_actions: int
    worker_restarts: int = 0

    # The call protocol (reset before stepping, step_async then step_wait, actions validated) is
    # checked here once; a backend implements `_reset`, `_step_async` and `_step_wait`.
    _needs_reset: bool = True
    _pending: bool = False
    _buffers: _Buffers

    def reset(self) -> np.ndarray:
        """Reset every env; returns obs (N, *shape), a view valid until the next step."""
        self._check_open()
        if self._pending:
            raise RuntimeError("reset() called between step_async() and step_wait()")
        self._reset()
        self._needs_reset = False
        return self._buffers.obs

    def step_async(self, actions: np.ndarray) -> None:
        """Start a step: `actions` (N,) integers in [0, num_actions). Validated here."""
        self._check_open()
        if self._needs_reset:
            raise RuntimeError("call reset() before stepping")
        if self._pending:
            raise RuntimeError("step_async() called twice without step_wait()")
        self._buffers.actions[:] = self._check_actions(actions)
        self._step_async()
        self._pending = True

    def step_wait(self) -> StepResult:
        """Finish the step started by `step_async`."""
        self._check_open()
        if not self._pending:
            raise RuntimeError("step_wait() called without step_async()")
        self._pending = False
        infos = self._step_wait()
        b = self._buffers
        return StepResult(b.obs, b.rewards, b.terminated, b.truncated, b.final_obs, infos)

    @abstractmethod
    def _reset(self) -> None:
        """Reset every env, writing the first observations into the buffers."""

    @abstractmethod
    def _step_async(self) -> None:
        """Start stepping with the actions already in the buffers."""

    @abstractmethod
    def _step_wait(self) -> list[dict[str, Any]]:
        """Finish the step (buffers filled); returns the finished episodes' infos."""

    @abstractmethod
    def _check_open(self) -> None:
        """RuntimeError when the pool is closed."""

    @abstractmethod
    def close(self) -> None:
        """Release envs, workers and shared memory. Idempotent."""

    def step(self, actions: np.ndarray) -> StepResult:
        """`step_async(actions)` then `step_wait()`."""
        self.step_async(actions)
        return self.step_wait()

    def __enter__(self) -> VecEnv:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- shared checks --------------------------------------------------------------------
    def _check_actions(self, actions: Any) -> np.ndarray:
        array = np.asarray(actions)
        if array.shape != (self.num_envs,):
            raise ValueError(
                f"actions: expected shape ({self.num_envs},) (one per env), got {array.shape}"
            )
        if array.dtype.kind not in "iu":
            raise ValueError(f"actions: expected integers, got dtype {array.dtype}")
        if self.num_envs and (array.min() < 0 or array.max() >= self.num_actions):
            raise ValueError(
                f"actions: every action must be in [0, {self.num_actions}), got min {array.min()}, max {array.max()}"
            )
        return array


# ---- pieces both backends share: the env description, the buffers, the step itself ----------


class _EnvSpec(NamedTuple):
    shape: tuple[int, ...]
    dtype: str  # np.dtype(...).str, e.g. "|u1", "<u2"
    num_actions: int


def _describe(envs: Sequence[Env], first_index: int) -> _EnvSpec:
    specs = []
    for offset, env in enumerate(envs):
        try:
            spec = _EnvSpec(
                tuple(int(n) for n in env.observation_shape),
                np.dtype(env.observation_dtype).str,
                int(env.num_actions),
            )
        except AttributeError as exc:
            raise TypeError(
                f"env_fns[{first_index + offset}] built a {type(env).__name__} without "
                f"observation_shape/observation_dtype/num_actions ({exc})"
            ) from None
        specs.append(spec)
    _check_same(specs, first_index)
    return specs[0]


def _check_same(specs: Sequence[_EnvSpec], first_index: int = 0) -> None:
    for offset, spec in enumerate(specs):
        if spec != specs[0]:
            raise ValueError(
                f"env_fns: every env must have the same observation shape/dtype and action count; "
                f"env {first_index} has {tuple(specs[0])}, env {first_index + offset} has {tuple(spec)}"
            )


@dataclass
class _Buffers:
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    obs: np.ndarray
    final_obs: np.ndarray

    @staticmethod
    def _fields(num_envs: int, spec: _EnvSpec) -> list[tuple[str, tuple[int, ...], np.dtype]]:
        obs_shape = (num_envs, *spec.shape)
        return [
            ("actions", (num_envs,), np.dtype(np.int64)),
            ("rewards", (num_envs,), np.dtype(np.float32)),
            ("terminated", (num_envs,), np.dtype(bool)),
            ("truncated", (num_envs,), np.dtype(bool)),
            ("obs", obs_shape, np.dtype(spec.dtype)),
            ("final_obs", obs_shape, np.dtype(spec.dtype)),
        ]

    @classmethod
    def nbytes(cls, num_envs: int, spec: _EnvSpec) -> int:
        total = 0
        for _, shape, dtype in cls._fields(num_envs, spec):
            total += -(-math.prod(shape) * dtype.itemsize // _ALIGN) * _ALIGN
        return max(total, 1)

    @classmethod
    def create(cls, num_envs: int, spec: _EnvSpec, buffer: Any = None) -> _Buffers:
        """Views into `buffer` (e.g. a SharedMemory's `.buf`), or fresh zeroed arrays."""
        if buffer is None:
            buffer = bytearray(cls.nbytes(num_envs, spec))
        arrays, offset = {}, 0
        for name, shape, dtype in cls._fields(num_envs, spec):
            arrays[name] = np.ndarray(shape, dtype=dtype, buffer=buffer, offset=offset)
            offset += -(-math.prod(shape) * dtype.itemsize // _ALIGN) * _ALIGN
        return cls(**arrays)


def _reset_slice(envs: Sequence[Env], first: int, buffers: _Buffers) -> None:
    for offset, env in enumerate(envs):
        buffers.obs[first + offset] = env.reset()


def _step_slice(envs: Sequence[Env], first: int, buffers: _Buffers) -> list[dict[str, Any]]:
    """Step envs `first..first+len(envs)-1` in place; auto-reset; returns their finished infos.

    The one implementation of a step, run by the serial backend and by every worker, so the two
    backends cannot drift apart.
    """
    infos = []
    for offset, env in enumerate(envs):
        index = first + offset
        obs, reward, terminated, truncated, info = env.step(int(buffers.actions[index]))
        buffers.rewards[index] = reward
        buffers.terminated[index] = terminated
        buffers.truncated[index] = truncated
        if terminated or truncated:
            buffers.final_obs[index] = obs
            infos.append({**info, "env_index": index})
            obs = env.reset()
        buffers.obs[index] = obs
    return infos


def _check_env_fns(env_fns: Sequence[Callable[[], Env]]) -> list[Callable[[], Env]]:
    if isinstance(env_fns, str | bytes) or not isinstance(env_fns, Sequence):
        raise TypeError(
            f"env_fns: expected a sequence of env constructors, got {type(env_fns).__name__}"
        )
    fns = list(env_fns)
    if not fns:
        raise ValueError("env_fns: empty; pass one constructor (thunk) per environment")
    for index, fn in enumerate(fns):
        if not callable(fn):
            raise TypeError(f"env_fns[{index}]: expected a callable that builds an env, got {fn!r}")
    return fns


def _close_envs(envs: Sequence[Env]) -> None:
    for env in envs:
        try:
            env.close()
        except Exception:  # noqa: BLE001 - closing is best effort, the first error is reported
            logger.debug("vector env: closing %r failed", env, exc_info=True)


# ---- serial backend -----------------------------------------------------------------------


class SerialVecEnv(VecEnv):
    """All envs in this process, stepped one after another in `step_wait`."""

    def __init__(self, env_fns: Sequence[Callable[[], Env]]):
        fns = _check_env_fns(env_fns)
        self.envs: list[Env] = []
        try:
            for fn in fns:
                self.envs.append(fn())
            spec = _describe(self.envs, 0)
        except BaseException:
            _close_envs(self.envs)
            raise
        self.num_envs = len(self.envs)
        self.observation_shape = spec.shape
        self.observation_dtype = np.dtype(spec.dtype)
        self.num_actions = spec.num_actions
        self.worker_restarts = 0
        self._buffers = _Buffers.create(self.num_envs, spec)
        self._needs_reset = True
        self._pending = False
        self._closed = False

    def _reset(self) -> None:
        _reset_slice(self.envs, 0, self._buffers)

    def _step_async(self) -> None:
        pass  # stepping happens in _step_wait, in this process

    def _step_wait(self) -> list[dict[str, Any]]:
        return _step_slice(self.envs, 0, self._buffers)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _close_envs(self.envs)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("vector env is closed")


# ---- process backend ----------------------------------------------------------------------


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
    buffers: _Buffers | None = None


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
                os.write(worker.command.fileno(), _CLOSE)
            except OSError:
                pass
    deadline = time.monotonic() + 2.0
    for worker in state.workers:
        _stop_worker(worker, grace=max(0.0, deadline - time.monotonic()))
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
    forever (deaths are still seen at once). `max_restarts`: replacements allowed over the
    pool's life before it gives up with `WorkerError`.

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
        max_restarts: int = 10,
        start_method: Literal["forkserver", "spawn", "fork"] = "forkserver",
    ):
        fns = _check_env_fns(env_fns)
        if worker_timeout is not None and worker_timeout <= 0:
            raise ValueError(f"worker_timeout: must be > 0 seconds or None, got {worker_timeout!r}")
        if not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError(f"max_restarts: must be an int ≥ 0, got {max_restarts!r}")
        if start_method not in ("forkserver", "spawn", "fork"):
            raise ValueError(
                f"start_method: must be forkserver, spawn or fork, got {start_method!r}"
            )
        self.num_envs = len(fns)
        self.envs_per_worker = resolve_envs_per_worker(self.num_envs, envs_per_worker)
        self.worker_timeout = worker_timeout
        self.max_restarts = max_restarts
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
            specs = [self._await_spec(worker) for worker in workers]
            _check_same(specs)
            self._spec = specs[0]
            self._state.shm = SharedMemory(
                name=self.shm_name, create=True, size=_Buffers.nbytes(self.num_envs, self._spec)
            )
            self._state.buffers = _Buffers.create(self.num_envs, self._spec, self._state.shm.buf)
            for worker in workers:
                self._send(worker, _ATTACH)
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

    # ---- public API -------------------------------------------------------------------------
    @property
    def num_workers(self) -> int:
        return len(self._state.workers)

    def worker_pids(self) -> list[int | None]:
        """Current process id of each worker (changes when a worker is replaced)."""
        return [w.process.pid if w.process is not None else None for w in self._state.workers]

    def _reset(self) -> None:
        self._broadcast(_RESET)
        self._collect_or_close(restart_marks=False)

    def _step_async(self) -> None:
        self._broadcast(_STEP)

    def _step_wait(self) -> list[dict[str, Any]]:
        return self._collect_or_close(restart_marks=True)

    def close(self) -> None:
        self._finalizer()

    # ---- internals --------------------------------------------------------------------------
    @property
    def _buffers(self) -> _Buffers:
        return self._state.buffers  # type: ignore[return-value]

    def _check_open(self) -> None:
        if not self._finalizer.alive:
            raise RuntimeError("vector env is closed")

    def _launch(self, worker: _Worker) -> None:
        command_read, command_write = self._ctx.Pipe(duplex=False)
        answers_read, answers_write = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=_worker_main,
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
        except OSError:  # BrokenPipeError: it died since its last answer
            self._dead.setdefault(worker.index, _exit_text(worker.process))

    def _broadcast(self, command: bytes) -> None:
        for worker in self._state.workers:
            self._send(worker, command)

    def _await(self, worker: _Worker) -> bytes:
        answers, dead = self._gather([worker])
        if dead:
            raise _WorkerDied(f"{worker.label} {dead[worker.index]}")
        return answers[worker.index]

    def _await_spec(self, worker: _Worker) -> _EnvSpec:
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
        if isinstance(message, tuple) and message and message[0] == "error":
            _, what, text = message
            label = worker.label
            self._finalizer()
            raise WorkerError(f"vector env: {label} failed while {what}:\n{text}")
        return message

    def _check_answer(self, worker: _Worker, answer: bytes) -> list[dict[str, Any]]:
        if answer == _OK:
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
            self.worker_restarts += 1
            logger.warning(
                "vector env: %s %s; starting a new one (restart %d of at most %d); its episodes are dropped",
                worker.label,
                what,
                self.worker_restarts,
                self.max_restarts,
            )
            if self.worker_restarts > self.max_restarts:
                label = worker.label
                self._finalizer()
                raise WorkerError(
                    f"vector env: {label} {what}; giving up after max_restarts={self.max_restarts}"
                )
            _stop_worker(worker)
            self._launch(worker)
            try:
                spec = self._await_spec(worker)
                if spec != self._spec:
                    self._finalizer()
                    raise WorkerError(
                        f"vector env: restarted {worker.label} built envs {tuple(spec)}, expected {tuple(self._spec)}"
                    )
                for command in (_ATTACH, _RESET):
                    self._send(worker, command)
                    self._check_answer(worker, self._await(worker))
                return
            except _WorkerDied as exc:
                what = str(exc).removeprefix(f"{worker.label} ")


def _attach_shared_memory(name: str) -> mmap.mmap:
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


def _worker_main(
    env_fns: list[Callable[[], Env]],
    first: int,
    num_envs: int,
    shm_name: str,
    command: Any,
    answers: Any,
) -> None:
    """A worker's command loop: build envs, describe them, then serve one-byte commands."""
    # Ctrl-C goes to the whole process group: let the parent handle it and close us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    envs: list[Env] = []
    what = "creating its environments"
    try:
        for fn in env_fns:
            envs.append(fn())
        spec = _describe(envs, first)
        answers.send_bytes(pickle.dumps(("spec", spec)))
        buffers = None
        fd = command.fileno()
        while True:
            byte = os.read(fd, 1)
            if byte == _STEP:
                what = "stepping"
                infos = _step_slice(envs, first, buffers)
                answers.send_bytes(pickle.dumps(("infos", infos)) if infos else _OK)
            elif byte == _RESET:
                what = "resetting"
                _reset_slice(envs, first, buffers)
                answers.send_bytes(_OK)
            elif byte == _ATTACH:
                what = "attaching shared memory"
                mapping = _attach_shared_memory(shm_name)
                buffers = _Buffers.create(num_envs, spec, mapping)
                answers.send_bytes(_OK)
            elif byte in (_CLOSE, b""):  # b"": the parent is gone
                break
            else:
                what = "reading its command pipe"
                raise RuntimeError(f"unknown command {byte!r}")
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    except BaseException:
        try:
            answers.send_bytes(pickle.dumps(("error", what, traceback.format_exc())))
        except OSError:
            pass
    finally:
        buffers = None
        _close_envs(envs)


# ---- choosing a backend -------------------------------------------------------------------


def resolve_envs_per_worker(num_envs: int, envs_per_worker: int | Literal["auto"]) -> int:
    """`auto`: spread `num_envs` over `available_cpus()` workers (ceil division)."""
    if envs_per_worker == "auto":
        from trainer.spec import available_cpus

        workers = min(num_envs, available_cpus())
        return -(-num_envs // workers)
    if (
        isinstance(envs_per_worker, bool)
        or not isinstance(envs_per_worker, int)
        or envs_per_worker < 1
    ):
        raise ValueError(f"envs_per_worker: must be 'auto' or an int ≥ 1, got {envs_per_worker!r}")
    if num_envs % envs_per_worker:
        raise ValueError(
            f"envs_per_worker: {envs_per_worker} does not divide the number of envs ({num_envs}); "
            "pick a divisor or 'auto'"
        )
    return envs_per_worker


def make_vec_env(
    env_fns: Sequence[Callable[[], Env]],
    backend: Literal["auto", "serial", "process"] = "auto",
    envs_per_worker: int | Literal["auto"] = "auto",
    **process_options: Any,
) -> VecEnv:
    """Build a vector env. `backend="auto"`: serial for one env, process otherwise.

    `process_options` go to `ProcessVecEnv` (worker_timeout, max_restarts, start_method).
    """
    fns = _check_env_fns(env_fns)
    if backend not in ("auto", "serial", "process"):
        raise ValueError(f"backend: must be 'auto', 'serial' or 'process', got {backend!r}")
    resolve_envs_per_worker(len(fns), envs_per_worker)  # fail early, whatever the backend
    if backend == "auto":
        backend = "serial" if len(fns) == 1 else "process"
    if backend == "serial":
        if process_options:
            raise ValueError(f"{', '.join(process_options)}: only apply to backend='process'")
        return SerialVecEnv(fns)
    return ProcessVecEnv(fns, envs_per_worker=envs_per_worker, **process_options)


def measure_steps_per_second(
    vec_env: VecEnv,
    steps: int,
    actions_fn: Callable[[int], np.ndarray] | None = None,
    warmup: int = 10,
) -> float:
    """Environment steps per second (summed over the N envs) over `steps` calls of `step`.

    `actions_fn(t)` gives the (N,) actions of call t (default: uniform random, seed 0). Resets
    first and runs `warmup` untimed steps. The policy is not included: this is the pool's speed.
    """
    if actions_fn is None:
        rng = np.random.default_rng(0)
        table = rng.integers(0, vec_env.num_actions, size=(256, vec_env.num_envs))

        def actions_fn(t: int) -> np.ndarray:
            return table[t % len(table)]

    vec_env.reset()
    for t in range(warmup):
        vec_env.step(actions_fn(t))
    start = time.perf_counter()
    for t in range(steps):
        vec_env.step(actions_fn(warmup + t))
    return steps * vec_env.num_envs / (time.perf_counter() - start)
