"""`trainer bench --replicas 1,2,4`: how one run scales over replicas on this machine.

Each row is a real `trainer run` (torchrun on loopback, gloo, for more than one replica) of the
same spec and step budget; its figures are read from the run's own summary. Beside every
multi-replica row runs its baseline: one process with as many environments as all replicas
together, so the ratio says what splitting the same emulators over processes (and their
all-reduces) costs or gains here. On a machine with fewer cores than replicas × (envs + learner)
the replicas compete for CPUs: the figures say so, they are not a cluster's.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from trainer.bench.reliability import _EPISODE
from trainer.bench.report import machine_description
from trainer.spec import JobSpec

_SPS = re.compile(r"^Steps per second: ([\d.]+)", re.M)
_RETURN = re.compile(r"^Average reward \(last 10\): (-?[\d.]+|nan)", re.M)


@dataclass
class ReplicaRow:
    replicas: int
    num_envs: int  # per replica
    steps_per_second: float  # global: every replica's env steps
    wall_seconds: float  # the whole command, start-up and rendezvous included
    return_last10: float
    return_second_half: float  # mean over the episodes of the second half of training (less noisy)
    baseline_steps_per_second: float | None = None  # one process, replicas × num_envs envs

    @property
    def per_replica(self) -> float:
        return self.steps_per_second / self.replicas

    @property
    def ratio(self) -> float | None:
        base = self.baseline_steps_per_second
        return self.steps_per_second / base if base else None


@dataclass
class ReplicaScaling:
    machine: str
    date: str
    total_steps: int
    rows: list[ReplicaRow] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def run_point(spec: JobSpec, replicas: int, num_envs: int, workdir: Path) -> ReplicaRow:
    """One `trainer run` of `spec` with these replicas and envs per replica; its summary."""
    point = spec.updated(
        {
            "env.num_envs": num_envs,
            "distributed.replicas": replicas,
            "mlflow.enabled": False,
            "checkpoint.dir": str(workdir / f"x{replicas}-e{num_envs}"),
            "checkpoint.video": False,
            "sweep": {},
        }
    )
    path = workdir / f"x{replicas}-e{num_envs}.yaml"
    path.write_text(yaml.safe_dump(point.model_dump(mode="json")))
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "trainer", "run", str(path), "--fresh"],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - began
    sps, ret = _SPS.search(done.stdout), _RETURN.search(done.stdout)
    if done.returncode != 0 or not sps or not ret:
        raise RuntimeError(
            f"trainer run with {replicas} replica(s) × {num_envs} envs failed (exit "
            f"{done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
        )
    half = spec.ppo.total_steps / 2
    episodes = [
        (int(m[1]), float(m[2])) for m in map(_EPISODE.search, done.stdout.splitlines()) if m
    ]
    late = [ret for step, ret in episodes if step > half]
    late_mean = sum(late) / len(late) if late else float("nan")
    return ReplicaRow(replicas, num_envs, float(sps.group(1)), wall, float(ret.group(1)), late_mean)


def bench_replicas(
    spec: JobSpec, counts: tuple[int, ...], progress: Callable[[str], None] | None = None
) -> ReplicaScaling:
    """Every replica count of `counts` with the spec's envs per replica, each beside one
    process with the same total envs (measured right after it, in this run)."""
    say = progress or (lambda message: None)
    n = spec.resolved_num_envs()
    scaling = ReplicaScaling(machine_description(), time.strftime("%Y-%m-%d"), spec.ppo.total_steps)
    with tempfile.TemporaryDirectory(prefix="trainer-bench-replicas-") as tmp:
        for replicas in counts:
            say(f"{replicas} replica(s) × {n} envs")
            row = run_point(spec, replicas, n, Path(tmp))
            if replicas > 1:
                say(f"baseline: 1 process × {replicas * n} envs")
                row.baseline_steps_per_second = run_point(
                    spec, 1, replicas * n, Path(tmp)
                ).steps_per_second
            scaling.rows.append(row)
    return scaling


COLUMNS = (
    "replicas × envs",
    "steps/s (global)",
    "per replica",
    "1 process, same envs",
    "ratio",
    "wall s",
    "return (last 10)",
    "return (2nd half)",
)


def scaling_title(scaling: ReplicaScaling) -> str:
    return (
        f"Replicas on loopback: {scaling.total_steps:,} steps each ({scaling.machine}, "
        f"{scaling.date})"
    )


def scaling_cells(scaling: ReplicaScaling) -> list[tuple[str, ...]]:
    """One row of `COLUMNS` per replica count: what the terminal and the README both show."""
    rows = []
    for r in scaling.rows:
        base = r.baseline_steps_per_second
        rows.append(
            (
                f"{r.replicas} × {r.num_envs}",
                f"{r.steps_per_second:,.0f}",
                f"{r.per_replica:,.0f}",
                "(itself)" if base is None else f"{base:,.0f}",
                "" if r.ratio is None else f"{r.ratio:.2f}×",
                f"{r.wall_seconds:.1f}",
                f"{r.return_last10:.2f}",
                f"{r.return_second_half:.2f}",
            )
        )
    return rows


def scaling_table(scaling: ReplicaScaling):  # -> rich.table.Table
    from rich.table import Table

    table = Table(title=scaling_title(scaling))
    for name in COLUMNS:
        table.add_column(name, justify="right")
    for cells in scaling_cells(scaling):
        table.add_row(*cells)
    return table


def scaling_markdown(scaling: ReplicaScaling) -> str:
    lines = [f"**{scaling_title(scaling)}**", "", "| " + " | ".join(COLUMNS) + " |"]
    lines.append("|" + "---:|" * len(COLUMNS))
    lines += ["| " + " | ".join(cells) + " |" for cells in scaling_cells(scaling)]
    return "\n".join(lines) + "\n"


def scaling_from_json(text: str) -> ReplicaScaling:
    data = json.loads(text)
    rows = [ReplicaRow(**row) for row in data.pop("rows")]
    return ReplicaScaling(**data, rows=rows)
