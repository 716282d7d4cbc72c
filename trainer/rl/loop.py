"""The training loop behind `trainer run SPEC`: collect → update → log → checkpoint.

A pod and a laptop run exactly this. `Trainer` is the loop as a small class whose phases are
methods (PufferLib's `pufferl.py`): `run()` reads top to bottom like CleanRL's `ppo_atari.py`.
`train()` sets it up (tracking, checkpoint, emulators) and tears it down.

Counting. Steps are environment steps summed over environments (as the seed counts them). The
counters that go into a checkpoint (`Counters`) advance only when the learner takes a rollout:
a rollout collected but not trained on (async mode's prefetch, or one cut short by SIGTERM) is
not in them, and a resumed run collects it again, from the collector state recorded at its start,
so its episodes are counted once.

Replicas (`distributed.replicas` > 1, `trainer.rl.distributed`): every replica runs this loop in
lockstep on its own emulators. Steps count all replicas' env steps; after each rollout the
replicas exchange their episodes and whether one was asked to stop (one all-gather), so
counters, stops and checkpoints agree; the update averages gradients. Rank 0 alone logs and
writes checkpoints, which carry every replica's RNG and collector state for an exact resume.
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
from trainer.rl.distributed import Replicas, check_identical, weights_digest
from trainer.rl.evaluate import record_episode, write_gif
from trainer.rl.ppo import (
    ALONE,
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
    Episode,
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
from trainer.tracking.tracker import UNSENT_METRICS, LoggedSteps, Tracker

#: Printed just before the first rollout: where `trainer bench` stops its start-up clock.
TRAINING_STARTS = "🏃 Starting parallel training..."


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
    replicas: int = 1  # processes of the run, each with `num_envs` environments
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
        replicas: Replicas = ALONE,
    ):
        ppo = spec.ppo
        self.spec, self.envs, self.agent, self.tracker = spec, envs, agent, tracker
        self.store, self.console, self.stop, self.device = store, console, stop, device
        self.replicas = replicas
        self.stopping = False  # a stop every replica agreed on (`exchange`)
        self.optimizer = make_optimizer(agent, ppo.learning_rate)
        self.learner_rng = generator(replicas.seed(spec.seed))  # minibatch order
        self.counters = Counters()
        self.resumed_from = 0
        self.logged = LoggedSteps()  # what the run held when this round resumed it
        self.learner_seconds = 0.0
        self.collect_seconds = 0.0  # this replica's time collecting (async: waiting for rollouts)
        self.peer_figures: list[tuple[float, float]] = []  # per replica: collect, learner seconds
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
            sampler=generator(replicas.seed(spec.seed + 1), device),
            stop=stop,
            device=device,
            owns_actor=ppo.async_rollout,
            replicas=replicas.size,
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
        self.console.print(TRAINING_STARTS)
        self.console.start_progress(self.spec.ppo.total_steps, self.counters.global_step)
        self.collector.start = time.perf_counter()
        try:
            rollout = self._next_rollout()
            while rollout is not None and not self.exchange(rollout):
                stats = self.update(rollout)
                rollout = self._next_rollout()  # async: collected while we updated
                self.log(stats)
                if self.checkpoint_due():
                    self.checkpoint(rollout)
        finally:
            self.rollouts.close()
            self.console.stop_progress()
        if rollout is None:  # the budget is spent; a stop asked for in the last update still counts
            self.stopping = any(self.replicas.gather(self.stop.requested))
        if self.stopping:
            self._stop_now(rollout)
        return self.summary()

    def _next_rollout(self) -> Rollout | None:
        began = time.perf_counter()
        rollout = self.rollouts.next()
        self.collect_seconds += time.perf_counter() - began
        return rollout

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
        self.logged = self.tracker.restore_unsent(checkpoint.get(UNSENT_METRICS))
        self._resume_replica(checkpoint)
        c = self.counters
        self.console.print(
            f"↩️  Resuming from step {c.global_step:,} (update {c.update}, {c.episodes} episodes)"
        )

    def _resume_replica(self, checkpoint: dict[str, Any]) -> None:
        """Replica r > 0 takes its own RNG and collector state from the checkpoint's parts (the
        top-level ones are rank 0's); none there (it was written by fewer replicas): a fresh
        draw from its own seeds, only the weights and counters are shared."""
        parts = checkpoint.get("replicas") or []
        if self.replicas.rank == 0:
            return
        if self.replicas.rank >= len(parts):
            self.learner_rng = generator(self.replicas.seed(self.spec.seed))
            self.collector.sampler = generator(self.replicas.seed(self.spec.seed + 1), self.device)
            return
        part = parts[self.replicas.rank]
        set_rng_state(part["rng"])
        restore_generator(self.learner_rng, part["learner_rng"])
        self.collector.restore(CollectorState(**part["collector"]))

    def exchange(self, rollout: Rollout) -> bool:
        """Share the rollout's episodes and stop requests with every replica; record them all.
        True when any replica was asked to stop (then nobody learns from this rollout)."""
        shared = self.replicas.gather(
            (rollout.episodes, self.stop.requested, self.collect_seconds, self.learner_seconds)
        )
        self.stopping = any(stop for _, stop, _, _ in shared)
        if self.stopping:
            return True
        self.peer_figures = [(collect, learner) for _, _, collect, learner in shared]
        episodes = [e for part, _, _, _ in shared for e in part]
        self.record(sorted(episodes, key=lambda e: e.step) if len(shared) > 1 else episodes)
        return False

    def record(self, episodes: list[Episode]) -> None:
        """Count the episodes of the rollout the learner is about to take; print and log them."""
        c = self.counters
        for episode in episodes:
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
            minibatch_size=ppo.batch_size // self.replicas.size,  # its share of the global one
            max_grad_norm=ppo.max_grad_norm,
            target_kl=ppo.target_kl,
            cfg=loss_config(self.spec),
            generator=self.learner_rng,
            replicas=self.replicas,
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
                **self._replica_figures(elapsed),
            },
            c.global_step,
        )
        self.console.progress(c.global_step)

    def _replica_figures(self, elapsed: float) -> dict[str, float]:
        """Each replica's own collection speed and learner share (as of the last exchange),
        beside the global figures: a slow replica holds every other one back."""
        if self.replicas.size == 1:
            return {}
        steps = (self.counters.global_step - self.resumed_from) / self.replicas.size
        figures = {}
        for rank, (collect, learner) in enumerate(self.peer_figures):
            figures[metrics.replica(rank, metrics.REPLICA_COLLECT_SPS)] = steps / max(collect, 1e-9)
            figures[metrics.replica(rank, metrics.REPLICA_LEARNER_FRACTION)] = learner / elapsed
        return figures

    def checkpoint_due(self) -> bool:
        c = self.counters
        return c.update % self.spec.checkpoint.every_updates == 0 or (
            c.global_step >= self.spec.ppo.total_steps
        )

    def checkpoint(self, next_rollout: Rollout | None) -> Path | None:
        """Write the checkpoint as of the last update; `next_rollout` (collected or being
        collected, not trained on) is where a resumed run starts collecting again.

        With replicas, every replica calls it: their RNG and collector states are gathered into
        rank 0's checkpoint (and their weights compared); only rank 0 writes (None elsewhere)."""
        began = time.perf_counter()
        part = self._replica_part(next_rollout)
        digest = weights_digest(self.agent) if self.replicas.size > 1 else ""
        gathered = self.replicas.gather((part, digest))
        check_identical([d for _, d in gathered])
        parts = [p for p, _ in gathered]
        self.checkpointed_at = self.counters.global_step
        if not self.replicas.main:
            return None
        state = {
            "model": self.agent.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **self.counters.state(),
            **part,
            "replicas": parts if self.replicas.size > 1 else [],
            "training_hash": training_hash(self.spec),
            "spec_yaml": self.spec.to_yaml(),
            # A SIGKILL loses no metric step: a resume logs these again (`Trainer.resume`).
            UNSENT_METRICS: self.tracker.unsent_metrics(),
        }
        path = self.store.save(state, self.counters.global_step)
        # Queued behind this checkpoint's metrics: they reach MLflow before it does.
        self.tracker.log_checkpoint(path, self.counters.global_step)
        # What a stop costs within the pod's grace period before the queue drains (saved, staged).
        self.checkpoint_seconds = time.perf_counter() - began
        if self._video_due():
            self.record_video()
        return path

    def _replica_part(self, next_rollout: Rollout | None) -> dict[str, Any]:
        """This replica's share of a checkpoint: what it needs to collect and shuffle again
        exactly as it would have."""
        start = next_rollout.start_state if next_rollout is not None else None
        collector = start or self.collector.state()
        return {
            "rng": rng_state(),
            "learner_rng": self.learner_rng.get_state(),
            "collector": {"sampler": collector.sampler, "actor": collector.actor},
        }

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
        if not (ck.video and ck.video_every) or self.stop.requested or not self.replicas.main:
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
            replicas=self.replicas.size,
            returns=list(self.returns),
            return_times=list(self.return_times),
        )

    # ---- helpers ----------------------------------------------------------------------------
    def _log(self, values: dict[str, float], step: int) -> None:
        values = self.logged.new(values, step)
        if values:
            self.tracker.log_metrics(values, step)

    def _stop_now(self, next_rollout: Rollout | None) -> None:
        """A stop was asked for: make sure the checkpoint is current, then exit 128 + signal."""
        c = self.counters
        if c.update and self.checkpointed_at != c.global_step:
            self.checkpoint(next_rollout)
        took = self.checkpoint_seconds
        # A replica not signalled itself stops because a peer was (its pod is going away).
        cause = self.stop.signum.name if self.stop.requested else "a peer replica's stop"
        self.console.print(
            f"🛑 {cause}: checkpoint written at step {c.global_step:,}"
            + (f" (saved in {took:.2f} s; its upload is queued)" if took else "")
            + "; exiting"
            if c.update
            else f"🛑 {cause} before the first update: nothing to save; exiting"
        )
        raise Stopped(self.stop.signum)
