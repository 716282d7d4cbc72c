"""The stages `trainer bench` measures, each a function returning its figure.

Heavy imports (torch, PyBoy, the pool) happen inside the functions, so listing or rendering a
report needs none of them.
"""

from __future__ import annotations

import functools
import io
import multiprocessing as mp
import queue
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainer.spec import JobSpec


# ---- 1. raw emulator ------------------------------------------------------------------------
def _raw_worker(spec_json: str, steps: int, seed: int, barrier: Any, results: Any) -> None:
    """One emulator, no env layer: `GameBoyEnv.step`'s own press/tick/release (`press_and_tick`)."""
    from trainer.envs.env import press_and_tick
    from trainer.games import adapter_for, resolve_rom
    from trainer.games.emulator import start_pyboy

    spec = JobSpec.model_validate_json(spec_json)
    pyboy = start_pyboy(resolve_rom(spec.game.rom).read_bytes())
    adapter_for(spec.game).boot(pyboy)
    buttons = [None if a == "noop" else a for a in spec.env.actions]
    env = spec.env
    render = env.obs.type == "pixels"
    choice = np.random.default_rng(seed).integers(0, len(buttons), size=steps)
    barrier.wait()
    start = time.perf_counter()
    for action in choice:
        press_and_tick(pyboy, buttons[action], env.hold_frames, env.frame_skip, render)
    results.put((steps * env.frame_skip, time.perf_counter() - start))
    pyboy.stop(save=False)


def bench_raw_emulator(spec: JobSpec, num_envs: int, steps: int) -> float:
    """Frames/s of `num_envs` bare emulators in as many processes, run at the same time."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(num_envs), ctx.Queue()
    procs = [
        ctx.Process(
            target=_raw_worker,
            args=(spec.model_dump_json(), steps, i, barrier, results),
            daemon=True,
        )
        for i in range(num_envs)
    ]
    for p in procs:
        p.start()
    figures = _gather(procs, results)
    for p in procs:
        p.join()
    frames = sum(f for f, _ in figures)
    return frames / max(t for _, t in figures)


def _gather(procs: Sequence[Any], results: Any, timeout_s: float = 600.0) -> list[Any]:
    """One result from each process. A process that died without its result (its traceback is
    on stderr above) is `TrainerError` at once, not a wait of `timeout_s`; the others, blocked
    at the start barrier, are stopped."""
    from trainer.errors import TrainerError

    figures: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(figures) < len(procs):
            try:
                figures.append(results.get(timeout=0.5))
            except queue.Empty:
                failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if failed or time.monotonic() > deadline:
                    why = (
                        f"exited with code {failed[0]}" if failed else f"ran over {timeout_s:.0f} s"
                    )
                    raise TrainerError(f"bench: a raw-emulator process {why}") from None
    except BaseException:
        for p in procs:
            p.terminate()
        raise
    return figures


# ---- 2, 3, 6. the pool ---------------------------------------------------------------------
def _make_pool(spec: JobSpec, num_envs: int) -> Any:
    from trainer.envs.env import make_env
    from trainer.envs.vector import make_vec_env

    point = spec.with_num_envs(num_envs)
    return make_vec_env(
        [functools.partial(make_env, point, i) for i in range(num_envs)],
        backend=point.env.backend,
        envs_per_worker=point.env.envs_per_worker,
    )


def measure_steps_per_second(
    vec_env: Any,
    steps: int,
    actions_fn: Callable[[int], np.ndarray] | None = None,
    warmup: int = 10,
) -> float:
    """Environment steps per second (summed over the N envs) over `steps` calls of `step`.

    `actions_fn(t)` gives the (N,) actions of call t (default: uniform random, seed 0). Resets
    first and runs `warmup` untimed steps. The policy is not included: this is the pool's speed.
    """
    if actions_fn is None:
        rng = np.random.default_rng(0)
        table = rng.integers(0, vec_env.num_actions, size=(256, vec_env.num_envs))

        def actions_fn(t: int) -> np.ndarray:
            return table[t % len(table)]

    vec_env.reset()
    for t in range(warmup):
        vec_env.step(actions_fn(t))
    start = time.perf_counter()
    for t in range(steps):
        vec_env.step(actions_fn(warmup + t))
    return steps * vec_env.num_envs / (time.perf_counter() - start)


def bench_pool(spec: JobSpec, num_envs: int, steps: int) -> float:
    pool = _make_pool(spec, num_envs)
    try:
        return measure_steps_per_second(pool, steps)
    finally:
        pool.close()


def bench_rollout(spec: JobSpec, num_envs: int, steps: int) -> float:
    """Steps/s of the pool driven by the policy: the training loop's own collector (one batched
    inference call per vector step, results stored in a rollout buffer), without the update."""
    from trainer.rl.rollout import Collector, Rollout
    from trainer.rl.seeding import generator
    from trainer.rl.setup import build_agent, resolve_device
    from trainer.rl.stopping import StopFlag

    device = resolve_device(spec.ppo.device)
    pool = _make_pool(spec, num_envs)
    try:
        agent = build_agent(spec, pool.observation_shape, pool.num_actions, device)

        def collector(rollout_steps: int) -> Collector:
            return Collector(
                pool,
                agent,
                gamma=spec.ppo.gamma,
                rollout_steps=rollout_steps,
                total_steps=rollout_steps * num_envs,
                sampler=generator(spec.seed, device),
                stop=StopFlag(),
                device=device,
            )

        buffer = Rollout.for_pool(pool, steps, device)
        collector(min(10, steps)).collect(buffer)  # warm-up
        timed = collector(steps)
        start = time.perf_counter()
        timed.collect(buffer)
        return steps * num_envs / (time.perf_counter() - start)
    finally:
        pool.close()


_STARTUP_PROBE = """
import sys, time
start = time.perf_counter()
import functools, numpy as np
from trainer.envs.env import make_env
from trainer.spec import JobSpec
from trainer.envs.vector import make_vec_env
spec = JobSpec.model_validate_json(sys.argv[1])
pool = make_vec_env([functools.partial(make_env, spec, i) for i in range(spec.env.num_envs)],
                    backend=spec.env.backend, envs_per_worker=spec.env.envs_per_worker)
pool.reset()
pool.step(np.zeros(spec.env.num_envs, dtype=np.int64))
print(time.perf_counter() - start)
pool.close()
"""


def bench_startup(spec: JobSpec, num_envs: int = 2) -> float:
    """Seconds from a fresh Python process reading the spec to the pool's first step (the env
    modules' imports, worker start, emulator boot, reset), measured cold: the emulators' share
    of a pod's start-up (`bench_trainer_startup` is the whole of it)."""
    import subprocess
    import sys

    point = spec.with_num_envs(num_envs)
    out = subprocess.run(
        [sys.executable, "-c", _STARTUP_PROBE, point.model_dump_json()],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def bench_trainer_startup(
    spec: JobSpec, num_envs: int = 2, command: Sequence[str] | None = None
) -> float:
    """Seconds from launching `trainer run` on `spec` in a fresh process to its first rollout:
    the interpreter, every import (torch, PyBoy), the spec, the emulators (and `fastest`'s
    probe), the network and its optimizer. What a pod pays before it trains, less MLflow (off:
    its start depends on the server). `bench_startup` is the emulators' share of it. `command`:
    what stands for `python -m trainer` (a benchmark's baseline)."""
    import subprocess
    import sys

    from trainer.rl.loop import TRAINING_STARTS

    with tempfile.TemporaryDirectory() as tmp:
        one_rollout = spec.ppo.rollout_steps * num_envs
        point = scratch_run(spec, num_envs, one_rollout, tmp).updated({"checkpoint.video": False})
        path = Path(tmp) / "spec.yaml"
        path.write_text(point.to_yaml())
        start = time.perf_counter()
        proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "trainer"]), "run", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        seconds, output = float("nan"), []
        assert proc.stdout is not None
        for line in proc.stdout:
            if TRAINING_STARTS in line and seconds != seconds:
                seconds = time.perf_counter() - start
            output.append(line)
        if proc.wait() != 0 or seconds != seconds:
            raise RuntimeError(f"trainer run failed to start:\n{''.join(output[-20:])}")
    return seconds


def bench_memory(spec: JobSpec, num_envs: int = 2) -> float:
    """PSS (MB) per environment of a process-pool worker holding one environment."""
    from trainer.envs.vector import ProcessVecEnv

    pool = _make_pool(spec.updated({"env.backend": "process", "env.envs_per_worker": 1}), num_envs)
    try:
        pool.reset()
        pool.step(np.zeros(num_envs, dtype=np.int64))
        assert isinstance(pool, ProcessVecEnv)
        pss = [_pss_mb(pid) for pid in pool.worker_pids() if pid is not None]
        return float(np.mean(pss)) if pss else float("nan")
    finally:
        pool.close()


def _pss_mb(pid: int) -> float:
    """Proportional set size: shared pages (libraries, the ROM) split between the processes
    that map them, so summing over workers does not double count (proc(5), smaps_rollup)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---- 4. learner ----------------------------------------------------------------------------
def learner_pass(
    spec: JobSpec,
    samples: int,
    obs_shape: tuple[int, ...],
    num_actions: int,
    device_name: str | None = None,
) -> tuple[Any, Callable[[], None], int]:
    """(agent, one_pass, samples per pass): one epoch of the spec's PPO update (forward, backward,
    Adam step per minibatch) over a random batch of at least `samples`' worth of one rollout, on
    `device_name` (default: the spec's `ppo.device`)."""
    import torch

    from trainer.envs.env import NUM_TILE_IDS
    from trainer.rl.ppo import Batch, make_optimizer, ppo_update
    from trainer.rl.setup import build_agent, loss_config, resolve_device

    device = resolve_device(spec.ppo.device if device_name is None else device_name)
    agent = build_agent(spec, obs_shape, num_actions, device)
    high = NUM_TILE_IDS if spec.env.obs.type == "tiles" else 256
    dtype = torch.int16 if spec.env.obs.type == "tiles" else torch.uint8
    size = max(spec.ppo.batch_size, samples)
    obs = torch.randint(0, high, (size, *obs_shape), device=device).to(dtype)
    actions = torch.randint(0, num_actions, (size,), device=device)
    zeros = torch.zeros(size, device=device)
    batch = Batch(obs, actions, zeros - 1.0, torch.randn(size, device=device), zeros, zeros)
    cfg = loss_config(spec)
    optimizer = make_optimizer(agent, spec.ppo.learning_rate)

    def one_pass() -> None:
        ppo_update(
            agent,
            optimizer,
            batch,
            update_epochs=1,
            minibatch_size=spec.ppo.batch_size,
            max_grad_norm=spec.ppo.max_grad_norm,
            target_kl=None,
            cfg=cfg,
        )
        if device.type == "cuda":
            torch.cuda.synchronize()

    return agent, one_pass, size


def bench_learner(
    spec: JobSpec,
    samples: int,
    obs_shape: tuple[int, ...],
    num_actions: int,
    device_name: str | None = None,
) -> float:
    """Samples/s through forward + backward + Adam step for the configured network, on
    `device_name` (default: the spec's `ppo.device`)."""
    size = spec.ppo.rollout_steps * 2
    _, one_pass, size = learner_pass(spec, size, obs_shape, num_actions, device_name)
    one_pass()  # warm-up
    passes = max(1, samples // size)
    start = time.perf_counter()
    for _ in range(passes):
        one_pass()
    return passes * size / (time.perf_counter() - start)


def learner_devices() -> list[str]:
    """Every device this machine can train on: the CPU, and each CUDA GPU."""
    import torch

    return ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]


# ---- 5. end to end ---------------------------------------------------------------------------
def scratch_run(spec: JobSpec, num_envs: int, total_steps: int, folder: str) -> JobSpec:
    """`spec` as a throwaway run: `num_envs` envs, `total_steps`, no MLflow, checkpoints in
    `folder` and never resumed."""
    return spec.with_num_envs(num_envs).updated(
        {
            "ppo.total_steps": total_steps,
            "mlflow.enabled": False,
            "checkpoint.dir": folder,
            "checkpoint.resume": False,
        }
    )


def bench_end_to_end(spec: JobSpec, num_envs: int, total_steps: int) -> dict[str, float]:
    from trainer.rl.console import Console
    from trainer.rl.train import train

    with tempfile.TemporaryDirectory() as tmp:
        point = scratch_run(spec, num_envs, total_steps, tmp)
        summary = train(point, console=Console(io.StringIO()))
    return {
        "num_envs": float(num_envs),
        "total_steps": float(summary.final_step),
        "training_seconds": summary.training_seconds,
        "steps_per_second": summary.steps_per_second,
        "frames_per_second": summary.frames_per_second,
        "episodes_per_second": summary.episodes_per_second,
        "learner_share": summary.learner_fraction,
    }
