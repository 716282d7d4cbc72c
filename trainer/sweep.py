"""A sweep: one spec, one point per environment count, each a spec of its own with its Job name.

Pure functions of the spec (no Kubernetes, no torch): the Kubernetes renderer, the local
launcher and the Helm chart's tests all plan sweeps with them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from trainer.spec import JobSpec, SpecError, check_env_counts, job_name, run_id, sweep_id

#: Turns (the sweep's spec, one env count) into the spec that point runs.
PointSpec = Callable[[JobSpec, int], JobSpec]


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


@dataclass(frozen=True)
class SweepPoint:
    num_envs: int
    spec: JobSpec
    job_name: str

    @property
    def run_id(self) -> str:
        """The training run this point continues (`trainer.spec.run_id`)."""
        return run_id(self.spec)


def plan(
    spec: JobSpec,
    num_envs_list: Sequence[int] | None = None,
    *,
    sweep: str | None = None,
    point_spec: PointSpec | None = None,
) -> tuple[str, list[SweepPoint]]:
    """(sweep id, one point per env count). `point_spec` makes each point's spec (default: the
    spec with that env count and no sweep, for a local process)."""
    make = point_spec or (lambda base, count: base.with_num_envs(count))
    points = []
    for count in env_counts(spec, num_envs_list):
        point = make(spec, count)
        points.append(SweepPoint(count, point, job_name(point)))
    return sweep or sweep_id(spec.name, [p.job_name for p in points]), points
