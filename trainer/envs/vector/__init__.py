"""Vector environments: N emulators stepped together, in this process or in worker processes.

One contract (`protocol.VecEnv`), two interchangeable backends tested the same way (PufferLib's
`vector.py` and SB3's `common/vec_env` are the models):

- `serial.SerialVecEnv` steps every env in this process (1 env, debugging, the determinism
  reference);
- `process.ProcessVecEnv` runs worker processes (`worker.py`) that write into shared memory.

Both run the same step (`buffers.step_slice`). `make_vec_env` picks one, or with `fastest`
times both on the real envs and keeps the faster (`fastest.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from trainer.envs.vector.buffers import EnvEvent, check_env_fns
from trainer.envs.vector.fastest import Act, BackendChoice, fastest_vec_env
from trainer.envs.vector.layout import resolve_backend, resolve_envs_per_worker
from trainer.envs.vector.process import ProcessVecEnv
from trainer.envs.vector.protocol import Env, StepResult, VecEnv, WorkerError
from trainer.envs.vector.serial import SerialVecEnv

__all__ = [
    "BackendChoice",
    "Env",
    "ProcessVecEnv",
    "SerialVecEnv",
    "StepResult",
    "VecEnv",
    "WorkerError",
    "make_vec_env",
    "resolve_backend",
    "resolve_envs_per_worker",
]


def make_vec_env(
    env_fns: Sequence[Callable[[], Env]],
    backend: Literal["auto", "serial", "process", "fastest"] = "auto",
    envs_per_worker: int | Literal["auto"] = "auto",
    on_env_ready: EnvEvent | None = None,
    on_env_closed: EnvEvent | None = None,
    probe_policy: Callable[[tuple[int, ...], int], Act] | None = None,
    **process_options: Any,
) -> VecEnv:
    """Build a vector env. `backend="auto"`: serial for one env, process otherwise;
    `"fastest"`: both timed on these envs, the faster kept (its `backend_choice` says which).

    `on_env_ready(i)` / `on_env_closed(i)` are called when env i is really built / closed.
    `probe_policy(observation_shape, num_actions)` makes the policy `fastest` steps the pools
    with (random actions without one).
    `process_options` go to `ProcessVecEnv` (worker_timeout, max_restarts, restart_window,
    start_method).
    """
    fns = check_env_fns(env_fns)
    resolve_envs_per_worker(len(fns), envs_per_worker)  # fail early, whatever the backend
    chosen = resolve_backend(backend, len(fns))
    if chosen == "fastest":
        pool, choice = fastest_vec_env(
            fns,
            on_env_ready,
            on_env_closed,
            act_factory=probe_policy,
            envs_per_worker=envs_per_worker,
            **process_options,
        )
        pool.backend_choice = choice
        return pool
    if chosen == "serial":
        if process_options:
            raise ValueError(f"{', '.join(process_options)}: only apply to backend='process'")
        return SerialVecEnv(fns, on_env_ready, on_env_closed)
    return ProcessVecEnv(
        fns,
        envs_per_worker=envs_per_worker,
        on_env_ready=on_env_ready,
        on_env_closed=on_env_closed,
        **process_options,
    )
