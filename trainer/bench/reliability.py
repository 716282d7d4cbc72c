"""`trainer bench --reliability`: an MLflow outage in the middle of a real training run, measured.

The fault of issue 13, injected for real: a `quickstart` run (2 emulators; 240,000 steps, so
that the outage ends well before training does) logs to an `mlflow server` on loopback;
`kill_after_s` seconds after the first update the server's whole process group is SIGKILLed,
and `outage_s` seconds later it is started again on the same database. The trainer runs as
`trainer run` in a subprocess whose console lines are time-stamped as they arrive, and whose
process tree's CPU time is sampled, so every phase is measured in one run: before the kill,
while the server is down, while it starts again (its start-up, seconds of heavy CPU, shares
this machine's CPUs with training; on a cluster it runs elsewhere), and after. Steps/s is wall
clock and moves with whatever else runs on the machine; CPU seconds per 1,000 steps (the
trainer, its workers included) is what the trainer itself spends, and barely does.

Then MLflow is asked for every metric step the console says was logged: the update steps
(`perf/sps`) and the episodes (`charts/episodic_return`); anything missing is lost.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from trainer.bench.report import machine_description
from trainer.bench.servers import MlflowServer

#: configs/quickstart.yaml, longer (a test keeps the two in step).
QUICKSTART_LONG: dict[str, Any] = {
    "name": "reliability",
    "seed": 1,
    "env": {"num_envs": 2, "frame_skip": 4, "episode_length": 150},
    "ppo": {
        "total_steps": 240000,
        "rollout_steps": 128,
        "update_epochs": 6,
        "batch_size": 128,
        "learning_rate": 2.5e-3,
        "clip_coef": 0.2,
    },
    "checkpoint": {"every_updates": 10},
    "mlflow": {"experiment": "reliability-bench"},
}

_UPDATE = re.compile(r"Update\s+\d+ \| step\s+([\d,]+) \|")
_EPISODE = re.compile(r"^Step\s+(\d+) \| Episode\s+\d+ \| Reward:\s+(-?[\d.]+) \|")
PHASES = ("before", "server down", "server restarting", "after")

#: (monotonic time, value): steps trained, or CPU seconds spent, as time goes by.
Series = list[tuple[float, float]]


@dataclasses.dataclass
class Phase:
    name: str
    seconds: float
    steps_per_second: float
    cpu_per_1000_steps: float  # CPU seconds of the trainer's processes per 1,000 steps


@dataclasses.dataclass
class OutageFigures:
    machine: str
    date: str
    total_steps: int
    num_envs: int
    kill_after_s: float
    phases: list[Phase]
    training_seconds: float
    update_steps_logged: int
    update_steps_lost: int
    episodes_logged: int
    episodes_lost: int
    run_status: str
    exit_code: int
    tracking_lines: list[str] = dataclasses.field(default_factory=list)

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    def down_vs_before(self) -> tuple[float, float]:
        """(steps/s, CPU per step) while the server is down, as a fraction of before."""
        down, before = self.phase("server down"), self.phase("before")
        return (
            down.steps_per_second / before.steps_per_second,
            down.cpu_per_1000_steps / before.cpu_per_1000_steps,
        )

    def stall_seconds(self) -> float:
        """Training time the outage cost: for each phase after the kill until the server is up,
        the seconds beyond what its steps took at the rate before it (none when it was faster:
        a faster phase does not pay for a slower one)."""
        rate = self.phase("before").steps_per_second
        return sum(
            max(0.0, p.seconds * (1 - p.steps_per_second / rate))
            for p in self.phases
            if p.name in ("server down", "server restarting") and p.seconds
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> OutageFigures:
        data = json.loads(text)
        phases = [Phase(**p) for p in data.pop("phases")]
        return cls(**data, phases=phases)

    def text(self, width: int = 100) -> str:
        """The tables as `trainer bench --reliability` prints them, as plain text (the README)."""
        from rich.console import Console as RichConsole

        out = RichConsole(file=io.StringIO(), width=width, color_system=None)
        for table in outage_tables(self):
            out.print(table)
        return "\n".join(line.rstrip() for line in out.file.getvalue().splitlines()) + "\n"


def outage_tables(f: OutageFigures) -> list[Any]:
    from rich.table import Table

    phases = Table(
        title=f"MLflow server SIGKILLed {f.kill_after_s:.0f} s into training, restarted on the "
        f"same database — {f.machine}, {f.date}"
    )
    for column in ("Phase", "Seconds", "Steps/s", "CPU s / 1,000 steps"):
        phases.add_column(column, justify="left" if column == "Phase" else "right")
    for p in f.phases:
        phases.add_row(
            p.name, f"{p.seconds:.1f}", f"{p.steps_per_second:,.0f}", f"{p.cpu_per_1000_steps:.2f}"
        )
    sps, cpu = f.down_vs_before()
    outcome = Table(title="What the outage cost")
    outcome.add_column("Figure")
    outcome.add_column("Value", justify="right")
    rows = [
        (f"Run: {f.total_steps:,} steps × {f.num_envs} envs (quickstart)", f"{f.run_status}, exit {f.exit_code}"),
        ("Steps/s while the server is down / before", f"{sps:.0%}"),
        ("CPU per step while the server is down / before", f"{cpu:.0%}"),
        ("Training time", f"{f.training_seconds:.1f} s"),
        ("Training time lost to the outage (down + restarting)", f"{f.stall_seconds():.1f} s"),
        ("Update metric steps lost (of logged)", f"{f.update_steps_lost} of {f.update_steps_logged:,}"),
        ("Episodes lost (of logged)", f"{f.episodes_lost} of {f.episodes_logged:,}"),
        ("Console lines about tracking", str(len(f.tracking_lines))),
    ]  # fmt: skip
    for name, value in rows:
        outcome.add_row(name, value)
    for line in f.tracking_lines:
        outcome.add_row(f"  {line}", "")
    return [phases, outcome]


class _Watch:
    """A subprocess's output lines, each with the monotonic time it arrived, and its process
    tree's CPU seconds sampled every `interval_s`."""

    def __init__(self, proc: subprocess.Popen[str], interval_s: float = 0.5):
        self.lines: list[tuple[float, str]] = []
        self.cpu: Series = []
        self._proc = proc
        self._threads = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._sample, args=(interval_s,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read(self) -> None:
        for line in self._proc.stdout:  # type: ignore[union-attr]
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def _sample(self, interval_s: float) -> None:
        while self._proc.poll() is None:
            self.cpu.append((time.monotonic(), tree_cpu_seconds(self._proc.pid)))
            time.sleep(interval_s)

    def updates(self) -> Series:
        found = ((t, _UPDATE.search(line)) for t, line in list(self.lines))
        return [(t, float(m.group(1).replace(",", ""))) for t, m in found if m]

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=30)


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of `root` and its descendants, those that exited and were
    reaped included (Linux /proc)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        children.setdefault(int(fields[1]), []).append(int(entry))
        # utime, stime, and cutime, cstime: children that exited count where they were reaped.
        times[int(entry)] = sum(int(f) for f in fields[11:15]) / tick
    total, frontier = 0.0, [root]
    while frontier:
        pid = frontier.pop()
        total += times.get(pid, 0.0)
        frontier.extend(children.get(pid, []))
    return total


def value_at(series: Series, t: float) -> float:
    """`series` interpolated linearly at time `t` (clamped to its ends)."""
    times = [point[0] for point in series]
    i = bisect_right(times, t)
    if i == 0:
        return series[0][1]
    if i == len(series):
        return series[-1][1]
    (t0, v0), (t1, v1) = series[i - 1], series[i]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def measure_phase(name: str, steps: Series, cpu: Series, start: float, end: float) -> Phase:
    """Steps/s and CPU per 1,000 steps between `start` and `end` (clipped to training)."""
    start, end = max(start, steps[0][0]), min(end, steps[-1][0])
    if end <= start:
        return Phase(name, 0.0, float("nan"), float("nan"))
    trained = value_at(steps, end) - value_at(steps, start)
    spent = value_at(cpu, end) - value_at(cpu, start)
    return Phase(name, end - start, trained / (end - start), 1000 * spent / max(trained, 1.0))


def bench_mlflow_outage(
    spec_data: dict[str, Any] | None = None,
    kill_after_s: float = 12.0,
    outage_s: float = 25.0,
    progress: Callable[[str], None] | None = None,
) -> OutageFigures:
    """Train with an MLflow outage in the middle; see the module docstring."""
    say = progress or (lambda message: None)
    data = json.loads(json.dumps(spec_data or QUICKSTART_LONG))
    with tempfile.TemporaryDirectory(prefix="trainer-reliability-") as tmp:
        root = Path(tmp)
        server = MlflowServer(root / "mlflow")
        say("starting the MLflow server")
        server.start()
        try:
            data["mlflow"]["tracking_uri"] = server.uri
            data["mlflow"]["log_model"] = False  # the outage is the figure, not the model upload
            data.setdefault("checkpoint", {})["dir"] = str(root / "runs")
            spec_path = root / "spec.yaml"
            spec_path.write_text(yaml.safe_dump(data))
            env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAIN_", "TRAINER_"))}
            proc = subprocess.Popen(
                [sys.executable, "-m", "trainer", "run", str(spec_path), "--fresh"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**env, "PYTHONUNBUFFERED": "1"},
            )
            watch = _Watch(proc)
            say("training until the first update")
            while not watch.updates() and proc.poll() is None:
                time.sleep(0.05)
            first = watch.updates()[0][0] if watch.updates() else time.monotonic()
            time.sleep(max(0.0, first + kill_after_s - time.monotonic()))
            say(f"server killed; restarting it in {outage_s:.0f} s")
            marks = [time.monotonic()]
            server.kill()
            time.sleep(outage_s)
            marks.append(time.monotonic())
            server.start()
            marks.append(time.monotonic())
            say("server back; training to the end")
            code = proc.wait(timeout=1800)
            watch.join()
            return _figures(data, watch, server.uri, marks, kill_after_s, code)
        finally:
            server.stop()


def _figures(
    data: dict[str, Any],
    watch: _Watch,
    uri: str,
    marks: Sequence[float],
    kill_after_s: float,
    code: int,
) -> OutageFigures:
    from trainer.tracking.queries import run_metric_points

    steps = watch.updates()
    text = [line for _, line in watch.lines]
    episodes = [(int(m.group(1)), float(m.group(2))) for m in map(_EPISODE.search, text) if m]
    status, found = run_metric_points(
        uri, data["mlflow"]["experiment"], ("perf/sps", "charts/episodic_return")
    )
    bounds = [steps[0][0], *marks, steps[-1][0]]
    return OutageFigures(
        machine=machine_description(),
        date=time.strftime("%Y-%m-%d"),
        total_steps=int(data["ppo"]["total_steps"]),
        num_envs=int(data["env"]["num_envs"]),
        kill_after_s=kill_after_s,
        phases=[
            measure_phase(name, steps, watch.cpu, start, end)
            for name, start, end in zip(PHASES, bounds[:-1], bounds[1:], strict=True)
        ],
        training_seconds=bounds[-1] - bounds[0],
        update_steps_logged=len(steps),
        update_steps_lost=len({int(s) for _, s in steps} - {s for s, _ in found["perf/sps"]}),
        episodes_logged=len(episodes),
        episodes_lost=_episodes_missing(episodes, found["charts/episodic_return"]),
        run_status=status,
        exit_code=code,
        tracking_lines=[
            line for line in text if "mlflow" in line.lower() and "MLflow run:" not in line
        ],
    )


def _episodes_missing(logged: list[tuple[int, float]], stored: list[tuple[int, float]]) -> int:
    """Episodes on the console (step, return to 2 decimals) with no point in MLflow. MLflow keeps
    one row for identical points (two envs ending at one step with one return, in the same
    millisecond), so an episode counts as stored when its (step, return) pair is."""
    have = {(step, round(value, 2)) for step, value in stored}
    return sum(1 for pair in logged if pair not in have)
