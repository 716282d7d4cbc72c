"""Reading runs back and writing summary runs: a sweep's runs for `trainer compare`, the
comparison and `trainer bench` figures as runs of their own. Imports neither torch nor PyBoy."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from trainer import metrics
from trainer.errors import InvalidInput
from trainer.tracking.client import (
    TAG_NUM_ENVS,
    TAG_SWEEP_ID,
    experiment_id,
    log_batch,
    quote,
)


@dataclass
class RunRecord:
    """One run of a sweep, as `trainer compare` needs it."""

    run_id: str
    name: str
    num_envs: int
    status: str
    metrics: dict[str, float]
    returns: list[tuple[int, float]]  # (step, episodic return)


def find_sweep_runs(
    tracking_uri: str | None, sweep_id: str, experiment: str | None = None
) -> list[RunRecord]:
    """The runs tagged `sweep_id` (in `experiment`, else in every experiment), by env count."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise InvalidInput(
                f"--experiment: no experiment named {experiment!r} at {client.tracking_uri}"
            )
        experiment_ids = [found.experiment_id]
    else:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiment_ids, filter_string=f"tags.{TAG_SWEEP_ID} = '{quote(sweep_id)}'", max_results=1000
    )
    records = []
    for run in runs:
        history = client.get_metric_history(run.info.run_id, metrics.EPISODIC_RETURN)
        records.append(
            RunRecord(
                run_id=run.info.run_id,
                name=run.info.run_name or run.info.run_id,
                num_envs=int(run.data.tags.get(TAG_NUM_ENVS, "0") or 0),
                status=run.info.status,
                metrics=dict(run.data.metrics),
                returns=sorted((m.step, m.value) for m in history),
            )
        )
    return sorted(records, key=lambda r: (r.num_envs, r.name))


def log_comparison(
    tracking_uri: str | None,
    beside_run_id: str,
    sweep_id: str,
    files: Sequence[Path],
    summary: Mapping[str, float],
) -> str:
    """Log the comparison (table, plots) to a `compare-<sweep id>` run in the experiment of run
    `beside_run_id`, tagged with the sweep id so it sits beside the runs it compares."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_run(beside_run_id).info.experiment_id
    existing = client.search_runs(
        [experiment],
        filter_string=f"tags.`trainer.compare_of` = '{quote(sweep_id)}'",
        max_results=1,
    )
    if existing:
        run_id = existing[0].info.run_id
    else:
        run_id = client.create_run(
            experiment,
            run_name=f"compare-{sweep_id}",
            tags={TAG_SWEEP_ID: sweep_id, "trainer.compare_of": sweep_id},
        ).info.run_id
    for path in files:
        client.log_artifact(run_id, str(path), "comparison")
    for key, value in summary.items():
        client.log_metric(run_id, key, float(value))
    client.set_terminated(run_id, "FINISHED")
    return run_id


def log_benchmark(
    tracking_uri: str | None, experiment: str, figures: Mapping[str, float], report_file: Path
) -> str:
    """Log `trainer bench` figures as metrics of a new `bench-<date>` run (with the JSON report
    as an artifact) in `experiment`; returns the run id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    run = client.create_run(
        experiment_id(client, experiment),
        run_name=f"bench-{time.strftime('%Y-%m-%d')}",
        tags={"trainer.kind": "bench", "host": socket.gethostname()},
    )
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    points = [Metric(key, float(value), stamp, 0) for key, value in figures.items()]
    log_batch(client, run.info.run_id, metrics=points)
    client.log_artifact(run.info.run_id, str(report_file))
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def run_metric_points(
    tracking_uri: str, experiment: str, keys: Sequence[str]
) -> tuple[str, dict[str, list[tuple[int, float]]]]:
    """The one run of `experiment`: its status and every (step, value) of each metric in `keys`
    (what a reliability check counts: a point logged but missing here was lost)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id]) if found is not None else []
    if len(runs) != 1:
        raise InvalidInput(f"expected one run in experiment {experiment!r}, found {len(runs)}")
    run_id = runs[0].info.run_id
    points = {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)] for key in keys
    }
    return runs[0].info.status, points
