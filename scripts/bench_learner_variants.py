"""Ways to run the same PPO update and policy call faster on the CPU, each beside the default
(eager PyTorch, one thread), alternating in one process.

    .venv/bin/python scripts/bench_learner_variants.py [SPEC] [--rounds 5] [--updates 3]

The update is the spec's (`update_epochs` passes over `rollout_steps × num_envs` samples in
minibatches of `batch_size`, forward + backward + Adam), on random observations of the real
game's shape: no emulator runs while it is timed, as in a collect-then-learn update, when the
workers wait. Variants, all computing the same function (learning is unchanged):
- `all CPUs`: torch threads = the CPUs this process may use, for the update only (the loop
  acts with one thread while the workers run);
- `compiled`: the encoder through `torch.compile` (Inductor's C++ kernels), its compile time
  reported apart: a run pays it once per process;
- `bf16 autocast`: the update under `torch.autocast("cpu", dtype=torch.bfloat16)`, oneDNN's
  bfloat16 kernels on a CPU that has them (AVX512-BF16, AMX); lower precision, so this one
  would change learning if it were kept.
The policy call is `Agent.act` on `num_envs` observations under inference mode, eager against
compiled. Figures: milliseconds per update and microseconds per policy call (median of the
rounds), and each variant's speed-up over the default.

`--busy N` runs N processes spinning beside the timing: a shared node's neighbours.

Measured (AMD EPYC, 2 CPUs, train-20k; speed-up over eager on 1 thread). Two runs on an idle
machine:
- all CPUs: 1.47× and 1.18× per update;
- compiled: update 0.92× and 0.89×, policy call 0.85× and 0.86×; compile 6.2 s and 1.8 s
  (Inductor's disk cache cold, then warm).
With `--busy 1`, all CPUs gave 0.46× (84.4 → 185.0 ms): OpenMP's barrier waits on the
descheduled thread. Neither is kept: the update keeps one thread, which a neighbour cannot
stall, and eager mode. bf16 autocast, two later runs on a CPU with AVX512-BF16: 1.06× and 1.02×
per update (81.6 → 77.1 ms, 75.8 → 74.5 ms), within the noise: these convs are too small for
bf16 kernels to pay, and fp32 is kept.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from trainer.bench.report import machine_description
from trainer.bench.stages import _make_pool, learner_pass
from trainer.rl.rollout import obs_to_tensor
from trainer.spec import JobSpec, available_cpus, load_spec

ROOT = Path(__file__).resolve().parents[1]


def timed(run: Callable[[], None], repeats: int) -> float:
    """Seconds per call of `run`, over `repeats` calls."""
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats


def with_threads(threads: int, run: Callable[[], None]) -> Callable[[], None]:
    """`run` with torch's intra-op threads set to `threads`, restored after."""

    def call() -> None:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            run()
        finally:
            torch.set_num_threads(before)

    return call


def in_bfloat16(run: Callable[[], None]) -> Callable[[], None]:
    """`run` under CPU autocast to bfloat16 (convs and matmuls in bf16, the rest in fp32)."""

    def call() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            run()

    return call


def spin() -> None:
    """A neighbour: one core's worth of busy work until terminated."""
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", nargs="?", default=str(ROOT / "configs" / "train-20k.yaml"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=3, help="updates timed per round")
    parser.add_argument("--calls", type=int, default=500, help="policy calls timed per round")
    parser.add_argument("--busy", type=int, default=0, help="spinning processes beside it")
    args = parser.parse_args()
    neighbours = [mp.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for process in neighbours:
        process.start()
    try:
        measure(args)
    finally:
        for process in neighbours:
            process.terminate()


def measure(args: argparse.Namespace) -> None:
    """Build both agents, time every variant in alternating rounds, print the table."""
    spec: JobSpec = load_spec(args.spec, overrides=[])
    num_envs, ppo = spec.resolved_num_envs(), spec.ppo
    pool = _make_pool(spec, 1)
    try:
        obs_shape, num_actions = pool.observation_shape, pool.num_actions
        observations = obs_to_tensor(pool.reset().repeat(num_envs, axis=0))
    finally:
        pool.close()
    torch.set_num_threads(1)
    samples = ppo.rollout_steps * num_envs

    def update(one_pass: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(ppo.update_epochs):
                one_pass()

        return run

    eager_agent, eager_pass, _ = learner_pass(spec, samples, obs_shape, num_actions, "cpu")
    compiled_agent, compiled_pass, _ = learner_pass(spec, samples, obs_shape, num_actions, "cpu")
    compiled_agent.encoder.compile(dynamic=False)
    start = time.perf_counter()
    compiled_pass()
    with torch.inference_mode():
        compiled_agent.act(observations)
    compile_s = time.perf_counter() - start
    cpus = available_cpus()
    updates = {
        "eager, 1 thread": update(eager_pass),
        f"eager, all CPUs ({cpus} threads)": with_threads(cpus, update(eager_pass)),
        "compiled, 1 thread": update(compiled_pass),
        "bf16 autocast, 1 thread": in_bfloat16(update(eager_pass)),
    }
    calls = {
        "eager": lambda: eager_agent.act(observations),
        "compiled": lambda: compiled_agent.act(observations),
    }
    for run in updates.values():
        run()  # warm-up
    update_ms: dict[str, list[float]] = {name: [] for name in updates}
    call_us: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, run in updates.items():
            update_ms[name].append(timed(run, args.updates) * 1e3)
        with torch.inference_mode():
            for name, call in calls.items():
                call_us[name].append(timed(call, args.calls) * 1e6)

    print(machine_description())
    print(
        f"{Path(args.spec).stem}: {samples} samples × {ppo.update_epochs} epochs per update, "
        f"minibatch {ppo.batch_size}; policy call on {num_envs} observations; "
        f"compile {compile_s:.1f} s; {args.busy} spinning neighbour(s)"
    )
    for title, unit, figures in (("update", "ms", update_ms), ("policy call", "µs", call_us)):
        base = statistics.median(next(iter(figures.values())))
        for name, values in figures.items():
            median = statistics.median(values)
            print(f"{title:<12} {name:<28} {median:>9.1f} {unit} {base / median:>6.2f}×")


if __name__ == "__main__":
    main()
