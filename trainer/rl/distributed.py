"""Data-parallel PPO over replicas: each runs its own emulators and learner, and gradients are
averaged with all-reduce before every optimizer step, so all hold the same weights (DD-PPO,
Wijmans et al. 2020, "Decentralized Distributed PPO", arXiv:1911.00357).

`Replicas` is the group as the loop sees it: the rank and size, and the few collectives PPO needs
(average gradients, normalise advantages over the global minibatch, agree on a stop, gather
episodes and checkpoint parts, broadcast the checkpoint). With one replica every method is the
plain single-process computation, without torch.distributed, so a 1-replica run is the run it
always was, bit for bit.

Processes are started by `torchrun` (torch.distributed.run), which sets RANK/WORLD_SIZE and the
store address, and restarts the whole group after a failure (`--max-restarts`): `trainer run`
re-executes itself under it (`torchrun_argv`) when the spec asks for more than one replica.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from trainer.errors import InvalidInput, TrainerError
from trainer.spec import ENV_RDZV_ENDPOINT, ENV_RDZV_ID, JobSpec

#: Seeds of replica r > 0 are offset by r × this prime, so no two replicas draw the same streams.
SEED_STRIDE = 1_000_003

T = TypeVar("T")


class ReplicaMismatch(InvalidInput):
    """torchrun started another number of processes than `distributed.replicas`."""


class ReplicasDiverged(TrainerError):
    """Replicas' weights differ: the gradient averaging is broken (never expected)."""


@dataclass
class Replicas:
    """The training group; `Replicas()` is the single process."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0 logs to MLflow, writes checkpoints and loads the one every replica resumes."""
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """This replica's seed for a stream that must differ between replicas."""
        return seed + SEED_STRIDE * self.rank

    # ---- collectives (identity with one replica) ------------------------------------------
    def average_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Mean of every gradient over the replicas, in one all-reduce of a flat buffer."""
        if self.size == 1:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(x − mean) / (std + 1e-8) over the global minibatch (every replica's part); the std
        is the unbiased one of `torch.std`, computed in two passes for stability."""
        if self.size == 1:
            return (x - x.mean()) / (x.std() + 1e-8)
        total = torch.stack([x.sum(), torch.tensor(float(x.numel()), device=x.device)]).double()
        dist.all_reduce(total)
        mean = (total[0] / total[1]).to(x.dtype)
        squares = ((x - mean) ** 2).sum().double()
        dist.all_reduce(squares)
        std = torch.sqrt(squares / (total[1] - 1)).to(x.dtype)
        return (x - mean) / (std + 1e-8)

    def mean(self, value: float) -> float:
        """The mean of a number over the replicas (e.g. the KL that stops an update early)."""
        if self.size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor[0]) / self.size

    def gather(self, obj: T) -> list[T]:
        """Every replica's `obj`, in rank order, on every replica."""
        if self.size == 1:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: T) -> T:
        """Rank 0's `obj` on every replica."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's weights into every replica's `module` (the same start without a checkpoint)."""
        if self.size == 1:
            return
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)

    def close(self) -> None:
        if self.size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 of the module's tensors (names and bytes): equal iff the weights are equal."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_identical(digests: list[str]) -> None:
    """Every replica's weights digest must be the same; `ReplicasDiverged` names who differs."""
    differ = [rank for rank, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise ReplicasDiverged(
            f"replicas {differ} hold other weights than replica 0 (digests "
            f"{', '.join(d[:12] for d in digests)}): gradients were not averaged over the group"
        )


def start_replicas(
    spec: JobSpec, device: torch.device, environ: Mapping[str, str] = os.environ
) -> Replicas:
    """The group this process is in: from torchrun's RANK/WORLD_SIZE (joining the process group,
    gloo on CPU and nccl on CUDA unless `distributed.backend` says), else the single process."""
    size = int(environ.get("WORLD_SIZE", "1"))
    expected = spec.distributed.replicas
    if size != expected:
        raise ReplicaMismatch(
            [
                f"distributed.replicas: the spec asks for {expected} replica(s) but this process "
                f"is one of {size} (torchrun's WORLD_SIZE); start it with `trainer run` (it "
                f"starts torchrun itself), or give torchrun --nnodes × --nproc-per-node = {expected}"
            ]
        )
    if size == 1:
        return Replicas()
    backend = spec.distributed.backend
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device.index or int(environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=spec.distributed.timeout_s))
    return Replicas(rank=dist.get_rank(), size=dist.get_world_size())


def under_torchrun(environ: Mapping[str, str] = os.environ) -> bool:
    """True in a process torchrun started (it sets TORCHELASTIC_RUN_ID for its workers), or one
    another launcher gave RANK/WORLD_SIZE. Not in a pod of ours (`TRAINER_RDZV_ENDPOINT` set):
    a PyTorchJob's operator sets WORLD_SIZE there too, and our torchrun agent must still run
    (it restarts the group after a failure, which the bare variables cannot)."""
    if "TORCHELASTIC_RUN_ID" in environ:
        return True
    return "WORLD_SIZE" in environ and ENV_RDZV_ENDPOINT not in environ


def is_restart(environ: Mapping[str, str] = os.environ) -> bool:
    """True when torchrun restarted the group after a failure (`--fresh` must not apply again)."""
    return int(environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0


def torchrun_args(
    spec: JobSpec, trainer_args: list[str], environ: Mapping[str, str] = os.environ
) -> list[str]:
    """torchrun's arguments to run `trainer <trainer_args>` as `distributed.replicas` processes.

    In a pod of a multi-replica Job (`TRAINER_RDZV_ENDPOINT` set), one process per pod joins the
    c10d rendezvous hosted at rank 0's stable name; elsewhere all replicas run on this machine
    (`--standalone`: a rendezvous on a free loopback port). The Kubernetes renderer sets both
    variables on each pod of a multi-replica Job (`trainer.kube.manifests`). Either way torchrun restarts the
    whole group up to `distributed.max_restarts` times, each replica then resuming from the last
    checkpoint, and gives up on a peer that does not join within `distributed.timeout_s`.
    """
    d = spec.distributed
    timeout = f"join_timeout={d.timeout_s},close_timeout={min(d.timeout_s, 60)}"
    endpoint = environ.get(ENV_RDZV_ENDPOINT, "").strip()
    if endpoint:
        group = [
            f"--nnodes={d.replicas}",
            "--nproc-per-node=1",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}",
            f"--rdzv-id={environ.get(ENV_RDZV_ID) or spec.name}",
        ]
    else:
        group = ["--standalone", "--nnodes=1", f"--nproc-per-node={d.replicas}"]
    return [
        *group,
        f"--rdzv-conf={timeout}",
        f"--max-restarts={d.max_restarts}",
        "--monitor-interval=1",
        "--module",
        "trainer",
        *trainer_args,
    ]


def launch_replicas(spec: JobSpec, trainer_args: list[str]) -> int:
    """Run torchrun's elastic agent in this process (it starts, watches and restarts the
    replicas) and return the exit code a script or a Job's podFailurePolicy should see: 2 when a
    replica refused its input, 128 + signal when stopped, 1 for any other failure."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # A group restart must not reuse the agent's TCP store: workers of the new round would read
    # the dead round's addresses (pytorch/pytorch#135712); one store per round avoids it.
    os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    # torchrun would set 1 thread per worker; each replica's learner gets its own CPUs, as a
    # pod's OMP_NUM_THREADS says (`resources.learner_cpu`, whole cores).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, int(spec.resources.learner_cpu))))
    args = get_args_parser().parse_args(torchrun_args(spec, trainer_args))
    try:
        run(args)
    except ChildFailedError as exc:
        codes = {failure.exitcode for failure in exc.failures.values()}
        return exit_code_of_replicas(codes)
    except SignalException as exc:
        return 128 + int(exc.sigval)
    return 0


def exit_code_of_replicas(codes: set[int]) -> int:
    """One exit code for the group's failed replicas' codes (negative: killed by a signal)."""
    if 2 in codes:
        return 2  # invalid input: retrying cannot help (a Job's podFailurePolicy fails the Job)
    stopped = {c for c in codes if c >= 128 or c < 0}
    if stopped and stopped == codes:
        return 128 + abs(min(codes)) if min(codes) < 0 else max(codes)
    return 1
