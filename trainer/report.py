"""`trainer compare`: a sweep's runs side by side — a table and plots, logged to MLflow.

Reads runs through `trainer.tracking` (the only module that talks to MLflow); this module only
shapes what it gets into a table (rich) and figures (matplotlib, headless).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trainer import metrics
from trainer.tracking.queries import RunRecord


def final_return(record: RunRecord, last: int = 10) -> float:
    """Mean episodic return over the run's last `last` episodes (NaN without episodes)."""
    values = [v for _, v in record.returns[-last:]]
    return float(np.mean(values)) if values else float("nan")


def comparison_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    """One row per run: env count, throughput, learner share and the learning result."""
    rows = []
    for r in records:
        rows.append(
            {
                "num_envs": r.num_envs,
                "run": r.name,
                "status": r.status,
                "steps": int(max((s for s, _ in r.returns), default=0)),
                "episodes": len(r.returns),
                "sps": r.metrics.get(metrics.STEPS_PER_SECOND, float("nan")),
                "fps": r.metrics.get(metrics.FRAMES_PER_SECOND, float("nan")),
                "learner_seconds": r.metrics.get(metrics.LEARNER_SECONDS, float("nan")),
                "return_last10": final_return(r),
            }
        )
    return rows


def comparison_table(rows: list[dict[str, Any]], sweep_id: str) -> Any:
    from rich.table import Table

    table = Table(title=f"Sweep {sweep_id}: runs side by side")
    for col in (
        "Envs",
        "Run",
        "Status",
        "Steps",
        "Episodes",
        "Steps/s",
        "Frames/s",
        "Return (last 10)",
    ):
        table.add_column(col, justify="left" if col in ("Run", "Status") else "right")
    for row in rows:
        table.add_row(
            str(row["num_envs"]),
            row["run"],
            row["status"],
            f"{row['steps']:,}",
            str(row["episodes"]),
            f"{row['sps']:,.0f}",
            f"{row['fps']:,.0f}",
            f"{row['return_last10']:.2f}",
        )
    return table


def plot_comparison(records: list[RunRecord], rows: list[dict[str, Any]], path: Path) -> Path:
    """Episodic return against environment steps (one line per env count) and steps/s bars."""
    import matplotlib

    matplotlib.use("Agg")  # headless: pods and CI have no display
    import matplotlib.pyplot as plt

    fig, (curves, bars) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    for record in records:
        if not record.returns:
            continue
        steps = np.array([s for s, _ in record.returns], dtype=float)
        values = np.array([v for _, v in record.returns], dtype=float)
        window = max(1, len(values) // 20)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        curves.plot(steps[window - 1 :], smooth, label=f"{record.num_envs} envs")
    curves.set_xlabel("environment steps")
    curves.set_ylabel("episodic return (moving mean)")
    curves.set_title("Learning curves")
    curves.legend()
    labels = [str(r["num_envs"]) for r in rows]
    bars.bar(labels, [r["sps"] for r in rows], color="tab:blue")
    bars.set_xlabel("environments")
    bars.set_ylabel("steps per second")
    bars.set_title("Throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
