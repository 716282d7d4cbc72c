"""Collection with the envs split into two groups, stepped in turn while the policy acts on the
other (EnvPool / Sample Factory double buffering), against the training loop's own collector.

    .venv/bin/python scripts/bench_double_buffer.py [SPEC ...] [--envs 2,4] [--steps 600]

Both sides use the same policy network, inference path (`Agent.act` under inference_mode, the
sampler's generator) and emulators (`trainer.envs.env.make_env`), in one process, alternating
(3 rounds each, median reported): the baseline is one pool of N envs, one batched policy call
per vector step (the training loop's collector, without its storage), the other two pools of
N/2, where group A's workers step while the policy runs on group B's observations and the
reverse. Each env still
acts on its own newest observation with the current policy, so this is on-policy and would not
change learning; only the throughput is in question. The learner is not included (neither side
has one). Default specs: the two built-in games (the dungeon, learner-bound; the cavern,
emulator-bound).

Measured (AMD EPYC, 2 CPUs, one run; two groups / one pool): dungeon 0.98×, 1.01×, 1.05× with
2, 4, 8 envs; cavern 0.78×, 0.92×, 0.95×. Not kept: on 2 cores there is nothing to overlap.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from trainer.bench.report import machine_description
from trainer.bench.stages import _make_pool
from trainer.rl.setup import acting_policy, set_torch_threads
from trainer.spec import JobSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPECS = [ROOT / "configs" / "quickstart.yaml", ROOT / "configs" / "cavern.yaml"]


def policy(spec: JobSpec, pool: object) -> Callable[[np.ndarray], np.ndarray]:
    """The training loop's acting path: the spec's network, `Agent.act`, the sampler."""
    return acting_policy(spec, pool.observation_shape, pool.num_actions)


def timed(run: Callable[[int], None], steps: int) -> float:
    run(10)  # warm-up
    start = time.perf_counter()
    run(steps)
    return time.perf_counter() - start


@torch.inference_mode()
def one_pool(spec: JobSpec, num_envs: int, steps: int) -> float:
    """Env steps/s of one pool of `num_envs`: act on all, step all, wait (the loop's way)."""
    pool = _make_pool(spec, num_envs)
    try:
        act = policy(spec, pool)

        def run(count: int) -> None:
            obs = pool.reset().copy()
            for _ in range(count):
                obs = pool.step(act(obs)).obs.copy()

        return steps * num_envs / timed(run, steps)
    finally:
        pool.close()


@torch.inference_mode()
def two_groups(spec: JobSpec, num_envs: int, steps: int) -> float:
    """Env steps/s of two pools of `num_envs // 2`, each stepped while the policy acts on the
    other's observations; `steps` vector steps of each group."""
    half = num_envs // 2
    a, b = _make_pool(spec, half), _make_pool(spec, half)
    try:
        act = policy(spec, a)

        def run(count: int) -> None:
            obs_a, obs_b = a.reset().copy(), b.reset().copy()
            a.step_async(act(obs_a))
            for _ in range(count):
                b.step_async(act(obs_b))  # B's policy call ran while A's workers stepped
                obs_a = a.step_wait().obs.copy()
                a.step_async(act(obs_a))  # A's runs while B's workers step
                obs_b = b.step_wait().obs.copy()
            a.step_wait()

        return steps * 2 * half / timed(run, steps)
    finally:
        a.close()
        b.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="*", default=[str(p) for p in DEFAULT_SPECS])
    parser.add_argument("--envs", default="2,4", help="env counts (even)")
    parser.add_argument("--steps", type=int, default=600, help="vector steps timed per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(machine_description())
    print(f"{'spec':<16} {'envs':>4} {'one pool':>10} {'two groups':>11} {'ratio':>6}")
    for path in args.specs:
        spec = load_spec(path, overrides=[])
        set_torch_threads(spec)
        for num_envs in (int(n) for n in args.envs.split(",")):
            one, two = [], []
            for _ in range(args.rounds):
                one.append(one_pool(spec, num_envs, args.steps))
                two.append(two_groups(spec, num_envs, args.steps))
            a, b = statistics.median(one), statistics.median(two)
            print(f"{Path(path).stem:<16} {num_envs:>4} {a:>10,.0f} {b:>11,.0f} {b / a:>5.2f}×")


if __name__ == "__main__":
    main()
