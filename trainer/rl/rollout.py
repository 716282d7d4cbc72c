"""Rollouts: their storage, the collector that fills them, and the two ways to schedule it.

- `Rollout`: CleanRL's rollout buffers, (T, N, ...) tensors on the learner's device, plus the
  episodes that ended while it was collected and the collector's state when it began (so a
  checkpoint can make a resumed run collect exactly the same rollout again).
- `Collector`: steps the pool with a policy, one batched inference call per vector step.
- `SyncRollouts`: collect, then learn (CleanRL). `AsyncRollouts`: collect the next rollout with
  the previous policy while the learner trains on this one (one update of policy lag).
"""

from __future__ import annotations

import copy
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trainer.envs.vector import VecEnv
from trainer.rl.ppo import Agent
from trainer.rl.seeding import restore_generator
from trainer.rl.stopping import StopFlag


def obs_to_tensor(obs: np.ndarray) -> torch.Tensor:
    """Tile ids come as uint16 (< 768): view them as int16, which torch handles everywhere."""
    if obs.dtype == np.uint16:
        obs = obs.view(np.int16)
    return torch.from_numpy(obs)


@dataclass(frozen=True)
class Episode:
    """One finished episode: where and when it ended, what it earned, the adapter's stats."""

    step: int  # global step after the vector step that ended it
    ret: float
    length: int
    elapsed: float  # seconds since collection started
    stats: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CollectorState:
    """What the collector needs to collect a rollout again exactly: its sampler's state, and the
    acting policy's weights when it acts with a copy of the learner's (async)."""

    sampler: torch.Tensor
    actor: dict[str, torch.Tensor] | None = None


@dataclass(eq=False)
class Rollout:
    """One rollout's storage, (T, N, ...) on the learner's device.

    `next_obs` is the observation after the last stored step, for the bootstrap value; `steps`
    is how many of the T rows the last collection filled; `end_step` the global step after it.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    ends: torch.Tensor
    values: torch.Tensor
    next_obs: torch.Tensor
    steps: int = 0
    end_step: int = 0
    episodes: list[Episode] = field(default_factory=list)
    start_state: CollectorState | None = None

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


class Collector:
    """Steps the pool with `actor` and fills rollouts (CleanRL's rollout loop).

    `global_step` counts the env steps collected so far (over all envs, and over all `replicas`,
    which step in lockstep: each vector step here is one of every replica); collection stops at
    `total_steps` (rounded up to whole vector steps) or when `stop` is set. Actions are drawn
    from `sampler`, the collector's own generator.
    """

    def __init__(
        self,
        envs: VecEnv,
        actor: Agent,
        *,
        gamma: float,
        rollout_steps: int,
        total_steps: int,
        sampler: torch.Generator,
        stop: StopFlag,
        device: torch.device,
        owns_actor: bool = False,
        replicas: int = 1,
    ):
        self.envs, self.actor, self.sampler, self.stop = envs, actor, sampler, stop
        self.gamma, self.rollout_steps, self.total_steps = gamma, rollout_steps, total_steps
        self.device = device
        self.owns_actor = owns_actor  # the actor is a copy whose weights a checkpoint must keep
        self.num_envs = envs.num_envs
        self.step_size = envs.num_envs * replicas  # env steps of one vector step, all replicas
        self.global_step = 0
        self.cancelled = False  # set by `cancel()`: stop collecting, without asking for a stop
        self.next_obs = obs_to_tensor(envs.reset()).to(device)
        self.start = time.perf_counter()

    def steps_left(self) -> int:
        """Vector steps still to collect so training stops at total_steps (rounded up to N)."""
        left = self.total_steps - self.global_step
        return max(0, min(self.rollout_steps, -(-left // self.step_size)))

    def cancel(self) -> None:
        """End a collection in flight after its current vector step (another thread failed)."""
        self.cancelled = True

    def state(self) -> CollectorState:
        actor = copy.deepcopy(self.actor.state_dict()) if self.owns_actor else None
        return CollectorState(self.sampler.get_state(), actor)

    def restore(self, state: CollectorState) -> None:
        restore_generator(self.sampler, state.sampler)
        if state.actor is not None and self.owns_actor:
            self.actor.load_state_dict(state.actor)

    @torch.inference_mode()
    def collect(self, buf: Rollout) -> Rollout:
        """Fill `buf` with up to `steps_left()` vector steps (fewer when `stop` is set)."""
        buf.start_state, buf.episodes, buf.steps = self.state(), [], 0
        for step in range(self.steps_left()):
            buf.obs[step] = self.next_obs
            action, logprob, value = self.actor.act(self.next_obs, generator=self.sampler)
            buf.actions[step], buf.logprobs[step], buf.values[step] = action, logprob, value
            result = self.envs.step(action.cpu().numpy())
            self.global_step += self.step_size
            buf.rewards[step] = self._rewards(result)
            buf.ends[step] = torch.from_numpy(result.dones).to(self.device, torch.float32)
            self.next_obs = obs_to_tensor(result.obs).to(self.device)
            buf.steps = step + 1
            elapsed = time.perf_counter() - self.start
            buf.episodes.extend(_episode(info, self.global_step, elapsed) for info in result.infos)
            if self.stop.requested or self.cancelled:
                break
        buf.next_obs.copy_(self.next_obs)
        buf.end_step = self.global_step
        return buf

    def _rewards(self, result: Any) -> torch.Tensor:
        rewards = torch.from_numpy(result.rewards).to(self.device)
        truncated = result.truncated & ~result.terminated
        if truncated.any():
            # A time limit is no real ending: bootstrap with γ·V(final obs) (Pardo et al. 2018).
            final = obs_to_tensor(np.ascontiguousarray(result.final_obs[truncated]))
            rewards[torch.from_numpy(truncated).to(self.device)] += self.gamma * (
                self.actor.get_value(final.to(self.device))
            )
        return rewards


def _episode(info: dict[str, Any], step: int, elapsed: float) -> Episode:
    stats = {
        k: float(v)
        for k, v in info.items()
        if k not in ("episode_return", "episode_length", "env_index")
    }
    return Episode(step, float(info["episode_return"]), int(info["episode_length"]), elapsed, stats)


class SyncRollouts:
    """Collect, then learn: the policy that acts is the one being trained (CleanRL)."""

    def __init__(self, collector: Collector, buffer: Rollout):
        self.collector, self.buffer = collector, buffer

    def next(self) -> Rollout | None:
        """The next rollout to learn from; None when the step budget is collected."""
        if not self.collector.steps_left():
            return None
        return self.collector.collect(self.buffer)

    def close(self) -> None:
        pass


class AsyncRollouts:
    """Collect rollout k+1 in a thread, with the weights of update k−1, while the learner trains
    on rollout k (one update of policy lag, as in asynchronous PPO variants). The actor is a
    copy of the learner's network, refreshed between updates, so the optimizer's in-place steps
    never race its inference."""

    def __init__(self, collector: Collector, buffers: tuple[Rollout, Rollout], learner: Agent):
        self.collector, self.buffers, self.learner = collector, buffers, learner
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollout")
        self.pending: Future[Rollout] | None = None
        self._turn = 0

    def next(self) -> Rollout | None:
        """Wait for the rollout in flight (the first one is collected here), refresh the actor
        with the learner's weights, and start collecting the one after it."""
        if self.pending is not None:
            rollout, self.pending = self.pending.result(), None
        elif self.collector.steps_left():
            rollout = self.collector.collect(self._buffer())
        else:
            return None
        self.collector.actor.load_state_dict(self.learner.state_dict())
        if self.collector.steps_left() and not self.collector.stop.requested:
            self.pending = self.executor.submit(self.collector.collect, self._buffer())
        return rollout

    def _buffer(self) -> Rollout:
        self._turn ^= 1
        return self.buffers[self._turn]

    def close(self) -> None:
        """End a collection still in flight (after an error or a stop), then the thread."""
        if self.pending is not None:
            self.collector.cancel()
            self.pending.result()
            self.pending = None
        self.executor.shutdown(wait=True)


Rollouts = SyncRollouts | AsyncRollouts
