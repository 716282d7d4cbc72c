"""The training loop behind `trainer run SPEC`: collect → update → log → checkpoint.

A pod and a laptop run exactly this. `Trainer` is the loop as a small class whose phases are
methods (PufferLib's `pufferl.py`): `run()` reads top to bottom like CleanRL's `ppo_atari.py`.
`train()` sets it up (tracking, checkpoint, emulators) and tears it down.

Counting. Steps are environment steps summed over environments (as the seed counts them). The
counters that go into a checkpoint (`Counters`) advance only when the learner takes a rollout:
a rollout collected but not trained on (async mode's prefetch, or one cut short by SIGTERM) is
not in them, and a resumed run collects it again, from the collector state recorded at its start,
so its episodes are counted once.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer import metrics
from trainer.errors import Stopped
from trainer.rl.console import Console
from trainer.rl.evaluate import record_episode, write_gif
from trainer.rl.ppo import (
    Agent,
    Batch,
    annealed_lr,
    compute_gae,
    make_optimizer,
    ppo_update,
)
from trainer.rl.rollout import (
    AsyncRollouts,
    Collector,
    CollectorState,
    Rollout,
    Rollouts,
    SyncRollouts,
)
from trainer.rl.seeding import generator, restore_generator, rng_state, set_rng_state
from trainer.rl.setup import loss_config
from trainer.rl.stopping import StopFlag
from trainer.rl.usage import CpuMeter
from trainer.spec import JobSpec, training_hash
from trainer.tracking.checkpoints import CheckpointStore
from trainer.tracking.tracker import UNSENT_METRICS, Tracker


@dataclass
class Counters:
    """What survives a restart (it goes into every checkpoint): counted only for data the agent
    has been updated on."""

    global_step: int = 0
    update: int = 0
    episodes: int = 0
    recent_returns: deque[float] = field(default_factory=lambda: deque(maxlen=10))

    def state(self) -> dict[str, Any]:
        return {
            "global_step": self.global_step,
            "update": self.update,
            "episodes": self.episodes,
            "recent_returns": list(self.recent_returns),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Counters:
        counters = cls(*(int(state[k]) for k in ("global_step", "update", "episodes")))
        counters.recent_returns.extend(float(r) for r in state["recent_returns"])
        return counters

    def average_return(self) -> float:
        return float(np.mean(self.recent_returns)) if self.recent_returns else float("nan")


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
    run_url: str | None
    worker_restarts: int
    returns: list[float] = field(default_factory=list)
    return_times: list[float] = field(default_factory=list)  # seconds from start to each end


class Trainer:
    """PPO on a pool of emulators: `resume()` once if there is a checkpoint, then `run()`.

    The phases, in loop order: `collect` (through the rollout strategy), `record` (the episodes
    of the rollout about to be learned from), `update`, `log`, `checkpoint`; `summary` at the end.
    """

    def __init__(
        self,
        spec: JobSpec,
        envs: Any,
        agent: Agent,
        *,
        tracker: Tracker,
        store: CheckpointStore,
        console: Console,
        stop: StopFlag,
        device: torch.device,
    ):
        ppo = spec.ppo
        self.spec, self.envs, self.agent, self.tracker = spec, envs, agent, tracker
        self.store, self.console, self.stop, self.device = store, console, stop, device
        self.optimizer = make_optimizer(agent, ppo.learning_rate)
        self.learner_rng = generator(spec.seed)  # minibatch order
        self.counters = Counters()
        self.resumed_from = 0
        self.log_floor = -1  # metrics at or below this step are already in the run
        self.learner_seconds = 0.0
        self.returns: list[float] = []  # this session's episodes, in order
        self.return_times: list[float] = []  # when each ended, seconds since collection began
        self.checkpointed_at: int | None = None  # step of the newest checkpoint on disk
        self.checkpoint_seconds = 0.0  # how long writing the newest one took (its upload is queued)
        self.cpu = CpuMeter()
        actor = copy.deepcopy(agent) if ppo.async_rollout else agent
        self.collector = Collector(
            envs,
            actor,
            gamma=ppo.gamma,
            rollout_steps=ppo.rollout_steps,
            total_steps=ppo.total_steps,
            sampler=generator(spec.seed + 1, device),
            stop=stop,
            device=device,
            owns_actor=ppo.async_rollout,
        )
        self.rollouts = self._rollouts()

    def _rollouts(self) -> Rollouts:
        def buffer() -> Rollout:
            return Rollout.for_pool(self.envs, self.spec.ppo.rollout_steps, self.device)

        if self.spec.ppo.async_rollout:
            return AsyncRollouts(self.collector, (buffer(), buffer()), self.agent)
        return SyncRollouts(self.collector, buffer())

    # ---- the loop ---------------------------------------------------------------------------
    def run(self) -> TrainSummary:
        self.console.print("🏃 Starting parallel training...")
        self.console.start_progress(self.spec.ppo.total_steps, self.counters.global_step)
        self.collector.start = time.perf_counter()
        try:
            rollout = self.rollouts.next()
            while rollout is not None and not self.stop.requested:
                self.record(rollout)
                stats = self.update(rollout)
                rollout = self.rollouts.next()  # async: collected while we updated
                self.log(stats)
                if self.stop.requested or self.checkpoint_due():
                    self.checkpoint(rollout)
        finally:
            self.rollouts.close()
            self.console.stop_progress()
        if self.stop.requested:
            self._stop_now(rollout)
        return self.summary()

    # ---- phases -----------------------------------------------------------------------------
    def resume(self, checkpoint: dict[str, Any]) -> None:
        """Continue from `checkpoint`: weights, optimizer, counters, every RNG, and the collector
        as it was when the first rollout not trained on began."""
        self.agent.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.counters = Counters.from_state(checkpoint)
        set_rng_state(checkpoint["rng"])
        restore_generator(self.learner_rng, checkpoint.get("learner_rng"))
        self.collector.actor.load_state_dict(checkpoint["model"])
        if "collector" in checkpoint:
            self.collector.restore(CollectorState(**checkpoint["collector"]))
        self.collector.global_step = self.resumed_from = self.counters.global_step
        self.checkpointed_at = self.counters.global_step
        # Metrics logged after the checkpoint, before a kill, are not logged twice; those the
        # server had not confirmed when it was written are logged again.
        self.log_floor = self.tracker.restore_unsent(checkpoint.get(UNSENT_METRICS))
        c = self.counters
        self.console.print(
            f"↩️  Resuming from step {c.global_step:,} (update {c.update}, {c.episodes} episodes)"
        )

    def record(self, rollout: Rollout) -> None:
        """Count the episodes of the rollout the learner is about to take; print and log them."""
        c = self.counters
        for episode in rollout.episodes:
            c.episodes += 1
            c.recent_returns.append(episode.ret)
            self.returns.append(episode.ret)
            self.return_times.append(episode.elapsed)
            self.console.print(
                f"Step {episode.step:>6} | Episode {c.episodes:>4} | Reward: {episode.ret:>7.2f} | "
                f"Length: {episode.length:>4} | Avg10: {c.average_return():>7.2f} | "
                f"Time: {episode.elapsed:>6.1f}s"
            )
            stats = {metrics.episode_stat(k): v for k, v in episode.stats.items()}
            self._log(
                {
                    metrics.EPISODIC_RETURN: episode.ret,
                    metrics.EPISODIC_LENGTH: float(episode.length),
                    **stats,
                },
                episode.step,
            )

    def update(self, rollout: Rollout) -> dict[str, float]:
        """GAE over the filled rows of `rollout`, then the PPO update (`rl.ppo`)."""
        ppo, n, start = self.spec.ppo, rollout.steps, time.perf_counter()
        lr = annealed_lr(
            ppo.learning_rate, self.counters.global_step, ppo.total_steps, ppo.anneal_lr
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.no_grad():
            next_value = self.agent.get_value(rollout.next_obs)
        advantages, returns = compute_gae(
            rollout.rewards[:n], rollout.values[:n], rollout.ends[:n], next_value, ppo.gamma,
            ppo.gae_lambda,
        )  # fmt: skip
        batch = Batch(
            obs=rollout.obs[:n].flatten(0, 1),
            actions=rollout.actions[:n].reshape(-1),
            logprobs=rollout.logprobs[:n].reshape(-1),
            advantages=advantages.reshape(-1),
            returns=returns.reshape(-1),
            values=rollout.values[:n].reshape(-1),
        )
        if ppo.async_rollout:  # the actor that collected is one update behind the learner
            with torch.no_grad():
                _, batch.prox_logprobs, _, _ = self.agent.get_action_and_value(
                    batch.obs, batch.actions
                )
        stats = self._ppo_update(batch)
        self.learner_seconds += time.perf_counter() - start
        self.counters.update += 1
        self.counters.global_step = rollout.end_step
        return {**stats, "learning_rate": lr}

    def _ppo_update(self, batch: Batch) -> dict[str, float]:
        ppo = self.spec.ppo
        return ppo_update(
            self.agent,
            self.optimizer,
            batch,
            update_epochs=ppo.update_epochs,
            minibatch_size=ppo.batch_size,
            max_grad_norm=ppo.max_grad_norm,
            target_kl=ppo.target_kl,
            cfg=loss_config(self.spec),
            generator=self.learner_rng,
        )

    def log(self, stats: dict[str, float]) -> None:
        """The update's console line and metrics."""
        c, elapsed = self.counters, time.perf_counter() - self.collector.start
        sps = (c.global_step - self.resumed_from) / elapsed
        self.console.print(
            f"🧠 Update {c.update:>4} | step {c.global_step:>7,} | policy {stats['policy_loss']:+.4f} | "
            f"value {stats['value_loss']:.4f} | entropy {stats['entropy']:.3f} | kl {stats['approx_kl']:.4f} | "
            f"{sps:,.0f} steps/s | learner {self.learner_seconds / elapsed:.0%}"
        )
        self._log(
            {
                **{metrics.loss(k): stats[k] for k in metrics.LOSS_STATS},
                metrics.UPDATE_EPOCHS: stats["epochs"],
                metrics.LEARNING_RATE: stats["learning_rate"],
                metrics.STEPS_PER_SECOND: sps,
                metrics.FRAMES_PER_SECOND: sps * self.spec.env.frame_skip,
                metrics.LEARNER_SECONDS: self.learner_seconds,
                metrics.WORKER_RESTARTS: float(self.envs.worker_restarts),
                metrics.CPU_CORES: self.cpu.cores(),
            },
            c.global_step,
        )
        self.console.progress(c.global_step)

    def checkpoint_due(self) -> bool:
        c = self.counters
        return c.update % self.spec.checkpoint.every_updates == 0 or (
            c.global_step >= self.spec.ppo.total_steps
        )

    def checkpoint(self, next_rollout: Rollout | None) -> Path:
        """Write the checkpoint as of the last update; `next_rollout` (collected or being
        collected, not trained on) is where a resumed run starts collecting again."""
        began = time.perf_counter()
        start = next_rollout.start_state if next_rollout is not None else None
        collector = start or self.collector.state()
        state = {
            "model": self.agent.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **self.counters.state(),
            "rng": rng_state(),
            "learner_rng": self.learner_rng.get_state(),
            "collector": {"sampler": collector.sampler, "actor": collector.actor},
            "training_hash": training_hash(self.spec),
            "spec_yaml": self.spec.to_yaml(),
            # A SIGKILL loses no metric step: a resume logs these again (`Trainer.resume`).
            UNSENT_METRICS: self.tracker.unsent_metrics(),
        }
        path = self.store.save(state, self.counters.global_step)
        self.checkpointed_at = self.counters.global_step
        # Queued behind this checkpoint's metrics: they reach MLflow before it does.
        self.tracker.log_checkpoint(path, self.counters.global_step)
        # What a stop costs within the pod's grace period before the queue drains (saved, staged).
        self.checkpoint_seconds = time.perf_counter() - began
        if self._video_due():
            self.record_video()
        return path

    def record_video(self) -> Path:
        """One evaluation episode of the current policy as a GIF, kept beside the checkpoints
        and logged to the run under `videos/` (the return is in the file name)."""
        recording = record_episode(self.spec, self.agent, self.device, seed=self.counters.update)
        name = recording.file_name(self.counters.global_step)
        path = write_gif(recording, self.store.root / "videos" / name)
        self.tracker.log_artifact(path, "videos")
        self.console.print(
            f"🎬 Video of the policy at step {self.counters.global_step:,}: return "
            f"{recording.ret:.2f} in {recording.length} steps ({path})"
        )
        return path

    def _video_due(self) -> bool:
        ck, c = self.spec.checkpoint, self.counters
        if not (ck.video and ck.video_every) or self.stop.requested:
            return False  # on SIGTERM the grace period is for the checkpoint, not a video
        return (c.update // ck.every_updates) % ck.video_every == 0

    def summary(self) -> TrainSummary:
        seconds = time.perf_counter() - self.collector.start
        steps = self.counters.global_step - self.resumed_from
        rate = 1.0 / seconds if seconds > 0 else 0.0
        return TrainSummary(
            final_step=self.counters.global_step,
            total_episodes=self.counters.episodes,
            training_seconds=seconds,
            avg_reward_last10=self.counters.average_return(),
            num_envs=self.envs.num_envs,
            steps_per_second=steps * rate,
            episodes_per_second=len(self.returns) * rate,
            frames_per_second=steps * self.spec.env.frame_skip * rate,
            learner_fraction=self.learner_seconds * rate,
            resumed_from_step=self.resumed_from,
            run_id=self.tracker.run_id,
            run_url=self.tracker.run_url,
            worker_restarts=self.envs.worker_restarts,
            returns=list(self.returns),
            return_times=list(self.return_times),
        )

    # ---- helpers ----------------------------------------------------------------------------
    def _log(self, values: dict[str, float], step: int) -> None:
        if step > self.log_floor:
            self.tracker.log_metrics(values, step)

    def _stop_now(self, next_rollout: Rollout | None) -> None:
        """A stop was asked for: make sure the checkpoint is current, then exit 128 + signal."""
        c = self.counters
        if c.update and self.checkpointed_at != c.global_step:
            self.checkpoint(next_rollout)
        took = self.checkpoint_seconds
        self.console.print(
            f"🛑 {self.stop.signum.name}: checkpoint written at step {c.global_step:,}"
            + (f" (saved in {took:.2f} s; its upload is queued)" if took else "")
            + "; exiting"
            if c.update
            else f"🛑 {self.stop.signum.name} before the first update: nothing to save; exiting"
        )
        raise Stopped(self.stop.signum)
