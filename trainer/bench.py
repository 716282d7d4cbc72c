"""`trainer bench`: throughput, each figure next to its baseline, measured in one run.

1. raw emulator: PyBoy ticking the game with the env's frame skip and render pattern, one process
   per environment, no Python env layer (the limit);
2. the pool with random actions (ratio to 1);
3. rollout with policy inference (ratio to 2);
4. the learner alone: samples/s through forward and backward;
5. end to end: real PPO training (the seed's `train-20k` configuration by default);
6. memory per environment (PSS of a worker process) and start-up time (spec to first step).

A step is `frame_skip` frames; every steps/s figure is printed with its frame skip.
"""

from __future__ import annotations

import functools
import io
import json
import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainer.spec import JobSpec, available_cpus, validate_spec


@dataclass
class EnvCountFigures:
    num_envs: int
    raw_fps: float
    pool_sps: float
    pool_fps: float
    pool_vs_raw: float
    rollout_sps: float
    rollout_vs_pool: float
    train_sps: float = float("nan")
    train_eps: float = float("nan")
    train_learner_share: float = float("nan")


@dataclass
class BenchReport:
    machine: str
    date: str
    cpus: int
    device: str
    frame_skip: int
    rows: list[EnvCountFigures] = field(default_factory=list)
    learner_samples_per_second: float = float("nan")
    end_to_end: dict[str, float] = field(default_factory=dict)
    memory_per_env_mb: float = float("nan")
    startup_seconds: float = float("nan")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def flat_figures(self) -> dict[str, float]:
        """Every number as `name` or `name_e<envs>` (MLflow metric keys)."""
        figures = {
            "learner_samples_per_second": self.learner_samples_per_second,
            "memory_per_env_mb": self.memory_per_env_mb,
            "startup_seconds": self.startup_seconds,
            **{f"end_to_end_{k}": v for k, v in self.end_to_end.items()},
        }
        for row in self.rows:
            for key, value in asdict(row).items():
                if key != "num_envs":
                    figures[f"{key}_e{row.num_envs}"] = value
        return {k: float(v) for k, v in figures.items() if v == v}  # NaN: not measured


# ---- 1. raw emulator ------------------------------------------------------------------------
def _raw_worker(spec_json: str, steps: int, seed: int, barrier: Any, results: Any) -> None:
    """One emulator, no env layer: the same press/tick/release/tick pattern as `GameBoyEnv.step`."""
    from trainer.env import import_pyboy
    from trainer.games import make_adapter, resolve_rom

    PyBoy = import_pyboy()

    spec = JobSpec.model_validate_json(spec_json)
    rom = resolve_rom(spec.game.rom).read_bytes()
    pyboy = PyBoy(io.BytesIO(rom), window="null", sound_emulated=False, log_level="ERROR")
    pyboy.set_emulation_speed(0)
    make_adapter(spec.game.adapter, spec.game.reward).boot(pyboy)
    buttons = [None if a == "noop" else a for a in spec.env.actions]
    hold, rest = spec.env.hold_frames, spec.env.frame_skip - spec.env.hold_frames
    render = spec.env.obs.type == "pixels"
    choice = np.random.default_rng(seed).integers(0, len(buttons), size=steps)
    barrier.wait()
    start = time.perf_counter()
    for action in choice:
        button = buttons[action]
        if button is None:
            pyboy.tick(hold + rest, render)
        else:
            pyboy.button_press(button)
            pyboy.tick(hold, render and rest == 0)
            pyboy.button_release(button)
            if rest:
                pyboy.tick(rest, render)
    results.put((steps * spec.env.frame_skip, time.perf_counter() - start))
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
    figures = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    frames = sum(f for f, _ in figures)
    return frames / max(t for _, t in figures)


# ---- 2, 3, 6. the pool ---------------------------------------------------------------------
def _make_pool(spec: JobSpec, num_envs: int) -> Any:
    from trainer.env import make_env
    from trainer.vector import make_vec_env

    point = spec.with_num_envs(num_envs)
    return make_vec_env(
        [functools.partial(make_env, point, i) for i in range(num_envs)],
        backend=point.env.backend,
        envs_per_worker=point.env.envs_per_worker,
    )


def bench_pool(spec: JobSpec, num_envs: int, steps: int) -> float:
    from trainer.vector import measure_steps_per_second

    pool = _make_pool(spec, num_envs)
    try:
        return measure_steps_per_second(pool, steps)
    finally:
        pool.close()


def bench_rollout(spec: JobSpec, num_envs: int, steps: int) -> float:
    """Steps/s of the pool driven by the policy: the training loop's own collector (one batched
    inference call per vector step, results stored in a rollout buffer), without the update."""
    from trainer.train import (
        Collector,
        Console,
        Progress,
        Rollout,
        StopFlag,
        build_agent,
        resolve_device,
    )

    device = resolve_device(spec.ppo.device)
    pool = _make_pool(spec, num_envs)
    try:
        agent = build_agent(spec, pool.observation_shape, pool.num_actions, device)
        collector = Collector(
            pool,
            agent,
            spec,
            Progress(),
            Console(io.StringIO()),
            lambda *_: None,
            StopFlag(),
            device,
        )
        buffer = Rollout.for_pool(pool, steps, device)
        collector.collect(buffer, min(10, steps))  # warm-up
        start = time.perf_counter()
        collector.collect(buffer, steps)
        return steps * num_envs / (time.perf_counter() - start)
    finally:
        pool.close()


_STARTUP_PROBE = """
import sys, time
start = time.perf_counter()
import functools, numpy as np
from trainer.env import make_env
from trainer.spec import JobSpec
from trainer.vector import make_vec_env
spec = JobSpec.model_validate_json(sys.argv[1])
pool = make_vec_env([functools.partial(make_env, spec, i) for i in range(spec.env.num_envs)],
                    backend=spec.env.backend, envs_per_worker=spec.env.envs_per_worker)
pool.reset()
pool.step(np.zeros(spec.env.num_envs, dtype=np.int64))
print(time.perf_counter() - start)
pool.close()
"""


def bench_startup(spec: JobSpec, num_envs: int = 2) -> float:
    """Seconds from a fresh Python process reading the spec to the pool's first step (imports,
    worker start, emulator boot, reset): what a pod pays before training, measured cold."""
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


def bench_memory(spec: JobSpec, num_envs: int = 2) -> float:
    """PSS (MB) per environment of a process-pool worker holding one environment."""
    from trainer.vector import ProcessVecEnv

    env = spec.env.model_copy(update={"backend": "process", "envs_per_worker": 1})
    pool = _make_pool(spec.model_copy(update={"env": env}), num_envs)
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
def bench_learner(
    spec: JobSpec, samples: int, obs_shape: tuple[int, ...], num_actions: int
) -> float:
    """Samples/s through forward + backward + Adam step for the configured network."""
    import torch

    from trainer.env import NUM_TILE_IDS
    from trainer.ppo import Batch, LossConfig, make_optimizer, ppo_update
    from trainer.train import build_agent, resolve_device

    device = resolve_device(spec.ppo.device)
    agent = build_agent(spec, obs_shape, num_actions, device)
    high = NUM_TILE_IDS if spec.env.obs.type == "tiles" else 256
    dtype = torch.int16 if spec.env.obs.type == "tiles" else torch.uint8
    size = max(spec.ppo.batch_size, spec.ppo.rollout_steps * 2)
    obs = torch.randint(0, high, (size, *obs_shape), device=device).to(dtype)
    actions = torch.randint(0, num_actions, (size,), device=device)
    zeros = torch.zeros(size, device=device)
    batch = Batch(obs, actions, zeros - 1.0, torch.randn(size, device=device), zeros, zeros)
    cfg = LossConfig(
        spec.ppo.clip_coef,
        spec.ppo.clip_vloss,
        spec.ppo.norm_adv,
        spec.ppo.ent_coef,
        spec.ppo.vf_coef,
    )
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

    one_pass()  # warm-up
    passes = max(1, samples // size)
    start = time.perf_counter()
    for _ in range(passes):
        one_pass()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return passes * size / (time.perf_counter() - start)


# ---- 5. end to end ---------------------------------------------------------------------------
def bench_end_to_end(spec: JobSpec, num_envs: int, total_steps: int) -> dict[str, float]:
    from trainer.train import Console, train

    with tempfile.TemporaryDirectory() as tmp:
        data = spec.with_num_envs(num_envs).model_dump(mode="json")
        data["ppo"]["total_steps"] = total_steps
        data["mlflow"]["enabled"] = False
        data["checkpoint"] = {**data["checkpoint"], "dir": tmp, "resume": False}
        summary = train(validate_spec(data), console=Console(io.StringIO()))
    return {
        "num_envs": float(num_envs),
        "total_steps": float(summary.final_step),
        "training_seconds": summary.training_seconds,
        "steps_per_second": summary.steps_per_second,
        "frames_per_second": summary.frames_per_second,
        "episodes_per_second": summary.episodes_per_second,
        "learner_share": summary.learner_fraction,
    }


# ---- the whole run ---------------------------------------------------------------------------
SEED_TRAIN_20K = {
    "name": "bench",
    "env": {"num_envs": 2, "episode_length": 750, "frame_skip": 4},
    "ppo": {"total_steps": 20000, "rollout_steps": 128, "update_epochs": 6, "batch_size": 128},
    "mlflow": {"enabled": False},
}


def run_bench(
    spec: JobSpec | None = None,
    env_counts: tuple[int, ...] = (1, 2, 4),
    quick: bool = False,
    end_to_end_all: bool = True,
    progress: Any = None,
) -> BenchReport:
    """Measure everything; `quick` shrinks every run to a smoke test (no meaningful figures)."""
    import platform

    import torch

    from trainer.train import resolve_device, set_torch_threads

    spec = spec or validate_spec(SEED_TRAIN_20K)
    set_torch_threads(spec)
    steps = 50 if quick else 2000
    e2e_steps = 512 if quick else spec.ppo.total_steps
    say = progress or (lambda message: None)
    report = BenchReport(
        machine=f"{platform.machine()} {platform.processor() or ''}".strip()
        + f", {os.cpu_count()} CPUs",
        date=time.strftime("%Y-%m-%d"),
        cpus=available_cpus(),
        device=str(resolve_device(spec.ppo.device))
        + (f" ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else ""),
        frame_skip=spec.env.frame_skip,
    )
    for n in env_counts:
        say(f"raw emulator × {n}")
        raw = bench_raw_emulator(spec, n, steps)
        say(f"pool × {n}")
        pool = bench_pool(spec, n, max(1, steps // n))
        say(f"rollout × {n}")
        rollout = bench_rollout(spec, n, max(1, steps // n))
        row = EnvCountFigures(
            n,
            raw,
            pool,
            pool * spec.env.frame_skip,
            pool * spec.env.frame_skip / raw,
            rollout,
            rollout / pool,
        )
        if end_to_end_all or n == spec.resolved_num_envs():
            say(f"end to end × {n}")
            e2e = bench_end_to_end(spec, n, e2e_steps)
            row.train_sps, row.train_eps, row.train_learner_share = (
                e2e["steps_per_second"],
                e2e["episodes_per_second"],
                e2e["learner_share"],
            )
            if n == spec.resolved_num_envs():
                report.end_to_end = e2e
        report.rows.append(row)
    if not report.end_to_end:
        say("end to end")
        report.end_to_end = bench_end_to_end(spec, spec.resolved_num_envs(), e2e_steps)
    say("learner")
    from trainer.env import make_env

    probe = make_env(spec)
    shape, actions = probe.observation_shape, probe.num_actions
    probe.close()
    report.learner_samples_per_second = bench_learner(spec, 512 if quick else 8192, shape, actions)
    say("memory and start-up")
    report.memory_per_env_mb = bench_memory(spec)
    report.startup_seconds = bench_startup(spec)
    return report


def use_case(num_envs: int, cpus: int) -> str:
    if num_envs == 1:
        return "Single environment baseline"
    if num_envs <= cpus:
        return "Parallel training (one env per core)"
    return "More envs than cores (oversubscribed)"


def render_tables(report: BenchReport) -> list[Any]:
    """Rich tables: the seed-style scaling table with ratios, then the single figures."""
    from rich.table import Table

    skip = report.frame_skip
    scaling = Table(
        title=f"Scaling (real PPO; a step = {skip} frames) — {report.machine}, {report.date}"
    )
    for col in ("Environments", "Steps/Second", "Episodes/Second", "Use Case"):
        scaling.add_column(col, justify="right" if col != "Use Case" else "left")
    for r in report.rows:
        scaling.add_row(
            str(r.num_envs),
            f"{r.train_sps:,.0f}",
            f"{r.train_eps:.2f}",
            use_case(r.num_envs, report.cpus),
        )

    ratios = Table(title=f"Each stage against its baseline (frame skip {skip})")
    for col in (
        "Envs",
        "Raw emulator fps",
        "Pool steps/s",
        "Pool fps",
        "Pool / raw",
        "Rollout steps/s",
        "Rollout / pool",
        "Learner share",
    ):
        ratios.add_column(col, justify="right")
    for r in report.rows:
        ratios.add_row(
            str(r.num_envs),
            f"{r.raw_fps:,.0f}",
            f"{r.pool_sps:,.0f}",
            f"{r.pool_fps:,.0f}",
            f"{r.pool_vs_raw:.0%}",
            f"{r.rollout_sps:,.0f}",
            f"{r.rollout_vs_pool:.0%}",
            f"{r.train_learner_share:.0%}",
        )

    e2e = report.end_to_end
    single = Table(title="End to end and resources")
    single.add_column("Figure")
    single.add_column("Value", justify="right")
    single.add_row(
        f"End to end: {int(e2e.get('total_steps', 0)):,} steps × {int(e2e.get('num_envs', 0))} envs, real PPO",
        f"{e2e.get('training_seconds', float('nan')):.1f} s",
    )
    single.add_row(
        f"  steps/s (frame skip {skip})", f"{e2e.get('steps_per_second', float('nan')):,.1f}"
    )
    single.add_row("  frames/s", f"{e2e.get('frames_per_second', float('nan')):,.0f}")
    single.add_row("  learner share of time", f"{e2e.get('learner_share', float('nan')):.0%}")
    single.add_row(
        "  vs the seed's 1,360 steps/s (its optimizer never ran)",
        f"{e2e.get('steps_per_second', float('nan')) / 1360:.2f}×",
    )
    single.add_row(
        f"Learner alone (forward + backward), device {report.device}",
        f"{report.learner_samples_per_second:,.0f} samples/s",
    )
    single.add_row("Memory per environment (worker PSS)", f"{report.memory_per_env_mb:.1f} MB")
    single.add_row("Start-up, spec to first step (2 envs)", f"{report.startup_seconds:.2f} s")
    return [scaling, ratios, single]
