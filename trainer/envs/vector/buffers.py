"""What both backends share: the env description, the step buffers, and the step itself.

`step_slice` is the one implementation of a vector step, run by the serial backend and by every
worker process, so the two backends cannot drift apart. The buffers are plain arrays for the
serial backend and views into one shared-memory block for the process backend.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from trainer.envs.vector.protocol import Env

logger = logging.getLogger(__name__)

#: Each array in the buffers starts on a cache line (64 bytes).
ALIGN = 64


class EnvDescription(NamedTuple):
    shape: tuple[int, ...]
    dtype: str  # np.dtype(...).str, e.g. "|u1", "<u2"
    num_actions: int


def describe_envs(envs: Sequence[Env], first_index: int) -> EnvDescription:
    specs = []
    for offset, env in enumerate(envs):
        try:
            spec = EnvDescription(
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
    check_same(specs, first_index)
    return specs[0]


def check_same(specs: Sequence[EnvDescription], first_index: int = 0) -> None:
    for offset, spec in enumerate(specs):
        if spec != specs[0]:
            raise ValueError(
                f"env_fns: every env must have the same observation shape/dtype and action count; "
                f"env {first_index} has {tuple(specs[0])}, env {first_index + offset} has {tuple(spec)}"
            )


@dataclass
class Buffers:
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    obs: np.ndarray
    final_obs: np.ndarray

    @staticmethod
    def _fields(num_envs: int, spec: EnvDescription) -> list[tuple[str, tuple[int, ...], np.dtype]]:
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
    def nbytes(cls, num_envs: int, spec: EnvDescription) -> int:
        total = 0
        for _, shape, dtype in cls._fields(num_envs, spec):
            total += -(-math.prod(shape) * dtype.itemsize // ALIGN) * ALIGN
        return max(total, 1)

    @classmethod
    def create(cls, num_envs: int, spec: EnvDescription, buffer: Any = None) -> Buffers:
        """Views into `buffer` (e.g. a SharedMemory's `.buf`), or fresh zeroed arrays."""
        if buffer is None:
            buffer = bytearray(cls.nbytes(num_envs, spec))
        arrays, offset = {}, 0
        for name, shape, dtype in cls._fields(num_envs, spec):
            arrays[name] = np.ndarray(shape, dtype=dtype, buffer=buffer, offset=offset)
            offset += -(-math.prod(shape) * dtype.itemsize // ALIGN) * ALIGN
        return cls(**arrays)


def reset_slice(envs: Sequence[Env], first: int, buffers: Buffers) -> None:
    for offset, env in enumerate(envs):
        buffers.obs[first + offset] = env.reset()


def step_slice(envs: Sequence[Env], first: int, buffers: Buffers) -> list[dict[str, Any]]:
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


def check_env_fns(env_fns: Sequence[Callable[[], Env]]) -> list[Callable[[], Env]]:
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


#: Called with an env's index when it is built (`on_env_ready`) or closed (`on_env_closed`).
EnvEvent = Callable[[int], None]


def close_envs(envs: Sequence[Env], on_closed: EnvEvent | None = None, first: int = 0) -> None:
    """Close each env (best effort: a failure is logged, the others still close)."""
    for offset, env in enumerate(envs):
        try:
            env.close()
        except Exception:  # noqa: BLE001 - closing is best effort, the first error is reported
            logger.debug("vector env: closing %r failed", env, exc_info=True)
        if on_closed is not None:
            on_closed(first + offset)
