"""The figures of one `trainer bench` run, and how they are shown: rich tables on the terminal,
the same text in the README (scripts/update_readme.py), JSON, and flat MLflow metrics."""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainer.bench.peer import PeerFigures


@dataclass
class EnvCountFigures:
    num_envs: int
    raw_fps: float
    pool_sps: float
    pool_fps: float
    pool_vs_raw: float
    rollout_sps: float
    rollout_vs_pool: float
    train_sps: float = float("nan")
    train_eps: float = float("nan")
    train_learner_share: float = float("nan")


@dataclass
class BenchReport:
    machine: str
    date: str
    cpus: int
    device: str
    frame_skip: int
    rows: list[EnvCountFigures] = field(default_factory=list)
    learner_samples_per_second: float = float("nan")
    learner_by_device: dict[str, float] = field(default_factory=dict)
    end_to_end: dict[str, float] = field(default_factory=dict)
    memory_per_env_mb: float = float("nan")
    startup_seconds: float = float("nan")
    trainer_startup_seconds: float = float("nan")
    peer: list[PeerFigures] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> BenchReport:
        data = json.loads(text)
        rows = [EnvCountFigures(**row) for row in data.pop("rows", [])]
        peer = [PeerFigures(**figures) for figures in data.pop("peer", [])]
        return cls(**data, rows=rows, peer=peer)

    def text(self, width: int = 110) -> str:
        """The tables as `trainer bench` prints them, as plain text (the README shows this)."""
        from rich.console import Console as RichConsole

        out = RichConsole(file=io.StringIO(), width=width, color_system=None)
        for table in render_tables(self):
            out.print(table)
        return "\n".join(line.rstrip() for line in out.file.getvalue().splitlines()) + "\n"

    def flat_figures(self) -> dict[str, float]:
        """Every number as `name` or `name_e<envs>` (MLflow metric keys)."""
        figures = {
            "learner_samples_per_second": self.learner_samples_per_second,
            "memory_per_env_mb": self.memory_per_env_mb,
            "startup_seconds": self.startup_seconds,
            "trainer_startup_seconds": self.trainer_startup_seconds,
            **{f"end_to_end_{k}": v for k, v in self.end_to_end.items()},
            **{
                f"learner_samples_per_second_{d.replace(':', '')}": v
                for d, v in self.learner_by_device.items()
            },
        }
        for row in self.rows:
            for key, value in asdict(row).items():
                if key != "num_envs":
                    figures[f"{key}_e{row.num_envs}"] = value
        for game in self.peer:
            name = game.game.removeprefix("builtin:")
            for key, value in asdict(game).items():
                if isinstance(value, float):
                    figures[f"peer_{name}_{key}"] = value
            figures[f"peer_{name}_speed_ratio"] = game.speed_ratio
            figures[f"peer_{name}_fps_vs_raw"] = game.fps_vs_raw
        return {k: float(v) for k, v in figures.items() if v == v}  # NaN: not measured


def machine_description() -> str:
    """The CPU model, architecture and CPU count: every absolute figure is named with it, since
    machines of the same size differ 2–3× in raw speed."""
    import platform

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    model = model or platform.processor() or "unknown CPU"
    return f"{model} ({platform.machine()}), {os.cpu_count()} CPUs"


def use_case(num_envs: int, cpus: int) -> str:
    if num_envs == 1:
        return "Single environment baseline"
    if num_envs <= cpus:
        return "Parallel training (one env per core)"
    return "More envs than cores (oversubscribed)"


def same_device(a: str, b: str) -> bool:
    """Whether two torch device names are one device: `cuda` is `cuda:0`, `cpu` is `cpu:0`."""

    def parts(name: str) -> tuple[str, str]:
        kind, _, index = name.partition(":")
        return kind, index or "0"

    return parts(a) == parts(b)


def render_tables(report: BenchReport) -> list[Any]:
    """Rich tables: the seed-style scaling table with ratios, then the single figures."""
    from rich.table import Table

    skip = report.frame_skip
    scaling = Table(
        title=f"Scaling (real PPO; a step = {skip} frames) — {report.machine}, {report.date}"
    )
    for col in ("Environments", "Steps/Second", "Episodes/Second", "Use Case"):
        scaling.add_column(col, justify="right" if col != "Use Case" else "left")
    for r in report.rows:
        scaling.add_row(
            str(r.num_envs),
            f"{r.train_sps:,.0f}",
            f"{r.train_eps:.2f}",
            use_case(r.num_envs, report.cpus),
        )

    ratios = Table(title=f"Each stage against its baseline (frame skip {skip})")
    for col in (
        "Envs",
        "Raw emulator fps",
        "Pool steps/s",
        "Pool fps",
        "Pool / raw",
        "Rollout steps/s",
        "Rollout / pool",
        "Learner share",
    ):
        ratios.add_column(col, justify="right")
    for r in report.rows:
        ratios.add_row(
            str(r.num_envs),
            f"{r.raw_fps:,.0f}",
            f"{r.pool_sps:,.0f}",
            f"{r.pool_fps:,.0f}",
            f"{r.pool_vs_raw:.0%}",
            f"{r.rollout_sps:,.0f}",
            f"{r.rollout_vs_pool:.0%}",
            f"{r.train_learner_share:.0%}",
        )

    e2e = report.end_to_end
    single = Table(title="End to end and resources")
    single.add_column("Figure")
    single.add_column("Value", justify="right")
    single.add_row(
        f"End to end: {int(e2e.get('total_steps', 0)):,} steps × {int(e2e.get('num_envs', 0))} envs, real PPO",
        f"{e2e.get('training_seconds', float('nan')):.1f} s",
    )
    single.add_row(
        f"  steps/s (frame skip {skip})", f"{e2e.get('steps_per_second', float('nan')):,.1f}"
    )
    single.add_row("  frames/s", f"{e2e.get('frames_per_second', float('nan')):,.0f}")
    single.add_row("  learner share of time", f"{e2e.get('learner_share', float('nan')):.0%}")
    single.add_row(
        "  vs the seed's 1,360 steps/s (its optimizer never ran)",
        f"{e2e.get('steps_per_second', float('nan')) / 1360:.2f}×",
    )
    single.add_row(
        f"Learner alone (forward + backward), device {report.device}",
        f"{report.learner_samples_per_second:,.0f} samples/s",
    )
    for device, rate in report.learner_by_device.items():
        if not same_device(device, report.device):  # the row above is that one
            single.add_row(f"  on {device}", f"{rate:,.0f} samples/s")
    single.add_row("Memory per environment (worker PSS)", f"{report.memory_per_env_mb:.1f} MB")
    emulators = f"{report.startup_seconds:.2f} s"
    if report.trainer_startup_seconds == report.trainer_startup_seconds:  # NaN: not measured
        single.add_row(
            "Start-up, `trainer run` to its first rollout (2 envs, no MLflow)",
            f"{report.trainer_startup_seconds:.2f} s",
        )
        single.add_row("  of which the emulators (spec to the pool's first step)", emulators)
    else:
        single.add_row("Start-up, emulators: spec to the pool's first step (2 envs)", emulators)
    return [scaling, ratios, single, *([peer_table(report)] if report.peer else [])]


def peer_table(report: BenchReport) -> Any:
    """Ours against SB3's PPO on each game, and against the raw emulator (the physical limit)."""
    from rich.table import Table

    seeds = ", ".join(str(s) for s in report.peer[0].seeds)
    table = Table(
        title=f"Steps/s against Stable-Baselines3 PPO: same env, settings, threads; seeds {seeds}; "
        "return of the last 20 episodes; time until the seeds' mean curve reaches the level; "
        "frames/s against the raw emulator's, as many processes"
    )
    for col in (
        "Game",
        "Ours/s",
        "SB3/s",
        "Ratio",
        "Return ours",
        "Return SB3",
        "Level",
        "Time ours",
        "Time SB3",
        "Raw fps",
        "Ours / raw",
    ):
        table.add_column(
            col,
            justify="left" if col == "Game" else "right",
            min_width=len(col) // 2 + 1 if col != "Game" else 7,
        )

    def seconds(value: float) -> str:
        return f"{value:.1f} s" if value == value else "never"

    for g in report.peer:
        table.add_row(
            g.game.removeprefix("builtin:"),
            f"{g.ours_sps:,.0f}",
            f"{g.peer_sps:,.0f}",
            f"{g.speed_ratio:.2f}×",
            f"{g.ours_return:.2f}",
            f"{g.peer_return:.2f}",
            f"{g.threshold:.2f}",
            seconds(g.ours_seconds_to_threshold),
            seconds(g.peer_seconds_to_threshold),
            f"{g.raw_fps:,.0f}",
            f"{g.fps_vs_raw:.0%}",
        )
    return table
