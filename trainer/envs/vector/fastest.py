"""`backend: fastest`: both backends built on the real envs and timed for a few steps at start-up,
the faster kept (as `torch.backends.cudnn.benchmark` times convolution algorithms and keeps one).

Which wins depends on the machine as much as on the game. A process pool pays a cross-process
wake-up per worker and step (measured by scripts/bench_pool.py: ~130 µs a round trip on our
2-CPU VM, where an idle vCPU halts), in exchange for stepping the envs in parallel: on a cheap
game and few CPUs the serial pool is faster (scripts/bench_backend.py, the dungeon with 2 envs:
1.18–1.33× end to end); on a heavier one it depends on the machine (the cavern: 0.82–1.20×).

The probe steps with the caller's policy (random actions without one), then the kept pool is
`reset()` by its user: a reset restores each env's start state, so training is the same
whichever wins. The serial backend
has no worker restarts: a crash in an env ends the run (a pod resumes from its checkpoint).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.envs.vector.buffers import EnvEvent
from trainer.envs.vector.process import ProcessVecEnv
from trainer.envs.vector.protocol import Env, VecEnv
from trainer.envs.vector.serial import SerialVecEnv

#: Vector steps timed per backend, in rounds that alternate between them (machine noise hits
#: both alike), after `WARMUP_STEPS` untimed ones.
PROBE_STEPS = 256
PROBE_ROUNDS = 4
WARMUP_STEPS = 4
#: How much faster the serial pool must be to be kept (the probe's noise on a shared 2-CPU VM
#: is about this size).
SERIAL_MARGIN = 1.1


@dataclass(frozen=True)
class BackendChoice:
    """What the probe measured: env steps/s of each backend, and the one kept."""

    serial_steps_per_s: float
    process_steps_per_s: float
    steps: int

    @property
    def backend(self) -> str:
        """Serial only when clearly faster: a near tie goes to the process pool, which replaces
        a dead or hung worker and keeps its speed as the game gets heavier."""
        faster = self.serial_steps_per_s >= SERIAL_MARGIN * self.process_steps_per_s
        return "serial" if faster else "process"

    def describe(self) -> str:
        """One line for the console: the choice and the figures behind it."""
        return (
            f"{self.backend} (env steps/s over {self.steps} steps: "
            f"{self.serial_steps_per_s:,.0f} in this process, {self.process_steps_per_s:,.0f} "
            "in worker processes)"
        )


class _Relay:
    """An env event held back until the pool it belongs to is kept (its envs' lines are then
    printed once), and never passed on for the pool that is closed."""

    def __init__(self, target: EnvEvent | None):
        self.target = target
        self.live = False
        self.pending: list[int] = []

    def __call__(self, index: int) -> None:
        if not self.live:
            self.pending.append(index)
        elif self.target is not None:
            self.target(index)

    def go_live(self) -> None:
        self.live = True
        for index in self.pending:
            self(index)
        self.pending.clear()


#: Picks actions for a batch of observations, as the training loop's policy does.
Act = Callable[[np.ndarray], np.ndarray]


def random_actions(num_actions: int, seed: int = 0) -> Act:
    """Uniform random actions (when no policy is given to time the pools with)."""
    rng = np.random.default_rng(seed)
    return lambda obs: rng.integers(0, num_actions, len(obs))


class _Probe:
    """One pool under test: its own observations, stepped with `act` as the loop would."""

    def __init__(self, pool: VecEnv, act: Act):
        self.pool, self.act = pool, act
        self.obs = pool.reset()
        self.seconds = 0.0

    def run(self, steps: int, timed: bool = True) -> None:
        start = time.perf_counter()
        for _ in range(steps):
            self.obs = self.pool.step(self.act(self.obs)).obs
        if timed:
            self.seconds += time.perf_counter() - start


def fastest_vec_env(
    env_fns: Sequence[Callable[[], Env]],
    on_env_ready: EnvEvent | None = None,
    on_env_closed: EnvEvent | None = None,
    act_factory: Callable[[tuple[int, ...], int], Act] | None = None,
    steps: int = PROBE_STEPS,
    **process_options: Any,
) -> tuple[VecEnv, BackendChoice]:
    """Both pools over `env_fns`, each stepped `steps` times with the policy `act_factory`
    builds for the envs' observation shape and action count (random actions without one: the
    policy's cost between steps is part of what a worker's wake-up costs); the faster is
    returned (its `on_env_ready` lines replayed, its `on_env_closed` wired), the other closed
    silently."""
    ready = {"serial": _Relay(on_env_ready), "process": _Relay(on_env_ready)}
    closed = {"serial": _Relay(on_env_closed), "process": _Relay(on_env_closed)}
    pools: dict[str, VecEnv] = {}
    try:
        # The worker processes first: forked (start_method fork) before this process holds
        # emulators of its own.
        pools["process"] = ProcessVecEnv(
            env_fns,
            on_env_ready=ready["process"],
            on_env_closed=closed["process"],
            **process_options,
        )
        pools["serial"] = SerialVecEnv(env_fns, ready["serial"], closed["serial"])
        first = pools["serial"]
        make_act = act_factory or (lambda shape, actions: random_actions(actions))
        act = make_act(first.observation_shape, first.num_actions)
        probes = {name: _Probe(pool, act) for name, pool in pools.items()}
        for probe in probes.values():
            probe.run(WARMUP_STEPS, timed=False)
        per_round = max(1, steps // PROBE_ROUNDS)
        for _ in range(PROBE_ROUNDS):
            for probe in probes.values():
                probe.run(per_round)
        timed = per_round * PROBE_ROUNDS
        choice = BackendChoice(
            serial_steps_per_s=timed * first.num_envs / probes["serial"].seconds,
            process_steps_per_s=timed * first.num_envs / probes["process"].seconds,
            steps=timed,
        )
    except BaseException:
        for pool in pools.values():
            pool.close()
        raise
    kept = choice.backend
    for name, pool in pools.items():
        if name != kept:
            pool.close()
    ready[kept].go_live()
    closed[kept].go_live()
    return pools[kept], choice
