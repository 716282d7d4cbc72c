"""How a pool is laid out: which backend, and how many envs each worker process steps."""

from __future__ import annotations

from typing import Literal

from trainer.spec import available_cpus


def resolve_backend(
    backend: Literal["auto", "serial", "process", "fastest"], num_envs: int
) -> Literal["serial", "process", "fastest"]:
    """`auto`: serial for one env (nothing to overlap), process otherwise. `fastest` stays
    (both are timed when the pool starts) unless there is one env: serial."""
    if backend not in ("auto", "serial", "process", "fastest"):
        raise ValueError(
            f"backend: must be 'auto', 'serial', 'process' or 'fastest', got {backend!r}"
        )
    if backend in ("auto", "fastest") and num_envs == 1:
        return "serial"
    if backend == "auto":
        return "process"
    return backend


def resolve_envs_per_worker(num_envs: int, envs_per_worker: int | Literal["auto"]) -> int:
    """`auto`: spread `num_envs` over `available_cpus()` workers (ceil division)."""
    if envs_per_worker == "auto":
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
