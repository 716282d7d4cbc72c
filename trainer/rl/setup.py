"""What the loop sets up from the spec: torch's threads, the device, and the policy network."""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Callable

import numpy as np
import torch

from trainer.envs.env import NUM_TILE_IDS
from trainer.errors import InvalidInput
from trainer.rl.ppo import Agent, LossConfig
from trainer.rl.rollout import obs_to_tensor
from trainer.rl.seeding import generator
from trainer.spec import JobSpec, available_cpus


def set_torch_threads(spec: JobSpec) -> int:
    """Torch threads = the learner's CPUs (`resources.learner_cpu`, or OMP_NUM_THREADS, which a
    pod sets from it), capped by the CPUs this process may use (cgroup quota, affinity).

    Not the node's CPU count: idle OpenMP threads spin and steal the cores the emulator workers
    need; measured under load, 2 threads made a batch-2 policy call 100× slower than 1 thread.
    """
    threads = omp_num_threads(os.environ.get("OMP_NUM_THREADS", "")) or int(
        spec.resources.learner_cpu
    )
    torch.set_num_threads(max(1, min(threads, available_cpus())))
    return torch.get_num_threads()


def preload_optimizer_imports() -> threading.Thread:
    """Import `torch._dynamo` in a thread of its own; join it before building the optimizer.
    torch.optim's first `add_param_group` imports it (its `torch._disable_dynamo` decorator),
    about 1 s of start-up; started before the emulators, the import runs while this process
    waits for its workers. `scripts/bench_startup.py`, `trainer run` to its first rollout (AMD
    EPYC, 2 CPUs): 3.04 → 2.57 s and 2.79 → 2.40 s (1.18×, 1.16×). A failure is left to the
    optimizer's own import."""

    def load() -> None:
        with contextlib.suppress(Exception):  # raised again where torch.optim imports it
            importlib.import_module("torch._dynamo")

    thread = threading.Thread(target=load, name="preload-torch-dynamo")
    thread.start()
    return thread


def omp_num_threads(value: str) -> int:
    """OMP_NUM_THREADS as OpenMP reads it: the first level of a nested list ("4,2"); 0 when unset
    or invalid, which OpenMP ignores with a warning (libgomp's env.c) and so do we."""
    first = value.split(",", 1)[0].strip()
    return int(first) if first.isdigit() else 0


def resolve_device(name: str) -> torch.device:
    """`ppo.device`: `auto` is CUDA when present, else the CPU. A CUDA device this machine does
    not have is invalid input (exit 2), said before any emulator starts."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            have = f"{count} CUDA device(s)" if torch.version.cuda else "a CPU-only PyTorch"
            raise InvalidInput(
                f"ppo.device: {name}: this machine has {have}; use auto (CUDA when present) or "
                "cpu, or on Kubernetes request one with resources.gpu"
            )
    return device


def build_agent(
    spec: JobSpec, obs_shape: tuple[int, ...], num_actions: int, device: torch.device
) -> Agent:
    """The policy network the spec describes, on `device`."""
    agent = Agent(obs_shape, num_actions, spec.env.obs.type, spec.ppo.hidden_size, NUM_TILE_IDS)
    return agent.to(device)


def acting_policy(
    spec: JobSpec, observation_shape: tuple[int, ...], num_actions: int
) -> Callable[[np.ndarray], np.ndarray]:
    """The spec's network with fresh weights, acting on a batch of observations as the
    collector does (`Agent.act` under inference mode, a sampler of its own): to time pools and
    collection with the policy's real cost between steps. Torch's global random state is left
    as it was, so the run's own network starts from the same weights."""
    device = resolve_device(spec.ppo.device)
    with torch.random.fork_rng(devices=[]):
        agent = build_agent(spec, observation_shape, num_actions, device)
    sampler = generator(spec.seed, device)

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            action, _, _ = agent.act(obs_to_tensor(obs).to(device), generator=sampler)
        return action.cpu().numpy()

    return act


def loss_config(spec: JobSpec) -> LossConfig:
    """The PPO loss settings of `spec.ppo`."""
    ppo = spec.ppo
    return LossConfig(ppo.clip_coef, ppo.clip_vloss, ppo.norm_adv, ppo.ent_coef, ppo.vf_coef)
