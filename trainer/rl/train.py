"""`trainer run SPEC`: set up a `Trainer` (tracking, checkpoint, emulators), run it, tear down.

The job resumes from its latest checkpoint (local directory, or the MLflow run found by the
job's identity tag); SIGTERM makes it checkpoint and exit 143 (`trainer.errors.Stopped`).

Under torchrun (`distributed.replicas` > 1) every replica runs this: rank 0 alone tracks in
MLflow and loads the checkpoint, which it broadcasts, so replicas need no shared volume.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.envs.env import check_game, make_env
from trainer.envs.vector import VecEnv, WorkerError, make_vec_env, resolve_backend
from trainer.errors import InvalidInput, Stopped
from trainer.games.base import rom_sha1
from trainer.rl.console import Console
from trainer.rl.distributed import Replicas, is_restart, start_replicas, weights_digest
from trainer.rl.loop import Counters, Trainer, TrainSummary
from trainer.rl.seeding import seed_everything
from trainer.rl.setup import (
    acting_policy,
    build_agent,
    preload_optimizer_imports,
    resolve_device,
    set_torch_threads,
)
from trainer.rl.stopping import StopFlag, stop_on_signals
from trainer.spec import (
    ENV_JOB_NAME,
    JobSpec,
    environment_tracking_uri,
    run_identity,
    training_hash,
)
from trainer.tracking.checkpoints import CheckpointStore
from trainer.tracking.tracker import UNSENT_METRICS, NullTracker, RunStatus, Tracker


class CheckpointMismatch(InvalidInput):
    """The job's checkpoint was written for a different spec (training hash)."""


def train(
    spec: JobSpec, *, force: bool = False, fresh: bool = False, console: Console | None = None
) -> TrainSummary:
    """Train `spec` to `ppo.total_steps`, resuming the job's checkpoint when one exists."""
    console = console or Console()
    # Signal handlers first: a SIGTERM while MLflow or the emulators start is not lost.
    with stop_on_signals() as stop:
        if spec.env.num_envs == "auto":
            spec = spec.with_num_envs(spec.resolved_num_envs())
        set_torch_threads(spec)
        identity = run_identity(spec)
        store = CheckpointStore(Path(spec.checkpoint.dir) / identity, keep=spec.checkpoint.keep)
        rom = check_game(spec)  # a bad game.* value: exit 2 before anything starts
        if spec.mlflow.enabled and not spec.mlflow.tracking_uri:
            environment_tracking_uri(os.environ)  # one MLflow cannot open: exit 2 here too
        replicas = start_replicas(spec, resolve_device(spec.ppo.device))
        if not replicas.main:  # rank 0 speaks for the group; the others print their digest only
            console = Console(io.StringIO(), progress_bar=False)
        fresh = fresh and not is_restart()  # torchrun's restart of the group resumes
        try:
            if replicas.main:  # the one writer of the job's checkpoints and MLflow run
                store.lock(lock_wait_s(spec), warn=console.print)
            tracker = make_tracker(spec, identity, rom, console) if replicas.main else NullTracker()
            tracker.start()
            with tracked(tracker, console) as session:
                checkpoint = shared_checkpoint(
                    replicas, lambda: load_checkpoint(spec, store, tracker, console, fresh, force)
                )
                if checkpoint is not None:
                    step = int(checkpoint["global_step"])
                    session.log_name = f"console-from-step-{step}.log"  # the first one's stays
                    if step >= spec.ppo.total_steps:
                        return already_trained(spec, checkpoint, identity, tracker, console)
                if stop.requested:
                    raise Stopped(stop.signum)
                return run_trainer(spec, checkpoint, tracker, store, console, stop, replicas)
        finally:
            store.unlock()
            replicas.close()


def lock_wait_s(spec: JobSpec) -> float:
    """How long to wait for another trainer of this job to let go of its folder: not at all on
    a terminal (a second `trainer run` of one job is a mistake, said at once); in a pod, the old
    pod's grace period to write its last checkpoint, plus NFS's 90 s lease for a lock whose node
    died (RFC 7530 §9.5)."""
    if not os.environ.get(ENV_JOB_NAME):
        return 0.0
    return spec.kubernetes.termination_grace_period_seconds + 90.0


def make_tracker(spec: JobSpec, identity: str, rom: Path, console: Console) -> Tracker:
    if not spec.mlflow.enabled:
        return NullTracker()
    from trainer.tracking.mlflow_run import MlflowTracker

    tags = {"rom_sha1": rom_sha1(rom.read_bytes())}
    return MlflowTracker(spec, identity, tags, notify=console.print)


def shared_checkpoint(
    replicas: Replicas, load: Callable[[], dict[str, Any] | None]
) -> dict[str, Any] | None:
    """Rank 0's `load()`, broadcast to every replica; its refusal (e.g. a checkpoint of another
    spec) is raised on every replica, so none waits for a checkpoint that will not come."""
    if replicas.size == 1:
        return load()
    outcome: tuple[dict[str, Any] | None, list[str] | None] = (None, None)
    if replicas.main:
        try:
            outcome = (load(), None)
        except InvalidInput as exc:
            outcome = (None, exc.problems)
    checkpoint, problems = replicas.broadcast(outcome)
    if problems is not None:
        raise CheckpointMismatch(problems)
    return checkpoint


def load_checkpoint(
    spec: JobSpec,
    store: CheckpointStore,
    tracker: Tracker,
    console: Console,
    fresh: bool,
    force: bool,
) -> dict[str, Any] | None:
    """The job's latest intact checkpoint: on disk (a corrupt one is skipped, and the console
    says so), else in its MLflow run; None to start fresh."""
    if fresh or not spec.checkpoint.resume:
        return None
    checkpoint = store.load_latest(warn=console.print)
    # With replicas, rank 0 may be another pod than the one whose folder holds a checkpoint,
    # and that folder may hold an older one: the newer of the two wins.
    if checkpoint is None or spec.distributed.replicas > 1:
        fetched = tracker.fetch_latest_checkpoint(store.root / "downloaded")
        remote = CheckpointStore.load(fetched) if fetched is not None else None
        if remote is not None and (
            checkpoint is None or remote["global_step"] > checkpoint["global_step"]
        ):
            checkpoint = remote
    expected = training_hash(spec)
    if checkpoint is not None and checkpoint["training_hash"] != expected and not force:
        raise CheckpointMismatch(
            f"checkpoint.dir: the checkpoint in {store.root} was written for a different spec "
            f"(training hash {checkpoint['training_hash']}, this spec {expected}); "
            "use another `name`, pass --fresh to start over, or --force to load it anyway"
        )
    return checkpoint


def run_trainer(
    spec: JobSpec,
    checkpoint: dict[str, Any] | None,
    tracker: Tracker,
    store: CheckpointStore,
    console: Console,
    stop: StopFlag,
    replicas: Replicas,
) -> TrainSummary:
    """Start the emulators, train, print the summary, log the policy; always close the pool."""
    seed_everything(spec.seed)
    device = resolve_device(spec.ppo.device)
    preload = preload_optimizer_imports()  # while the emulators start
    with naming_the_game(spec):
        envs = start_envs(spec, console, first_index=replicas.rank * int(spec.env.num_envs))
    try:
        preload.join()
        agent = build_agent(spec, envs.observation_shape, envs.num_actions, device)
        replicas.broadcast_module(agent)  # one start for all (a checkpoint overrides it)
        trainer = Trainer(
            spec, envs, agent, tracker=tracker, store=store, console=console, stop=stop,
            device=device, replicas=replicas,
        )  # fmt: skip
        if checkpoint is not None:
            trainer.resume(checkpoint)
        with naming_the_game(spec):
            summary = trainer.run()
        print_summary(console, summary, spec.env.frame_skip)
        if replicas.size > 1:
            # One write: the replicas share the terminal, and print() writes the newline apart.
            sys.stderr.write(
                f"replica {replicas.rank}/{replicas.size}: policy sha256 {weights_digest(agent)}\n"
            )
            sys.stderr.flush()
        trained = summary.final_step > summary.resumed_from_step
        if not (replicas.main and trained):
            return summary
        if spec.checkpoint.video:
            trainer.record_video()
        if spec.mlflow.log_model:
            tracker.log_model(agent.cpu(), obs_example=trainer.collector.next_obs[:1].cpu())
        return summary
    finally:
        plural = "s" if envs.num_envs > 1 else ""
        console.print(f"🧹 Cleaning up {envs.num_envs} environment{plural}...")
        envs.close()


@contextlib.contextmanager
def naming_the_game(spec: JobSpec) -> Iterator[None]:
    """A `WorkerError` names the game: the environments' index alone says little. A worker that
    did not answer says how a ROM hangs PyBoy: an illegal opcode costs it no cycles, so the
    frame never ends (pyboy/core/opcodes.py `no_opcode`)."""
    try:
        yield
    except WorkerError as exc:
        hint = ""
        if "did not answer within worker_timeout" in str(exc):
            hint = (
                "; PyBoy never returned: a ROM that runs an illegal opcode hangs it for good, "
                "a game that is only slow needs a larger env.worker_timeout_s"
            )
        game = f"game.rom {spec.game.rom}, adapter {spec.game.adapter}"
        raise WorkerError(f"{exc}\n({game}{hint})") from exc


def start_envs(spec: JobSpec, console: Console, first_index: int = 0) -> VecEnv:
    """The pool, with the seed's lines printed as each environment really starts and closes.
    Its environments are `first_index`… of the run (each replica has its own, seeded apart)."""
    env, count = spec.env, int(spec.env.num_envs)
    what = "parallel environments" if count > 1 else "environment"
    console.print(f"🔧 Initializing {count} {what}...")
    backend = env.backend
    if backend == "fastest" and spec.ppo.async_rollout:
        # The probe times collection alone; with async collection the workers step while the
        # learner works, which a pool in this process (one GIL) cannot do.
        backend = "process"
    restarts = {}
    if resolve_backend(backend, count) != "serial":
        restarts = {
            "worker_timeout": env.worker_timeout_s,
            "max_restarts": env.max_worker_restarts,
            "restart_window": env.restart_window_s,
        }
    pool = make_vec_env(
        [functools.partial(make_env, spec, first_index + i) for i in range(count)],
        backend=backend,
        envs_per_worker=env.envs_per_worker,
        on_env_ready=lambda i: console.print(f"✅ Environment {i + 1}/{count} initialized"),
        on_env_closed=lambda i: console.print(f"✅ Environment {i + 1} closed"),
        probe_policy=functools.partial(acting_policy, spec),
        **restarts,
    )
    if pool.backend_choice is not None:
        console.print(f"⚖️  Fastest backend here: {pool.backend_choice.describe()}")
    return pool


def already_trained(
    spec: JobSpec, checkpoint: dict[str, Any], identity: str, tracker: Tracker, console: Console
) -> TrainSummary:
    """A Job whose pod starts again after finishing (or `make train` run twice): no emulator;
    metrics a kill kept from MLflow are sent now."""
    tracker.restore_unsent(checkpoint.get(UNSENT_METRICS))
    counters = Counters.from_state(checkpoint)
    console.print(
        f"✔️  Run {identity} already trained to {counters.global_step:,} of "
        f"{spec.ppo.total_steps:,} steps: nothing to do (--fresh starts over)"
    )
    return TrainSummary(
        final_step=counters.global_step,
        total_episodes=counters.episodes,
        training_seconds=0.0,
        avg_reward_last10=counters.average_return(),
        num_envs=int(spec.env.num_envs),
        replicas=spec.distributed.replicas,
        steps_per_second=0.0,
        episodes_per_second=0.0,
        frames_per_second=0.0,
        learner_fraction=0.0,
        resumed_from_step=counters.global_step,
        run_id=tracker.run_id,
        run_url=tracker.run_url,
        worker_restarts=0,
    )


@dataclass
class _Session:
    log_name: str = "console.log"


@contextlib.contextmanager
def tracked(tracker: Tracker, console: Console) -> Iterator[_Session]:
    """Close the run with the status the block ends with (FINISHED; KILLED on a stop or Ctrl-C;
    FAILED on an error), after uploading the console log under the session's `log_name`."""
    session = _Session()
    status: RunStatus = "FAILED"
    try:
        yield session
        status = "FINISHED"
    except (Stopped, KeyboardInterrupt):
        status = "KILLED"
        raise
    finally:
        try:
            tracker.log_text(console.text(), session.log_name)
        finally:
            tracker.close(status)


def print_summary(console: Console, s: TrainSummary, frame_skip: int) -> None:
    """The seed's summary block."""
    console.print()
    console.print("🏁 PARALLEL TRAINING COMPLETE")
    console.print("=" * 50)
    console.print(f"Final step: {s.final_step:,}")
    console.print(f"Total episodes: {s.total_episodes}")
    console.print(f"Training time: {s.training_seconds:.1f} seconds")
    average = s.avg_reward_last10
    shown = "none yet (no episode ended)" if math.isnan(average) else f"{average:.3f}"
    console.print(f"Average reward (last 10): {shown}")
    if s.replicas > 1:
        total = s.num_envs * s.replicas
        console.print(f"Environments used: {total} ({s.replicas} replicas × {s.num_envs})")
    else:
        console.print(f"Environments used: {s.num_envs}")
    console.print(f"Steps per second: {s.steps_per_second:.1f}")
    console.print(f"Episodes per second: {s.episodes_per_second:.2f}")
    console.print(f"Frames per second: {s.frames_per_second:.1f} (frame skip {frame_skip})")
    console.print(f"Learner share of time: {s.learner_fraction:.0%}")
    if s.resumed_from_step:
        console.print(f"Resumed from step: {s.resumed_from_step:,}")
    if s.run_id:
        console.print(f"MLflow run: {s.run_id}" + (f" ({s.run_url})" if s.run_url else ""))
