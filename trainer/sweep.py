"""A sweep: one spec, one point per (environment count, replica count) pair, each a spec of its
own with its Job name.

The pairs are every env count with every replica count (replicas outermost), or, with
`sweep.total_envs`, only those whose replicas × num_envs is that total (`trainer.spec.sweep_grid`):
`num_envs: [2, 4, 8]`, `replicas: [1, 2, 4]`, `total_envs: 8` runs 1×8, 2×4 and 4×2.

Pure functions of the spec (no Kubernetes, no torch): the Kubernetes renderer, the local
launcher and the Helm chart's tests all plan sweeps with them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from trainer.spec import (
    JobSpec,
    SpecError,
    check_env_counts,
    job_name,
    run_id,
    sweep_grid,
    sweep_id,
)

#: Turns (the sweep's spec, one env count, one replica count) into the spec that point runs.
PointSpec = Callable[[JobSpec, int, int], JobSpec]


def env_counts(spec: JobSpec, num_envs_list: Sequence[int] | None = None) -> list[int]:
    """Env counts to run: the explicit list (`--envs`), else `sweep.num_envs`, else
    `env.num_envs`."""
    if num_envs_list:
        return check_env_counts(num_envs_list, where="--envs")
    if spec.sweep.num_envs:
        return list(spec.sweep.num_envs)
    if spec.env.num_envs == "auto":
        raise SpecError(
            [
                "env.num_envs: 'auto' cannot size a pod (its CPU request depends on it); "
                "set a number, sweep.num_envs, or pass --envs"
            ]
        )
    return [int(spec.env.num_envs)]


def replica_counts(spec: JobSpec, replicas_list: Sequence[int] | None = None) -> list[int]:
    """Replica counts to run: the explicit list (`--replicas`), else `sweep.replicas`, else
    `distributed.replicas`."""
    if replicas_list:
        return check_env_counts(replicas_list, where="--replicas")
    return list(spec.sweep.replicas) or [spec.distributed.replicas]


def grid(
    spec: JobSpec,
    num_envs_list: Sequence[int] | None = None,
    replicas_list: Sequence[int] | None = None,
) -> list[tuple[int, int]]:
    """The sweep's (num_envs, replicas) pairs, filtered by `sweep.total_envs`; `SpecError`
    naming the fields and options when that leaves none."""
    counts = env_counts(spec, num_envs_list)
    replicas = replica_counts(spec, replicas_list)
    try:
        return sweep_grid(counts, replicas, spec.sweep.total_envs)
    except ValueError as exc:
        given = [o for o, v in (("--envs", num_envs_list), ("--replicas", replicas_list)) if v]
        note = f" (with {' and '.join(given)})" if given else ""
        raise SpecError([f"{exc}{note}"]) from None


@dataclass(frozen=True)
class SweepPoint:
    num_envs: int
    spec: JobSpec
    job_name: str
    replicas: int = 1

    @property
    def run_id(self) -> str:
        """The training run this point continues (`trainer.spec.run_id`)."""
        return run_id(self.spec)

    @property
    def label(self) -> str:
        """`e<num_envs>` or `e<num_envs>x<replicas>`: the point in Job names and prefixes."""
        return f"e{self.num_envs}" + (f"x{self.replicas}" if self.replicas > 1 else "")


def plan(
    spec: JobSpec,
    num_envs_list: Sequence[int] | None = None,
    *,
    replicas_list: Sequence[int] | None = None,
    sweep: str | None = None,
    point_spec: PointSpec | None = None,
) -> tuple[str, list[SweepPoint]]:
    """(sweep id, one point per (env count, replica count) pair). `point_spec` makes each
    point's spec (default: the spec with those counts and no sweep, for a local process)."""
    make = point_spec or (lambda base, count, replicas: base.with_num_envs(count, replicas))
    points = []
    for count, replicas in grid(spec, num_envs_list, replicas_list):
        point = make(spec, count, replicas)
        points.append(SweepPoint(count, point, job_name(point), replicas))
    return sweep or sweep_id(spec.name, [p.job_name for p in points]), points
