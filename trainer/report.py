"""`trainer compare`: runs side by side — a table (terminal or Markdown) and plots.

Reads runs through `trainer.tracking.queries` (the only MLflow code); this module only shapes
them into a table (rich) and figures (matplotlib, headless): learning curves against
environment steps and against wall-clock time (which setting learns fastest per minute is what a
sweep over env counts is for), and steps/s against the total env count (replicas × num_envs), one
line per replica count, beside ideal linear scaling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trainer import metrics
from trainer.tracking.queries import RunRecord

#: Weight of the newest episode in the smoothed curve (an EMA over episodes in step order).
EMA_ALPHA = 0.1


def final_return(record: RunRecord, last: int = 10) -> float:
    """Mean episodic return over the run's last `last` episodes (NaN without episodes)."""
    values = [value for _, value, _ in record.returns[-last:]]
    return float(np.mean(values)) if values else float("nan")


def ema(values: np.ndarray, alpha: float = EMA_ALPHA) -> np.ndarray:
    """Exponential moving average, started at the first value (no warm-up bias toward 0)."""
    out = np.empty(len(values), dtype=float)
    running = float(values[0]) if len(values) else 0.0
    for i, value in enumerate(values):
        running = alpha * float(value) + (1 - alpha) * running
        out[i] = running
    return out


def per_step(record: RunRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, wall-clock minutes, mean return) with one point per step: episodes of several
    envs that end in the same vector step are averaged, so a curve has no vertical segments."""
    steps = np.array([s for s, _, _ in record.returns], dtype=float)
    values = np.array([v for _, v, _ in record.returns], dtype=float)
    minutes = np.array(record.wall_minutes(), dtype=float)
    unique, first, counts = np.unique(steps, return_index=True, return_counts=True)
    sums = np.add.reduceat(values, first)
    return unique, minutes[first], sums / counts


def comparison_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    """One row per run: env count, replicas, throughput, time, CPU and the learning result."""
    rows = []
    for r in records:
        minutes = r.wall_minutes()
        rows.append(
            {
                "num_envs": r.num_envs,
                "replicas": r.replicas,
                "total_envs": r.total_envs,
                "run": r.name,
                "run_id": r.run_id,
                "status": r.status,
                "steps": int(max((s for s, _, _ in r.returns), default=0)),
                "episodes": len(r.returns),
                "minutes": round(minutes[-1], 2) if minutes else float("nan"),
                "sps": r.metrics.get(metrics.STEPS_PER_SECOND, float("nan")),
                "fps": r.metrics.get(metrics.FRAMES_PER_SECOND, float("nan")),
                "cpu_cores": r.metrics.get(metrics.CPU_CORES, float("nan")),
                "return_last10": final_return(r),
            }
        )
    return rows


COLUMNS = (
    ("Envs", "num_envs", "{}"),
    ("Replicas", "replicas", "{}"),
    ("Total envs", "total_envs", "{}"),
    ("Run", "run", "{}"),
    ("Status", "status", "{}"),
    ("Steps", "steps", "{:,}"),
    ("Episodes", "episodes", "{}"),
    ("Minutes", "minutes", "{:.1f}"),
    ("Steps/s", "sps", "{:,.0f}"),
    ("Frames/s", "fps", "{:,.0f}"),
    ("CPU cores", "cpu_cores", "{:.2f}"),
    ("Return (last 10)", "return_last10", "{:.2f}"),
)


def _cells(row: dict[str, Any]) -> list[str]:
    return [fmt.format(row[key]) for _, key, fmt in COLUMNS]


def comparison_table(rows: list[dict[str, Any]], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for name, _, _ in COLUMNS:
        table.add_column(name, justify="left" if name in ("Run", "Status") else "right")
    for row in rows:
        table.add_row(*_cells(row))
    return table


def comparison_markdown(rows: list[dict[str, Any]], title: str) -> str:
    """The same table as GitHub-flavoured Markdown, for reports and pull requests."""
    names = [name for name, _, _ in COLUMNS]
    align = ["---" if name in ("Run", "Status") else "---:" for name in names]
    lines = [f"**{title}**", "", "| " + " | ".join(names) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot_comparison(records: list[RunRecord], rows: list[dict[str, Any]], path: Path) -> Path:
    """Return against env steps and against wall-clock minutes (EMA, raw faint behind), and
    steps/s against total env count with the ideal linear line through the smallest count."""
    import matplotlib

    matplotlib.use("Agg")  # headless: pods and CI have no display
    import matplotlib.pyplot as plt

    fig, (by_step, by_time, scaling) = plt.subplots(1, 3, figsize=(15, 4.2))
    longest = max((r.wall_minutes()[-1] for r in records if r.returns), default=0.0)
    scale, unit = (1.0, "minutes") if longest >= 2 else (60.0, "seconds")
    for record in records:
        if not record.returns:
            continue
        steps, minutes, values = per_step(record)
        group = f"{record.replicas}×" if record.replicas > 1 else ""
        label = f"{group}{record.num_envs} envs · {record.name}"
        for axis, x in ((by_step, steps), (by_time, minutes * scale)):
            (line,) = axis.plot(x, ema(values), label=label, linewidth=1.8)
            axis.plot(x, values, color=line.get_color(), alpha=0.15, linewidth=0.8)
    by_step.set(xlabel="environment steps", ylabel="episodic return", title="Learning curves")
    by_time.set(xlabel=f"wall-clock {unit}", ylabel="episodic return", title="Against time")
    by_step.legend(fontsize=8)
    _plot_scaling(scaling, rows)
    fig.suptitle(f"smoothed: EMA over episodes (α = {EMA_ALPHA}); raw returns faint behind")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_scaling(axis: Any, rows: list[dict[str, Any]]) -> None:
    """Steps/s against replicas × num_envs: a line per replica count (1×8 beside 2×4), and the
    ideal linear line through the smallest total."""
    measured = sorted(
        (r["total_envs"], r["replicas"], r["sps"]) for r in rows if r["sps"] == r["sps"]
    )
    axis.set(xlabel="environments (replicas × num_envs)", ylabel="steps per second")
    axis.set(title="Throughput")
    if not measured:
        return
    for replicas in sorted({g for _, g, _ in measured}):
        points = [(n, s) for n, g, s in measured if g == replicas]
        label = "measured" if replicas == 1 else f"measured, {replicas} replicas"
        axis.plot([n for n, _ in points], [s for _, s in points], "o-", label=label)
    counts = sorted({n for n, _, _ in measured})
    base_count, _, base_sps = measured[0]
    axis.plot(counts, [base_sps * n / base_count for n in counts], "--", label="ideal (linear)")
    axis.set_xticks(counts)
    axis.legend(fontsize=8)
