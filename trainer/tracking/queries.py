"""Reading runs back and writing summary runs: runs for `trainer compare` (a sweep's, an
experiment's, or given ids), the comparison on the sweep's parent run, `trainer bench` figures
as a run of their own, and a run's checkpoint for `trainer play`. Imports neither torch nor
PyBoy."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer import metrics
from trainer.errors import InvalidInput
from trainer.spec.tracking_uri import missing_store_problem
from trainer.tracking.client import (
    TAG_NUM_ENVS,
    TAG_SWEEP_ID,
    check_server_reachable,
    experiment_id,
    log_batch,
    open_store,
    quote,
)
from trainer.tracking.sweeps import (
    TAG_KIND,
    TAG_PARENT_RUN,
    log_to_sweep_run,
    run_page,
    sweep_run,
)

#: The run's replica count among its params (the flattened spec).
PARAM_REPLICAS = "distributed.replicas"


@dataclass
class RunRecord:
    """One run, as `trainer compare` needs it."""

    run_id: str
    name: str
    num_envs: int
    status: str
    start_ms: int
    metrics: dict[str, float]
    # (step, episodic return, timestamp in ms), in step order
    returns: list[tuple[int, float, int]] = field(default_factory=list)
    parent_run_id: str | None = None
    #: Replicas of a data-parallel run (its `distributed.replicas` param; 1 before it existed).
    replicas: int = 1

    @property
    def total_envs(self) -> int:
        """Environments of the whole run: every replica's."""
        return self.num_envs * self.replicas

    def wall_minutes(self) -> list[float]:
        """Minutes since the run started, at each episode end."""
        return [(stamp - self.start_ms) / 60000 for _, _, stamp in self.returns]


def reading_client(tracking_uri: str | None) -> Any:
    """An MlflowClient for a command that only reads: `InvalidInput` when the URI (given, or
    MLflow's default: `mlflow.db` or `mlruns` in the working directory) is a local store that
    does not exist, instead of creating an empty one there and finding nothing in it;
    `TrainerError` at once when it is a server that does not answer."""
    import mlflow

    uri = tracking_uri or mlflow.get_tracking_uri()
    problem = missing_store_problem(uri)
    if problem:
        raise InvalidInput(problem)
    check_server_reachable(uri)
    return open_store(uri, "--tracking-uri" if tracking_uri else "MLflow's default store")


def find_runs(
    tracking_uri: str | None,
    *,
    sweep: str | None = None,
    experiment: str | None = None,
    run_ids: Sequence[str] = (),
) -> list[RunRecord]:
    """Training runs to compare: the children of a sweep (runs tagged with its id, in
    `experiment` or in every experiment), every training run of `experiment`, or `run_ids`.
    Sorted by total env count (replicas × num_envs), then replicas, then name. The sweep's own parent run is never among them."""
    from mlflow.exceptions import MlflowException

    client = reading_client(tracking_uri)
    if run_ids:
        try:
            runs = [client.get_run(run_id) for run_id in run_ids]
        except MlflowException as exc:
            raise InvalidInput(f"RUN_ID: {exc.message} at {client.tracking_uri}") from None
    else:
        experiment_ids = _experiment_ids(client, experiment)
        where = []
        if sweep:
            where.append(f"tags.{TAG_SWEEP_ID} = '{quote(sweep)}'")
        runs = client.search_runs(
            experiment_ids, filter_string=" and ".join(where), max_results=1000
        )
    records = [_record(client, run) for run in runs if run.data.tags.get(TAG_KIND) != "sweep"]
    return sorted(records, key=lambda r: (r.total_envs, r.replicas, r.name))


def _experiment_ids(client: Any, experiment: str | None) -> list[str]:
    if not experiment:
        return [e.experiment_id for e in client.search_experiments()]
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise InvalidInput(
            f"--experiment: no experiment named {experiment!r} at {client.tracking_uri}"
        )
    return [found.experiment_id]


def _record(client: Any, run: Any) -> RunRecord:
    history = client.get_metric_history(run.info.run_id, metrics.EPISODIC_RETURN)
    return RunRecord(
        run_id=run.info.run_id,
        name=run.info.run_name or run.info.run_id,
        num_envs=int(run.data.tags.get(TAG_NUM_ENVS, "0") or 0),
        status=run.info.status,
        start_ms=int(run.info.start_time or 0),
        metrics=dict(run.data.metrics),
        returns=sorted((m.step, m.value, m.timestamp) for m in history),
        parent_run_id=run.data.tags.get(TAG_PARENT_RUN),
        replicas=int(run.data.params.get(PARAM_REPLICAS, "1") or 1),
    )


def log_comparison(
    tracking_uri: str | None,
    records: Sequence[RunRecord],
    sweep: str,
    files: Sequence[Path],
    summary: Mapping[str, float],
) -> tuple[str, str | None]:
    """Log the comparison (table, plots) to the sweep's parent run, in the experiment of its
    runs (created there if the runs predate parent runs); returns its id and UI page."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_run(records[0].run_id).info.experiment_id
    parent = next((r.parent_run_id for r in records if r.parent_run_id), None)
    if parent is None:
        parent = sweep_run(client, experiment, sweep)
    log_to_sweep_run(client, parent, files, summary)
    return parent, run_page(client.tracking_uri, experiment, parent)


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


def download_latest_checkpoint(tracking_uri: str | None, run_id: str, dest_dir: Path) -> Path:
    """The run's `checkpoints/latest.pt`, downloaded into `dest_dir`; `InvalidInput` naming the
    run when it has none (or does not exist)."""
    from mlflow.exceptions import MlflowException

    client = reading_client(tracking_uri)
    try:
        names = {a.path for a in client.list_artifacts(run_id, "checkpoints")}
    except MlflowException as exc:
        raise InvalidInput(
            f"RUN_ID: no MLflow run {run_id!r} at {client.tracking_uri} ({exc})"
        ) from None
    if "checkpoints/latest.pt" not in names:
        raise InvalidInput(
            f"RUN_ID: run {run_id} has no checkpoints/latest.pt (it logged: "
            f"{', '.join(sorted(names)) or 'no checkpoints'})"
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, "checkpoints/latest.pt", str(dest_dir)))
