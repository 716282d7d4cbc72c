"""Micro-benchmark of the vector env backends: serial vs process, 1/2/4 envs, side by side.

    .venv/bin/python scripts/bench_pool.py [--steps 400] [--sizes 1 2 4]

Envs: the toy env as is (measures pure pool overhead), the toy env with 300 µs of busy work
per step (an emulator stand-in), and the built-in game with tiles and pixels observations when
it is available. Also: cold start-up of a 2-worker pool per start method (each in a fresh
interpreter), and the time to detect and replace a SIGKILLed worker.
The measuring function is `trainer.bench.measure_steps_per_second` (also used by `trainer bench`).
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # toy_env

from toy_env import ToyEnv  # noqa: E402

from trainer.bench import measure_steps_per_second  # noqa: E402
from trainer.envs.vector import make_vec_env  # noqa: E402


def game_available() -> bool:
    try:
        from trainer.envs.env import make_env
        from trainer.spec import JobSpec

        make_env(JobSpec(name="bench-probe"), 0).close()
        return True
    except Exception as exc:  # noqa: BLE001 - any reason means: skip the real game
        print(f"(built-in game not available: {exc})")
        return False


def env_fns(kind: str, num_envs: int) -> list:
    if kind == "toy":
        return [functools.partial(ToyEnv, index=i, max_steps=50) for i in range(num_envs)]
    if kind == "toy-300us":
        return [
            functools.partial(ToyEnv, index=i, max_steps=50, step_cost_us=300)
            for i in range(num_envs)
        ]
    from trainer.envs.env import make_env
    from trainer.spec import JobSpec

    obs_type = kind.removeprefix("dungeon-")
    spec = JobSpec(name="bench-pool", env={"obs": {"type": obs_type}})
    return [functools.partial(make_env, spec, i) for i in range(num_envs)]


def startup_seconds(kind: str, start_method: str) -> float:
    """Constructor + reset of a 2-worker pool, in a fresh interpreter (cold forkserver)."""
    code = (
        "import sys, time; sys.argv = ['x']\n"
        f"sys.path.insert(0, {str(ROOT / 'scripts')!r})\n"
        "from bench_pool import env_fns\n"
        "from trainer.envs.vector import ProcessVecEnv\n"
        "if __name__ == '__main__':\n"
        f"    fns = env_fns({kind!r}, 2)\n"
        "    start = time.perf_counter()\n"
        f"    venv = ProcessVecEnv(fns, envs_per_worker=1, start_method={start_method!r})\n"
        "    venv.reset()\n"
        "    print(time.perf_counter() - start)\n"
        "    venv.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return float(out.stdout.split()[-1])


def replace_seconds(kind: str) -> tuple[float, float]:
    """(seconds from SIGKILL to the pool noticing, seconds for the step that replaces the worker)."""
    import logging

    noticed: list[float] = []

    class Stamp(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            noticed.append(time.perf_counter())

    logger = logging.getLogger("trainer.envs.vector")
    handler = Stamp()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with make_vec_env(env_fns(kind, 2), backend="process", envs_per_worker=1) as venv:
            venv.reset()
            venv.step(np.zeros(2, dtype=np.int64))
            venv.step_async(np.zeros(2, dtype=np.int64))
            killed = time.perf_counter()
            os.kill(venv.worker_pids()[1], signal.SIGKILL)
            venv.step_wait()
            done = time.perf_counter()
            assert venv.worker_restarts == 1
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return noticed[0] - killed, done - killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="vector steps timed per cell")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4], help="env counts")
    parser.add_argument(
        "--no-startup", action="store_true", help="skip the start-method comparison"
    )
    args = parser.parse_args()

    kinds = ["toy", "toy-300us"]
    if game_available():
        kinds += ["dungeon-tiles", "dungeon-pixels"]
    print(
        f"CPUs usable: {len(os.sched_getaffinity(0))}; {args.steps} vector steps per cell; steps/s summed over envs\n"
    )

    header = f"{'env':<15}{'N':>3}{'workers':>9}{'serial/s':>11}{'process/s':>11}{'proc/ser':>10}{'serial µs':>11}{'process µs':>12}"
    print(header)
    print("-" * len(header))
    for kind in kinds:
        for num_envs in args.sizes:
            fns = env_fns(kind, num_envs)
            with make_vec_env(fns, backend="serial") as serial:
                serial_sps = measure_steps_per_second(serial, args.steps)
            with make_vec_env(fns, backend="process") as process:
                workers = process.num_workers
                process_sps = measure_steps_per_second(process, args.steps)
            # Latency of one vector step (all N envs), in µs.
            serial_us, process_us = num_envs / serial_sps * 1e6, num_envs / process_sps * 1e6
            print(
                f"{kind:<15}{num_envs:>3}{workers:>9}{serial_sps:>11.0f}{process_sps:>11.0f}"
                f"{process_sps / serial_sps:>9.2f}x{serial_us:>11.0f}{process_us:>12.0f}",
                flush=True,
            )

    real = "dungeon-tiles" if "dungeon-tiles" in kinds else "toy"
    if not args.no_startup:
        print(f"\nCold start of a 2-worker pool (constructor + reset, fresh interpreter), {real}:")
        for method in ("fork", "forkserver", "spawn"):
            times = [startup_seconds(real, method) for _ in range(3)]
            print(
                f"  {method:<11} median {sorted(times)[1]:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times)})"
            )
    noticed, replaced = replace_seconds(real)
    print(
        f"\nSIGKILL during a step ({real}): noticed after {noticed * 1000:.1f} ms, worker replaced and step done after {replaced * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
