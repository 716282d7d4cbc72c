"""The vector-env contract: what every backend provides and what a caller may rely on.

`VecEnv` checks the call protocol once (reset before stepping, `step_async` then `step_wait`,
actions validated); a backend implements `_reset`, `_step_async`, `_step_wait`, `_check_open`
and `close`. SB3's `common/vec_env/base_vec_env.py` is the model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from trainer.errors import TrainerError

if TYPE_CHECKING:
    from trainer.envs.vector.buffers import Buffers
    from trainer.envs.vector.fastest import BackendChoice


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


class WorkerError(TrainerError, RuntimeError):
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
    #: With `backend="fastest"`: what the start-up probe measured, and the backend it kept.
    backend_choice: BackendChoice | None = None

    # The call protocol (reset before stepping, step_async then step_wait, actions validated) is
    # checked here once; a backend implements `_reset`, `_step_async` and `_step_wait`.
    _needs_reset: bool = True
    _pending: bool = False
    _buffers: Buffers

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
