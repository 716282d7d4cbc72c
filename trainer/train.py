"""The training loop behind `trainer run SPEC`: rollout → update → log → checkpoint.

A pod and a laptop run exactly this. Steps are environment steps summed over environments (as
the seed counts them). The loop resumes from the job's latest checkpoint (local directory, or
the MLflow run found by the job's identity tag), and SIGTERM makes it checkpoint and exit.
"""

from __future__ import annotations

import functools
import random
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from trainer.env import NUM_TILE_IDS, make_env
from trainer.games import resolve_rom
from trainer.games.base import rom_sha1
from trainer.ppo import Agent, Batch, LossConfig, annealed_lr, compute_gae, make_optimizer, ppo_update
from trainer.spec import JobSpec, available_cpus
from trainer.tracking import CheckpointStore, MlflowTracker, NullTracker, Tracker, job_identity, rng_state, set_rng_state
from trainer.vector import VecEnv, make_vec_env

#: Exit code after a SIGTERM checkpoint: 128 + SIGTERM, so a Job counts the pod as failed and
#: its retry resumes (a clean 0 would mark unfinished training as succeeded).
EXIT_PREEMPTED = 128 + signal.SIGTERM


class CheckpointMismatch(ValueError):
    """The job's checkpoint was written for a different spec (training hash)."""


class Preempted(Exception):
    """SIGTERM arrived; a checkpoint was written."""


@dataclass
class TrainSummary:
    final_step: int
    total_episodes: int
    training_seconds: float
    avg_reward_last10: float
    num_envs: int
    steps_per_second: float
    episodes_per_second: float
    frames_per_second: float
    learner_fraction: float
    resumed_from_step: int
    run_id: str | None
    worker_restarts: int
    returns: list[float] = field(default_factory=list)


class Console:
    """The seed's console lines, echoed to a stream and kept for the run's log artifact."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.lines: list[str] = []

    def print(self, line: str = "") -> None:
        self.lines.append(line)
        print(line, file=self.stream, flush=True)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def set_torch_threads(spec: JobSpec) -> int:
    """Torch threads = the learner's CPUs (`resources.learner_cpu`, or OMP_NUM_THREADS, which a
    pod sets from it), capped by the CPUs this process may use (cgroup quota, affinity).

    Not the node's CPU count: idle OpenMP threads spin and steal the cores the emulator workers
    need; measured under load, 2 threads made a batch-2 policy call 100× slower than 1 thread.
    """
    import os

    threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or int(spec.resources.learner_cpu)
    torch.set_num_threads(max(1, min(threads, available_cpus())))
    return torch.get_num_threads()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_tracker(spec: JobSpec, identity: str, num_envs: int) -> Tracker:
    if not spec.mlflow.enabled:
        return NullTracker()
    rom = resolve_rom(spec.game.rom)
    tags = {"rom_sha1": rom_sha1(rom.read_bytes()), "num_envs": str(num_envs)}
    return MlflowTracker(spec, identity, tags)


def obs_to_tensor(obs: np.ndarray) -> torch.Tensor:
    """Tile ids come as uint16 (< 768): view them as int16, which torch handles everywhere."""
    if obs.dtype == np.uint16:
        obs = obs.view(np.int16)
    return torch.from_numpy(obs)


def train(
    spec: JobSpec,
    *,
    force: bool = False,
    fresh: bool = False,
    console: Console | None = None,
) -> TrainSummary:
    """Train `spec` to `ppo.total_steps`, resuming the job's checkpoint when one exists."""
    console = console or Console()
    num_envs = spec.resolved_num_envs()
    if spec.env.num_envs == "auto":
        spec = spec.with_num_envs(num_envs)
    ppo = spec.ppo
    set_torch_threads(spec)
    device = resolve_device(ppo.device)
    identity = job_identity(spec)
    store = CheckpointStore(Path(spec.checkpoint.dir) / identity, keep=spec.checkpoint.keep)

    tracker = make_tracker(spec, identity, num_envs)
    tracker.start()
    status = "FAILED"
    envs: VecEnv | None = None
    try:
        checkpoint = None
        if spec.checkpoint.resume and not fresh:
            checkpoint = store.load_latest()
            if checkpoint is None:
                fetched = tracker.fetch_latest_checkpoint(store.root / "downloaded")
                if fetched is not None:
                    checkpoint = torch.load(fetched, weights_only=True, map_location="cpu")
        if checkpoint is not None and checkpoint["training_hash"] != spec.training_hash() and not force:
            raise CheckpointMismatch(
                f"checkpoint.dir: the checkpoint in {store.root} was written for a different spec "
                f"(training hash {checkpoint['training_hash']}, this spec {spec.training_hash()}); "
                "use another `name`, pass --fresh to start over, or --force to load it anyway"
            )

        random.seed(spec.seed)
        np.random.seed(spec.seed)
        torch.manual_seed(spec.seed)

        console.print(f"🔧 Initializing {num_envs} parallel environments...")
        envs = make_vec_env(
            [functools.partial(make_env, spec, i) for i in range(num_envs)],
            backend=spec.env.backend,
            envs_per_worker=spec.env.envs_per_worker,
        )
        for i in range(num_envs):
            console.print(f"✅ Environment {i + 1}/{num_envs} initialized")

        agent = Agent(envs.observation_shape, envs.num_actions, spec.env.obs.type, ppo.hidden_size, NUM_TILE_IDS).to(device)
        optimizer = make_optimizer(agent, ppo.learning_rate)
        global_step, update, episodes = 0, 0, 0
        recent_returns: deque[float] = deque(maxlen=10)
        if checkpoint is not None:
            agent.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            global_step, update, episodes = (int(checkpoint[k]) for k in ("global_step", "update", "episodes"))
            recent_returns.extend(float(r) for r in checkpoint["recent_returns"])
            set_rng_state(checkpoint["rng"])
            console.print(f"↩️  Resuming from step {global_step:,} (update {update}, {episodes} episodes)")
        resumed_from = global_step
        if checkpoint is not None and global_step >= ppo.total_steps:
            console.print(
                f"✔️  Job {identity} already trained to {global_step:,} of {ppo.total_steps:,} steps: nothing to do "
                "(--fresh starts over)"
            )
        # Metrics at steps already in the MLflow run (logged after the checkpoint, before a kill)
        # are not logged twice.
        log_floor = tracker.last_step() if checkpoint is not None else -1

        if not tracker.resumed:
            tracker.log_params(spec.model_dump(mode="json"))
        tracker.log_text(spec.to_yaml(), "spec.yaml")

        loss_cfg = LossConfig(ppo.clip_coef, ppo.clip_vloss, ppo.norm_adv, ppo.ent_coef, ppo.vf_coef)
        rollout_steps = ppo.rollout_steps
        obs_shape = envs.observation_shape
        obs_dtype = obs_to_tensor(np.zeros(1, dtype=envs.observation_dtype)).dtype
        # Rollout storage (CleanRL's buffers), on the learner's device.
        obs_buf = torch.zeros((rollout_steps, num_envs, *obs_shape), dtype=obs_dtype, device=device)
        actions_buf = torch.zeros((rollout_steps, num_envs), dtype=torch.long, device=device)
        logprobs_buf = torch.zeros((rollout_steps, num_envs), device=device)
        rewards_buf = torch.zeros((rollout_steps, num_envs), device=device)
        ends_buf = torch.zeros((rollout_steps, num_envs), device=device)
        values_buf = torch.zeros((rollout_steps, num_envs), device=device)

        stop = _install_sigterm_handler()
        console.print("🏃 Starting parallel training...")
        next_obs = obs_to_tensor(envs.reset()).to(device)
        start = time.perf_counter()
        learner_seconds = 0.0
        session_episodes = 0
        returns: list[float] = []

        def log(metrics: dict[str, float], step: int) -> None:
            if step > log_floor:
                tracker.log_metrics(metrics, step)

        def save_checkpoint() -> None:
            state = {
                "model": agent.state_dict(),
                "optimizer": optimizer.state_dict(),
                "global_step": global_step,
                "update": update,
                "episodes": episodes,
                "recent_returns": list(recent_returns),
                "rng": rng_state(),
                "training_hash": spec.training_hash(),
                "spec_yaml": spec.to_yaml(),
            }
            path = store.save(state, global_step)
            tracker.log_checkpoint(path, global_step)

        while global_step < ppo.total_steps:
            # The last rollout is shortened so training stops at total_steps (rounded up to N).
            steps_this = min(rollout_steps, -(-(ppo.total_steps - global_step) // num_envs))
            lr = annealed_lr(ppo.learning_rate, global_step, ppo.total_steps, ppo.anneal_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            for step in range(steps_this):
                obs_buf[step] = next_obs
                with torch.inference_mode():
                    action, logprob, _, value = agent.get_action_and_value(next_obs)
                actions_buf[step] = action
                logprobs_buf[step] = logprob
                values_buf[step] = value
                result = envs.step(action.cpu().numpy())
                global_step += num_envs
                rewards = torch.from_numpy(result.rewards).to(device)
                truncated = result.truncated & ~result.terminated
                if truncated.any():
                    # Time limit is no real ending: bootstrap with γ·V(final obs) (Pardo et al. 2018).
                    final = obs_to_tensor(np.ascontiguousarray(result.final_obs[truncated])).to(device)
                    with torch.inference_mode():
                        rewards[torch.from_numpy(truncated).to(device)] += ppo.gamma * agent.get_value(final)
                rewards_buf[step] = rewards
                ends_buf[step] = torch.from_numpy(result.terminated | result.truncated).to(device, torch.float32)
                next_obs = obs_to_tensor(result.obs).to(device)
                for info in result.infos:
                    episodes += 1
                    session_episodes += 1
                    ep_return = float(info["episode_return"])
                    recent_returns.append(ep_return)
                    returns.append(ep_return)
                    console.print(
                        f"Step {global_step:>6} | Episode {episodes:>4} | Reward: {ep_return:>7.2f} | "
                        f"Length: {int(info['episode_length']):>4} | Avg10: {np.mean(recent_returns):>7.2f} | "
                        f"Time: {time.perf_counter() - start:>6.1f}s"
                    )
                    extra = {f"episode/{k}": float(v) for k, v in info.items() if k not in ("episode_return", "episode_length", "env_index")}
                    log({"charts/episodic_return": ep_return, "charts/episode_length": float(info["episode_length"]), **extra}, global_step)
                if stop.requested:
                    break
            if stop.requested:
                save_checkpoint()
                console.print(f"🛑 SIGTERM: checkpoint written at step {global_step:,}; exiting")
                status = "KILLED"
                raise Preempted()

            learn_start = time.perf_counter()
            n = steps_this
            with torch.no_grad():
                next_value = agent.get_value(next_obs)
            advantages, returns_t = compute_gae(
                rewards_buf[:n], values_buf[:n], ends_buf[:n], next_value, ppo.gamma, ppo.gae_lambda
            )
            batch = Batch(
                obs=obs_buf[:n].reshape(-1, *obs_shape),
                actions=actions_buf[:n].reshape(-1),
                logprobs=logprobs_buf[:n].reshape(-1),
                advantages=advantages.reshape(-1),
                returns=returns_t.reshape(-1),
                values=values_buf[:n].reshape(-1),
            )
            stats = ppo_update(
                agent,
                optimizer,
                batch,
                update_epochs=ppo.update_epochs,
                minibatch_size=ppo.batch_size,
                max_grad_norm=ppo.max_grad_norm,
                target_kl=ppo.target_kl,
                cfg=loss_cfg,
            )
            update += 1
            learner_seconds += time.perf_counter() - learn_start
            elapsed = time.perf_counter() - start
            sps = (global_step - resumed_from) / elapsed
            console.print(
                f"🧠 Update {update:>4} | step {global_step:>7,} | policy {stats['policy_loss']:+.4f} | "
                f"value {stats['value_loss']:.4f} | entropy {stats['entropy']:.3f} | kl {stats['approx_kl']:.4f} | "
                f"{sps:,.0f} steps/s | learner {learner_seconds / elapsed:.0%}"
            )
            log(
                {
                    **{f"losses/{k}": v for k, v in stats.items() if k != "loss"},
                    "charts/learning_rate": lr,
                    "perf/sps": sps,
                    "perf/fps": sps * spec.env.frame_skip,
                    "perf/learner_seconds": learner_seconds,
                    "perf/worker_restarts": float(getattr(envs, "worker_restarts", 0)),
                },
                global_step,
            )
            if update % spec.checkpoint.every_updates == 0 or global_step >= ppo.total_steps:
                save_checkpoint()

        training_seconds = time.perf_counter() - start
        steps_done = global_step - resumed_from
        summary = TrainSummary(
            final_step=global_step,
            total_episodes=episodes,
            training_seconds=training_seconds,
            avg_reward_last10=float(np.mean(recent_returns)) if recent_returns else float("nan"),
            num_envs=num_envs,
            steps_per_second=steps_done / training_seconds if training_seconds else 0.0,
            episodes_per_second=session_episodes / training_seconds if training_seconds else 0.0,
            frames_per_second=steps_done * spec.env.frame_skip / training_seconds if training_seconds else 0.0,
            learner_fraction=learner_seconds / training_seconds if training_seconds else 0.0,
            resumed_from_step=resumed_from,
            run_id=tracker.run_id,
            worker_restarts=int(getattr(envs, "worker_restarts", 0)),
            returns=returns,
        )
        _print_summary(console, summary, spec.env.frame_skip)
        if spec.mlflow.log_model and steps_done > 0:
            tracker.log_model(agent.cpu(), obs_example=next_obs[:1].cpu())
        status = "FINISHED"
        return summary
    finally:
        if envs is not None:
            console.print(f"🧹 Cleaning up {num_envs} environments...")
            envs.close()
            for i in range(num_envs):
                console.print(f"✅ Environment {i + 1} closed")
        try:
            tracker.log_text(console.text(), "console.log")
        finally:
            tracker.close(status)


def _print_summary(console: Console, s: TrainSummary, frame_skip: int) -> None:
    console.print()
    console.print("🏁 PARALLEL TRAINING COMPLETE")
    console.print("=" * 50)
    console.print(f"Final step: {s.final_step:,}")
    console.print(f"Total episodes: {s.total_episodes}")
    console.print(f"Training time: {s.training_seconds:.1f} seconds")
    console.print(f"Average reward (last 10): {s.avg_reward_last10:.3f}")
    console.print(f"Environments used: {s.num_envs}")
    console.print(f"Steps per second: {s.steps_per_second:.1f}")
    console.print(f"Episodes per second: {s.episodes_per_second:.2f}")
    console.print(f"Frames per second: {s.frames_per_second:.1f} (frame skip {frame_skip})")
    console.print(f"Learner share of time: {s.learner_fraction:.0%}")
    if s.resumed_from_step:
        console.print(f"Resumed from step: {s.resumed_from_step:,}")
    if s.run_id:
        console.print(f"MLflow run: {s.run_id}")


class _StopFlag:
    requested = False


def _install_sigterm_handler() -> _StopFlag:
    """SIGTERM (pod eviction, `kubectl delete`) sets a flag; the loop checkpoints and exits."""
    flag = _StopFlag()

    def handler(signum: int, frame: Any) -> None:
        flag.requested = True

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a test thread): no handler
        pass
    return flag
