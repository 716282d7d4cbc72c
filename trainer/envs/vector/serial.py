"""The serial backend: every env in this process (1 env, debugging, the determinism reference)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from trainer.envs.vector.buffers import (
    Buffers,
    EnvEvent,
    check_env_fns,
    close_envs,
    describe_envs,
    reset_slice,
    step_slice,
)
from trainer.envs.vector.protocol import Env, VecEnv


class SerialVecEnv(VecEnv):
    """All envs in this process, stepped one after another in `step_wait`.

    `on_env_ready(i)` is called as env i is built, `on_env_closed(i)` as it is closed."""

    def __init__(
        self,
        env_fns: Sequence[Callable[[], Env]],
        on_env_ready: EnvEvent | None = None,
        on_env_closed: EnvEvent | None = None,
    ):
        fns = check_env_fns(env_fns)
        self.envs: list[Env] = []
        try:
            for index, fn in enumerate(fns):
                self.envs.append(fn())
                if on_env_ready is not None:
                    on_env_ready(index)
            spec = describe_envs(self.envs, 0)
        except BaseException:
            close_envs(self.envs)
            raise
        self.num_envs = len(self.envs)
        self.observation_shape = spec.shape
        self.observation_dtype = np.dtype(spec.dtype)
        self.num_actions = spec.num_actions
        self.worker_restarts = 0
        self._buffers = Buffers.create(self.num_envs, spec)
        self._on_env_closed = on_env_closed
        self._needs_reset = True
        self._pending = False
        self._closed = False

    def _reset(self) -> None:
        reset_slice(self.envs, 0, self._buffers)

    def _step_async(self) -> None:
        pass  # stepping happens in _step_wait, in this process

    def _step_wait(self) -> list[dict[str, Any]]:
        return step_slice(self.envs, 0, self._buffers)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            close_envs(self.envs, self._on_env_closed)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("vector env is closed")
