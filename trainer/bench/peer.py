"""Ours against the user's usual alternative, in one run: Stable-Baselines3's PPO (`MlpPolicy`)
with its `SubprocVecEnv`, wrapped around our own `GameBoyEnv`, the same settings (envs, rollout,
epochs, minibatch, learning rate, clip, γ, λ, coefficients, seed, torch threads), on each game.

Speed is steps/s over the same number of steps; learning is the average return of the last
20 episodes; "time to the level" is the wall-clock time from the start of training until the
seeds' average learning curve (20-episode moving averages) first reaches a level both trainers
reached (by default the lower of their two final returns, so both times are defined).
Also the end-to-end frames/s against the raw emulator's with as many processes: how close
training runs to the physical limit.

Needs the optional `bench` extra (stable-baselines3, gymnasium).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainer.errors import InvalidInput
from trainer.spec import JobSpec

#: Episodes averaged for "return at the end" and for the threshold (the issue's figure).
WINDOW = 20


@dataclass
class LearningCurve:
    """One training run, as both trainers report it: speed, and each episode's return with the
    wall-clock second it ended at (from the start of training)."""

    steps_per_second: float
    returns: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def final_return(self, window: int = WINDOW) -> float:
        tail = self.returns[-window:]
        return float(np.mean(tail)) if tail else float("nan")

    def moving_average(self, window: int = WINDOW) -> tuple[np.ndarray, np.ndarray]:
        """(times, averages): the average of each `window` consecutive episodes, at the time the
        last of them ended (empty before `window` episodes)."""
        returns = np.asarray(self.returns, dtype=float)
        if len(returns) < window:
            return np.empty(0), np.empty(0)
        averages = np.convolve(returns, np.ones(window) / window, mode="valid")
        return np.asarray(self.times[window - 1 :], dtype=float), averages


def seconds_to(curves: Sequence[LearningCurve], level: float, window: int = WINDOW) -> float:
    """When the seeds' average learning curve first reached `level`: each seed's moving average
    (`window` episodes) held from one episode's end to the next and after its last, averaged
    over the seeds wherever all have one. NaN if it never did. A level no higher than the mean
    of the seeds' final averages is always reached, at the latest when the last seed ends."""
    series = [c.moving_average(window) for c in curves]
    if not series or any(times.size == 0 for times, _ in series):
        return float("nan")
    grid = np.unique(np.concatenate([times for times, _ in series]))
    grid = grid[grid >= max(times[0] for times, _ in series)]  # every seed has a value
    mean = np.mean(
        [values[np.searchsorted(times, grid, side="right") - 1] for times, values in series],
        axis=0,
    )
    reached = np.flatnonzero(mean >= level - 1e-9)
    return float(grid[reached[0]]) if reached.size else float("nan")


@dataclass
class PeerFigures:
    """One game: ours and SB3's over the same seeds, averaged; the raw emulator alongside."""

    game: str
    seeds: list[int]
    ours_sps: float
    peer_sps: float
    ours_return: float
    peer_return: float
    threshold: float
    ours_seconds_to_threshold: float
    peer_seconds_to_threshold: float
    raw_fps: float
    ours_fps: float

    @property
    def speed_ratio(self) -> float:
        return self.ours_sps / self.peer_sps

    @property
    def fps_vs_raw(self) -> float:
        return self.ours_fps / self.raw_fps


def require_peer() -> None:
    """The optional dependencies, or a clear error saying how to get them."""
    try:
        import gymnasium  # noqa: F401
        import stable_baselines3  # noqa: F401
    except ImportError as error:
        raise InvalidInput(
            f"trainer bench --peer: {error.name} is not installed; install the bench extra "
            "(pip install -e '.[bench]' with torch pinned as in the README)"
        ) from None


def _gym_env(spec: JobSpec, index: int) -> Any:
    """Our `GameBoyEnv` behind gymnasium's API (what SB3's vector envs call), with SB3's
    `Monitor` recording episode returns."""
    import gymnasium as gym
    from stable_baselines3.common.monitor import Monitor

    from trainer.envs.env import make_env

    class GymGameBoy(gym.Env):  # type: ignore[misc]
        def __init__(self) -> None:
            self.env = make_env(spec, index)
            obs = self.env.reset()
            high = 255 if spec.env.obs.type == "pixels" else np.iinfo(obs.dtype).max
            self.observation_space = gym.spaces.Box(0, high, obs.shape, obs.dtype)
            self.action_space = gym.spaces.Discrete(self.env.num_actions)

        def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
            return self.env.reset(), {}

        def step(self, action: Any) -> Any:
            return self.env.step(int(action))

        def close(self) -> None:
            self.env.close()

    return Monitor(GymGameBoy())


def train_peer(spec: JobSpec) -> LearningCurve:
    """SB3 PPO with the spec's settings; returns its curve. Same torch threads as ours."""
    import functools

    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import SubprocVecEnv

    ppo, count = spec.ppo, int(spec.env.num_envs)
    curve = LearningCurve(steps_per_second=float("nan"))
    start = [0.0]

    class Episodes(BaseCallback):  # type: ignore[misc]
        def _on_training_start(self) -> None:
            start[0] = time.perf_counter()

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    curve.returns.append(float(info["episode"]["r"]))
                    curve.times.append(time.perf_counter() - start[0])
            return True

    lr = ppo.learning_rate
    envs = SubprocVecEnv(
        [functools.partial(_gym_env, spec, i) for i in range(count)], start_method="forkserver"
    )
    try:
        model = PPO(
            "MlpPolicy",
            envs,
            # SB3 calls the schedule with the progress remaining (1 → 0): CleanRL's annealing.
            learning_rate=(lambda remaining: lr * remaining) if ppo.anneal_lr else lr,
            n_steps=ppo.rollout_steps,
            batch_size=ppo.batch_size,
            n_epochs=ppo.update_epochs,
            gamma=ppo.gamma,
            gae_lambda=ppo.gae_lambda,
            clip_range=ppo.clip_coef,
            clip_range_vf=ppo.clip_coef if ppo.clip_vloss else None,
            normalize_advantage=ppo.norm_adv,
            ent_coef=ppo.ent_coef,
            vf_coef=ppo.vf_coef,
            max_grad_norm=ppo.max_grad_norm,
            target_kl=ppo.target_kl,
            seed=spec.seed,
            device="cpu",
            verbose=0,
        )
        began = time.perf_counter()
        model.learn(ppo.total_steps, callback=Episodes())
        curve.steps_per_second = model.num_timesteps / (time.perf_counter() - began)
    finally:
        envs.close()
    return curve


def train_ours(spec: JobSpec) -> LearningCurve:
    """Our trainer on the spec, no MLflow, checkpoints in a scratch folder."""
    from trainer.rl.console import Console
    from trainer.rl.train import train

    with tempfile.TemporaryDirectory() as tmp:
        point = spec.updated(
            {"mlflow.enabled": False, "checkpoint.dir": tmp, "checkpoint.resume": False}
        )
        summary = train(point, console=Console(io.StringIO()))
    return LearningCurve(summary.steps_per_second, summary.returns, summary.return_times)


def compare_with_peer(
    spec: JobSpec,
    game: str,
    seeds: Sequence[int],
    raw_fps: float,
    threshold: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> PeerFigures:
    """Both trainers on `spec` for each seed, alternating (so machine noise hits both alike)."""
    say = progress or (lambda message: None)
    ours: list[LearningCurve] = []
    peers: list[LearningCurve] = []
    for seed in seeds:
        point = spec.updated({"seed": seed})
        say(f"{game}: ours, seed {seed}")
        ours.append(train_ours(point))
        say(f"{game}: Stable-Baselines3, seed {seed}")
        with contextlib.redirect_stdout(io.StringIO()):
            peers.append(train_peer(point))
    ours_return = float(np.mean([c.final_return() for c in ours]))
    peer_return = float(np.mean([c.final_return() for c in peers]))
    level = min(ours_return, peer_return) if threshold is None else threshold
    ours_sps = float(np.mean([c.steps_per_second for c in ours]))
    return PeerFigures(
        game=game,
        seeds=list(seeds),
        ours_sps=ours_sps,
        peer_sps=float(np.mean([c.steps_per_second for c in peers])),
        ours_return=ours_return,
        peer_return=peer_return,
        threshold=level,
        ours_seconds_to_threshold=seconds_to(ours, level),
        peer_seconds_to_threshold=seconds_to(peers, level),
        raw_fps=raw_fps,
        ours_fps=ours_sps * spec.env.frame_skip,
    )
