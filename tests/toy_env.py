"""A deterministic toy environment with `GameBoyEnv`'s interface, for vector-env tests.

A walker on a small grid: actions 0..4 are noop/up/down/left/right. The observation is the
grid with the walker's cell holding a step counter, plus a last row holding the action history
(so it depends on every action of the episode) and the env's index (so envs never look alike).
Reaching the goal cell terminates; `max_steps` truncates. `reset()` restores the exact start.

Everything is plain numpy and picklable through `functools.partial(ToyEnv, index=i, ...)`, so
the same thunks drive the serial and the process backends.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from trainer.errors import InvalidInput

MOVES = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))  # noop, up, down, left, right as (dy, dx)


class ToyEnv:
    num_actions = len(MOVES)

    def __init__(
        self,
        index: int = 0,
        size: int = 5,
        max_steps: int = 7,
        dtype: str = "uint8",
        step_cost_us: float = 0.0,
        step_sleep_us: float = 0.0,
        fail_on_create: bool = False,
        refuse_input: bool = False,
        fail_at_step: int | None = None,
        hang_at_step: int | None = None,
        crash_at_step: int | None = None,
    ):
        if fail_on_create:
            raise ValueError(f"toy env {index}: refusing to start (fail_on_create=True)")
        if refuse_input:  # what a game adapter raises for a bad game.* value
            raise InvalidInput(f"toy.setting: env {index} refuses its input")
        self.index = index
        self.size = size
        self.max_steps = max_steps
        self.step_cost_us = step_cost_us
        self.step_sleep_us = step_sleep_us
        self.observation_dtype = np.dtype(dtype)
        self.observation_shape = (size + 1, size)
        self.start = (index % size, (2 * index + 1) % size)
        self.goal = ((self.start[0] + 1) % size, (self.start[1] + 1) % size)  # two moves away
        self.pos = self.start
        self.steps = 0
        self.episode_return = 0.0
        self.history = 0
        self.closed = False
        self.fail_at_step = fail_at_step  # raise in step() at this many steps since creation
        self.hang_at_step = hang_at_step  # sleep "forever" in step() at this many steps
        self.crash_at_step = crash_at_step  # die by SIGSEGV in step(), as a crashing emulator
        self.total_steps = 0

    def reset(self) -> np.ndarray:
        self.pos = self.start
        self.steps = 0
        self.episode_return = 0.0
        self.history = 0
        return self._obs()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not 0 <= action < self.num_actions:
            raise ValueError(f"toy env {self.index}: action {action} out of range")
        self.total_steps += 1
        if self.total_steps == self.fail_at_step:
            raise RuntimeError(f"toy env {self.index}: failing at step {self.total_steps} as asked")
        if self.total_steps == self.hang_at_step:
            time.sleep(3600)
        if self.total_steps == self.crash_at_step:
            os.kill(os.getpid(), signal.SIGSEGV)
        if self.step_cost_us:  # stand-in for emulator work (busy, like a CPU-bound emulator)
            end = time.perf_counter() + self.step_cost_us * 1e-6
            while time.perf_counter() < end:
                pass
        if self.step_sleep_us:  # an env that waits (I/O, a server): parallel whatever the CPUs
            time.sleep(self.step_sleep_us * 1e-6)
        dy, dx = MOVES[action]
        y = min(max(self.pos[0] + dy, 0), self.size - 1)
        x = min(max(self.pos[1] + dx, 0), self.size - 1)
        self.pos = (y, x)
        self.steps += 1
        self.history = (self.history * 5 + action + 1) % 251
        terminated = self.pos == self.goal
        truncated = not terminated and self.steps >= self.max_steps
        reward = 1.0 if terminated else -0.01 * (action + 1) - 0.001 * self.index
        self.episode_return += reward
        info = {}
        if terminated or truncated:
            info = {"episode_return": self.episode_return, "episode_length": self.steps}
        return self._obs(), reward, terminated, truncated, info

    def close(self) -> None:
        self.closed = True

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.observation_shape, dtype=self.observation_dtype)
        obs[self.pos] = 1 + self.steps
        obs[-1, 0] = self.history
        obs[-1, 1] = self.index
        obs[-1, 2] = self.steps
        return obs
