"""The training loop behind `trainer run SPEC`: rollout → update → log → checkpoint.

A pod and a laptop run exactly this. Steps are environment steps summed over environments (as
the seed counts them). The loop resumes from the job's latest checkpoint (local directory, or
the MLflow run found by the job's identity tag), and SIGTERM makes it checkpoint and exit.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from trainer.env import NUM_TILE_IDS, check_game, make_env
from trainer.games.base import rom_sha1
from trainer.ppo import (
    Agent,
    Batch,
    LossConfig,
    annealed_lr,
    compute_gae,
    make_optimizer,
    ppo_update,
)
from trainer.spec import JobSpec, available_cpus
from trainer.tracking import (
    CheckpointStore,
    MlflowTracker,
    NullTracker,
    Tracker,
    job_identity,
    rng_state,
    set_rng_state,
)
from trainer.vector import VecEnv, make_vec_env


class CheckpointMismatch(ValueError):
    """The job's checkpoint was written for a different spec (training hash)."""


class Preempted(Exception):
    """SIGTERM (or Ctrl-C) arrived; a checkpoint was written. `exit_code` is 128 + the signal:
    non-zero, so a Job counts the pod as failed and its retry resumes (a clean 0 would mark
    unfinished training as succeeded)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.exit_code = 128 + int(signum)


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
    """The seed's console lines, echoed to a stream and kept for the run's log artifact.

    On a terminal a progress bar (steps done, rate, time left) stays below the lines; in a pod
    or a pipe there is none, so logs stay plain text.
    """

    def __init__(self, stream: TextIO | None = None, progress_bar: bool | None = None):
        self.stream = stream or sys.stdout
        self.lines: list[str] = []
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self._bar_wanted = isatty if progress_bar is None else progress_bar
        self._bar: Any = None
        self._task: Any = None

    def print(self, line: str = "") -> None:
        self.lines.append(line)
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False, emoji=False)
        else:
            print(line, file=self.stream, flush=True)

    def start_progress(self, total: int, completed: int) -> None:
        if not self._bar_wanted:
            return
        from rich.console import Console as RichConsole
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeRemainingColumn(),
            console=RichConsole(file=self.stream),
            transient=True,
        )
        self._task = self._bar.add_task("training", total=total, completed=completed)
        self._bar.start()

    def progress(self, completed: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=completed)

    def stop_progress(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.stop()

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


def make_tracker(spec: JobSpec, identity: str, rom: Path, num_envs: int) -> Tracker:
    if not spec.mlflow.enabled:
        return NullTracker()
    tags = {"rom_sha1": rom_sha1(rom.read_bytes()), "num_envs": str(num_envs)}
    return MlflowTracker(spec, identity, tags)


def obs_to_tensor(obs: np.ndarray) -> torch.Tensor:
    """Tile ids come as uint16 (< 768): view them as int16, which torch handles everywhere."""
    if obs.dtype == np.uint16:
        obs = obs.view(np.int16)
    return torch.from_numpy(obs)


@dataclass(eq=False)
class Rollout:
    """One rollout's storage (CleanRL's buffers), (T, N, ...) on the learner's device.

    `next_obs` is the observation after the last stored step, for the bootstrap value; `steps`
    is how many of the T rows the last collection filled.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    ends: torch.Tensor
    values: torch.Tensor
    next_obs: torch.Tensor
    steps: int = 0
    end_step: int = 0  # global step after the last filled row

    @classmethod
    def for_pool(cls, envs: VecEnv, steps: int, device: torch.device) -> Rollout:
        """Storage for `steps` vector steps of `envs` (observations kept in their own dtype)."""
        obs_dtype = obs_to_tensor(np.zeros(1, dtype=envs.observation_dtype)).dtype
        return cls.allocate(steps, envs.num_envs, envs.observation_shape, obs_dtype, device)

    @classmethod
    def allocate(
        cls,
        steps: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        obs_dtype: torch.dtype,
        device: torch.device,
    ) -> Rollout:
        def zeros(dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros((steps, num_envs), dtype=dtype, device=device)

        return cls(
            obs=torch.zeros((steps, num_envs, *obs_shape), dtype=obs_dtype, device=device),
            actions=zeros(torch.long),
            logprobs=zeros(),
            rewards=zeros(),
            ends=zeros(),
            values=zeros(),
            next_obs=torch.zeros((num_envs, *obs_shape), dtype=obs_dtype, device=device),
        )


def build_agent(
    spec: JobSpec, obs_shape: tuple[int, ...], num_actions: int, device: torch.device
) -> Agent:
    """The policy network the spec describes, on `device`."""
    return Agent(obs_shape, num_actions, spec.env.obs.type, spec.ppo.hidden_size, NUM_TILE_IDS).to(
        device
    )


@dataclass
class Progress:
    """Counters that survive a restart (they go into every checkpoint)."""

    global_step: int = 0
    update: int = 0
    episodes: int = 0
    recent_returns: deque[float] = field(default_factory=lambda: deque(maxlen=10))


class Collector:
    """Steps the pool with a policy and fills a `Rollout`; owns the episode console lines and
    episode metrics. With `ppo.async_rollout` it runs in a thread beside the learner, with its
    own copy of the policy (one update behind, as in asynchronous PPO variants)."""

    def __init__(
        self,
        envs: VecEnv,
        agent: Agent,
        spec: JobSpec,
        progress: Progress,
        console: Console,
        log: Any,
        stop: Any,
        device: torch.device,
    ):
        self.envs, self.agent, self.spec = envs, agent, spec
        self.progress, self.console, self.log, self.stop = progress, console, log, stop
        self.device = device
        self.num_envs = envs.num_envs
        self.next_obs = obs_to_tensor(envs.reset()).to(device)
        self.start = time.perf_counter()
        self.session_episodes = 0
        self.returns: list[float] = []

    def steps_left(self) -> int:
        """Vector steps still to collect so training stops at total_steps (rounded up to N)."""
        left = self.spec.ppo.total_steps - self.progress.global_step
        return max(0, min(self.spec.ppo.rollout_steps, -(-left // self.num_envs)))

    @torch.inference_mode()
    def collect(self, buf: Rollout, steps: int) -> Rollout:
        gamma = self.spec.ppo.gamma
        progress = self.progress
        buf.steps = 0
        for step in range(steps):
            buf.obs[step] = self.next_obs
            action, logprob, _, value = self.agent.get_action_and_value(self.next_obs)
            buf.actions[step] = action
            buf.logprobs[step] = logprob
            buf.values[step] = value
            result = self.envs.step(action.cpu().numpy())
            progress.global_step += self.num_envs
            rewards = torch.from_numpy(result.rewards).to(self.device)
            truncated = result.truncated & ~result.terminated
            if truncated.any():
                # A time limit is no real ending: bootstrap with γ·V(final obs) (Pardo et al. 2018).
                final = obs_to_tensor(np.ascontiguousarray(result.final_obs[truncated])).to(
                    self.device
                )
                rewards[torch.from_numpy(truncated).to(self.device)] += (
                    gamma * self.agent.get_value(final)
                )
            buf.rewards[step] = rewards
            buf.ends[step] = torch.from_numpy(result.terminated | result.truncated).to(
                self.device, torch.float32
            )
            self.next_obs = obs_to_tensor(result.obs).to(self.device)
            buf.steps = step + 1
            for info in result.infos:
                self._episode_done(info)
            if self.stop.requested:
                break
        buf.next_obs.copy_(self.next_obs)
        buf.end_step = progress.global_step
        return buf

    def _episode_done(self, info: dict[str, Any]) -> None:
        progress = self.progress
        progress.episodes += 1
        self.session_episodes += 1
        ep_return = float(info["episode_return"])
        progress.recent_returns.append(ep_return)
        self.returns.append(ep_return)
        self.console.print(
            f"Step {progress.global_step:>6} | Episode {progress.episodes:>4} | Reward: {ep_return:>7.2f} | "
            f"Length: {int(info['episode_length']):>4} | Avg10: {np.mean(progress.recent_returns):>7.2f} | "
            f"Time: {time.perf_counter() - self.start:>6.1f}s"
        )
        extra = {
            f"episode/{k}": float(v)
            for k, v in info.items()
            if k not in ("episode_return", "episode_length", "env_index")
        }
        self.log(
            {
                "charts/episodic_return": ep_return,
                "charts/episode_length": float(info["episode_length"]),
                **extra,
            },
            progress.global_step,
        )


def learn(
    agent: Agent, optimizer: torch.optim.Optimizer, buf: Rollout, spec: JobSpec
) -> dict[str, float]:
    """GAE over the filled rows of `buf`, then the PPO update (trainer.ppo)."""
    ppo, n = spec.ppo, buf.steps
    with torch.no_grad():
        next_value = agent.get_value(buf.next_obs)
    advantages, returns = compute_gae(
        buf.rewards[:n], buf.values[:n], buf.ends[:n], next_value, ppo.gamma, ppo.gae_lambda
    )
    obs_shape = buf.obs.shape[2:]
    batch = Batch(
        obs=buf.obs[:n].reshape(-1, *obs_shape),
        actions=buf.actions[:n].reshape(-1),
        logprobs=buf.logprobs[:n].reshape(-1),
        advantages=advantages.reshape(-1),
        returns=returns.reshape(-1),
        values=buf.values[:n].reshape(-1),
    )
    return ppo_update(
        agent,
        optimizer,
        batch,
        update_epochs=ppo.update_epochs,
        minibatch_size=ppo.batch_size,
        max_grad_norm=ppo.max_grad_norm,
        target_kl=ppo.target_kl,
        cfg=LossConfig(ppo.clip_coef, ppo.clip_vloss, ppo.norm_adv, ppo.ent_coef, ppo.vf_coef),
    )


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

    rom = check_game(
        spec
    )  # before anything starts: a bad game.* value is exit 2, nothing half-done
    tracker = make_tracker(spec, identity, rom, num_envs)
    tracker.start()
    status = "FAILED"
    envs: VecEnv | None = None
    stack = contextlib.ExitStack()  # signal handlers, restored when training ends
    # One console log per start of the job: a resumed pod must not overwrite the first one's.
    console_log_name = "console.log"
    try:
        checkpoint = None
        if spec.checkpoint.resume and not fresh:
            checkpoint = store.load_latest()
            if checkpoint is None:
                fetched = tracker.fetch_latest_checkpoint(store.root / "downloaded")
                if fetched is not None:
                    checkpoint = CheckpointStore.load(fetched)
        if (
            checkpoint is not None
            and checkpoint["training_hash"] != spec.training_hash()
            and not force
        ):
            raise CheckpointMismatch(
                f"checkpoint.dir: the checkpoint in {store.root} was written for a different spec "
                f"(training hash {checkpoint['training_hash']}, this spec {spec.training_hash()}); "
                "use another `name`, pass --fresh to start over, or --force to load it anyway"
            )

        if checkpoint is not None:
            console_log_name = f"console-from-step-{int(checkpoint['global_step'])}.log"
        if checkpoint is not None and int(checkpoint["global_step"]) >= ppo.total_steps:
            # A Job whose pod starts again after finishing (or `make train` run twice).
            done = int(checkpoint["global_step"])
            console.print(
                f"✔️  Job {identity} already trained to {done:,} of {ppo.total_steps:,} steps: nothing to do (--fresh starts over)"
            )
            status = "FINISHED"
            recent = [float(r) for r in checkpoint["recent_returns"]]
            return TrainSummary(
                final_step=done,
                total_episodes=int(checkpoint["episodes"]),
                training_seconds=0.0,
                avg_reward_last10=float(np.mean(recent)) if recent else float("nan"),
                num_envs=num_envs,
                steps_per_second=0.0,
                episodes_per_second=0.0,
                frames_per_second=0.0,
                learner_fraction=0.0,
                resumed_from_step=done,
                run_id=tracker.run_id,
                worker_restarts=0,
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

        agent = build_agent(spec, envs.observation_shape, envs.num_actions, device)
        optimizer = make_optimizer(agent, ppo.learning_rate)
        progress = Progress()
        if checkpoint is not None:
            agent.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            progress.global_step, progress.update, progress.episodes = (
                int(checkpoint[k]) for k in ("global_step", "update", "episodes")
            )
            progress.recent_returns.extend(float(r) for r in checkpoint["recent_returns"])
            set_rng_state(checkpoint["rng"])
            console.print(
                f"↩️  Resuming from step {progress.global_step:,} (update {progress.update}, {progress.episodes} episodes)"
            )
        resumed_from = progress.global_step
        # Metrics at steps already in the MLflow run (logged after the checkpoint, before a kill)
        # are not logged twice.
        log_floor = tracker.last_step() if checkpoint is not None else -1

        def log(metrics: dict[str, float], step: int) -> None:
            if step > log_floor:
                tracker.log_metrics(metrics, step)

        if not tracker.resumed:
            tracker.log_params(spec.model_dump(mode="json"))
        tracker.log_text(spec.to_yaml(), "spec.yaml")

        def save_checkpoint(step: int) -> None:
            """Model and counters as of `step`: a rollout collected but not yet learned from
            (async mode, or SIGTERM mid-rollout) is not in it and is collected again on resume."""
            state = {
                "model": agent.state_dict(),
                "optimizer": optimizer.state_dict(),
                "global_step": step,
                "update": progress.update,
                "episodes": progress.episodes,
                "recent_returns": list(progress.recent_returns),
                "rng": rng_state(),
                "training_hash": spec.training_hash(),
                "spec_yaml": spec.to_yaml(),
            }
            path = store.save(state, step)
            # Metrics up to a checkpoint are in MLflow before it is: a SIGKILL then loses
            # neither (a resume starts after the checkpoint and never logs those steps again).
            tracker.flush()
            tracker.log_checkpoint(path, step)

        buffers = [
            Rollout.for_pool(envs, ppo.rollout_steps, device)
            for _ in range(2 if ppo.async_rollout else 1)
        ]
        stop = stack.enter_context(_stop_on_signals())
        # With async_rollout the collector acts with its own copy of the policy, refreshed after
        # every update, so the learner's in-place optimizer steps never race its inference.
        actor = copy.deepcopy(agent) if ppo.async_rollout else agent
        collector = Collector(envs, actor, spec, progress, console, log, stop, device)
        console.print("🏃 Starting parallel training...")
        console.start_progress(ppo.total_steps, progress.global_step)
        start = collector.start
        learner_seconds = 0.0
        executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollout")
            if ppo.async_rollout
            else None
        )

        trained_step = progress.global_step  # steps whose data the agent has been updated on
        pending: Future[Rollout] | None = None
        try:
            current = (
                collector.collect(buffers[0], collector.steps_left())
                if collector.steps_left()
                else None
            )
            while current is not None and current.steps and not stop.requested:
                lr = annealed_lr(ppo.learning_rate, trained_step, ppo.total_steps, ppo.anneal_lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if executor is not None and collector.steps_left():
                    # Overlap: the actor collects the next rollout while the learner updates.
                    pending = executor.submit(
                        collector.collect,
                        buffers[1] if current is buffers[0] else buffers[0],
                        collector.steps_left(),
                    )
                learn_start = time.perf_counter()
                stats = learn(agent, optimizer, current, spec)
                learner_seconds += time.perf_counter() - learn_start
                progress.update += 1
                trained_step = current.end_step
                next_rollout = None
                if pending is not None:
                    next_rollout, pending = pending.result(), None
                    actor.load_state_dict(agent.state_dict())
                elapsed = time.perf_counter() - start
                sps = (progress.global_step - resumed_from) / elapsed
                console.print(
                    f"🧠 Update {progress.update:>4} | step {trained_step:>7,} | policy {stats['policy_loss']:+.4f} | "
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
                        "perf/worker_restarts": float(envs.worker_restarts),
                    },
                    trained_step,
                )
                console.progress(trained_step)
                if (
                    progress.update % spec.checkpoint.every_updates == 0
                    or trained_step >= ppo.total_steps
                ):
                    save_checkpoint(trained_step)
                if executor is None and collector.steps_left() and not stop.requested:
                    next_rollout = collector.collect(buffers[0], collector.steps_left())
                current = next_rollout
        finally:
            if pending is not None:  # an error in the learner: let the collector finish first
                stop.requested = True
                pending.result()
            if executor is not None:
                executor.shutdown(wait=True)
        if stop.requested:
            save_checkpoint(trained_step)
            console.print(
                f"🛑 {stop.signum.name}: checkpoint written at step {trained_step:,}; exiting"
            )
            status = "KILLED"
            raise Preempted(stop.signum)

        console.stop_progress()
        training_seconds = time.perf_counter() - start
        steps_done = trained_step - resumed_from
        rate = (
            (lambda amount: amount / training_seconds)
            if training_seconds > 0
            else (lambda amount: 0.0)
        )
        summary = TrainSummary(
            final_step=trained_step,
            total_episodes=progress.episodes,
            training_seconds=training_seconds,
            avg_reward_last10=float(np.mean(progress.recent_returns))
            if progress.recent_returns
            else float("nan"),
            num_envs=num_envs,
            steps_per_second=rate(steps_done),
            episodes_per_second=rate(collector.session_episodes),
            frames_per_second=rate(steps_done * spec.env.frame_skip),
            learner_fraction=rate(learner_seconds),
            resumed_from_step=resumed_from,
            run_id=tracker.run_id,
            worker_restarts=envs.worker_restarts,
            returns=collector.returns,
        )
        _print_summary(console, summary, spec.env.frame_skip)
        if spec.mlflow.log_model and steps_done > 0:
            tracker.log_model(agent.cpu(), obs_example=collector.next_obs[:1].cpu())
        status = "FINISHED"
        return summary
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        console.stop_progress()
        stack.close()
        if envs is not None:
            console.print(f"🧹 Cleaning up {num_envs} environments...")
            envs.close()
            for i in range(num_envs):
                console.print(f"✅ Environment {i + 1} closed")
        try:
            tracker.log_text(console.text(), console_log_name)
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


class StopFlag:
    requested = False
    signum = signal.SIGTERM


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[StopFlag]:
    """SIGTERM (pod eviction, `kubectl delete`) and a first Ctrl-C set a flag: the loop writes a
    checkpoint and exits. A second Ctrl-C interrupts at once. Previous handlers come back after."""
    flag = StopFlag()

    def handler(signum: int, frame: Any) -> None:
        if flag.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.requested, flag.signum = True, signal.Signals(signum)

    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread (e.g. called from a test thread): no handlers
        pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
