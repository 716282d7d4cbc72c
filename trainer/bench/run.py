"""One `trainer bench` run: every stage for every env count, into a `BenchReport`."""

from __future__ import annotations

import time
from typing import Any

from trainer.bench.peer import compare_with_peer, require_peer
from trainer.bench.report import BenchReport, EnvCountFigures, machine_description, same_device
from trainer.bench.stages import (
    bench_end_to_end,
    bench_learner,
    bench_memory,
    bench_pool,
    bench_raw_emulator,
    bench_rollout,
    bench_startup,
    bench_trainer_startup,
    learner_devices,
)
from trainer.spec import JobSpec, available_cpus, validate_spec

# ---- the whole run ---------------------------------------------------------------------------
SEED_TRAIN_20K = {
    "name": "bench",
    "env": {"num_envs": 2, "episode_length": 750, "frame_skip": 4},
    "ppo": {"total_steps": 20000, "rollout_steps": 128, "update_epochs": 6, "batch_size": 128},
    "mlflow": {"enabled": False},
}


#: The games of the comparison with SB3: the learner-bound dungeon (~100k raw frames/s per
#: core) and the emulator-bound cavern (scrolling and sprites, ~15k frames/s per core) with its
#: rewards on RAM, as in configs/cavern.yaml.
def peer_games() -> dict[str, dict[str, Any]]:
    import yaml

    from trainer.games import ROMS_DIR

    cavern = yaml.safe_load((ROMS_DIR / "cavern" / "game.yaml").read_text())["game"]
    return {
        "builtin:dungeon": {"rom": "builtin:dungeon", "adapter": "dungeon"},
        "builtin:cavern": cavern,
    }


def run_bench(
    spec: JobSpec | None = None,
    env_counts: tuple[int, ...] = (1, 2, 4),
    quick: bool = False,
    end_to_end_all: bool = True,
    progress: Any = None,
    peer_seeds: tuple[int, ...] = (),
) -> BenchReport:
    """Measure everything; `quick` shrinks every run to a smoke test (no meaningful figures).
    `peer_seeds`: also train SB3's PPO beside ours on each of `peer_games()`, once per seed."""

    import torch

    from trainer.rl.setup import resolve_device, set_torch_threads

    spec = spec or validate_spec(SEED_TRAIN_20K)
    if peer_seeds:
        require_peer()  # before an hour of measuring, not after
    set_torch_threads(spec)
    steps = 50 if quick else 2000
    e2e_steps = 512 if quick else spec.ppo.total_steps
    say = progress or (lambda message: None)
    report = BenchReport(
        machine=machine_description(),
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
        fps = pool * spec.env.frame_skip
        row = EnvCountFigures(n, raw, pool, fps, fps / raw, rollout, rollout / pool)
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
    from trainer.envs.env import make_env

    probe = make_env(spec)
    shape, actions = probe.observation_shape, probe.num_actions
    probe.close()
    samples = 512 if quick else 8192
    report.learner_samples_per_second = bench_learner(spec, samples, shape, actions)
    for device in learner_devices():  # the spec's own device was measured just above
        say(f"learner on {device}")
        report.learner_by_device[device] = (
            report.learner_samples_per_second
            if same_device(device, report.device)
            else bench_learner(spec, samples, shape, actions, device)
        )
    say("memory and start-up")
    report.memory_per_env_mb = bench_memory(spec)
    report.startup_seconds = bench_startup(spec)
    report.trainer_startup_seconds = bench_trainer_startup(spec)
    for game, section in peer_games().items() if peer_seeds else ():
        point = spec.updated({"game": section, "ppo.total_steps": e2e_steps})
        say(f"{game}: raw emulator × {point.resolved_num_envs()}")
        raw = bench_raw_emulator(point, point.resolved_num_envs(), steps)
        report.peer.append(compare_with_peer(point, game, peer_seeds, raw, progress=say))
    return report
