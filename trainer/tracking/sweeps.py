"""A sweep as an MLflow parent run: every Job's run is its child (`mlflow.parentRunId`), so the
UI nests a sweep's runs under one row, and the comparison (table, plots) is its artifact.

Nobody has to create the parent up front: the first run of a sweep to start creates it, on
either launcher backend and in a pod that starts its run itself. Runs of one sweep start at
the same moment (a Job's pods, a local sweep's processes). MLflow has no lock, but experiment
names are unique on the server (a unique constraint in its SQL stores), so creating an
experiment named after the sweep is a compare-and-set: exactly one starter succeeds and creates
the parent; the others wait until it is visible. The lock experiment is deleted at once
(hidden in the UI; a deleted experiment keeps its name reserved, so the lock stays taken).
Should the lock's holder die before its parent appears, the waiters fall back to convergence:
create, search again, adopt the oldest (ties by run id), delete their own if it lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer.tracking.client import TAG_SWEEP_ID, quote

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

#: On the parent run: the sweep id it stands for.
TAG_SWEEP_PARENT = "trainer.sweep_parent"
#: MLflow's own tag that nests a run under another in the UI.
TAG_PARENT_RUN = "mlflow.parentRunId"
#: What kind of run this is: "sweep" (a parent) or "train" (a Job's run).
TAG_KIND = "trainer.kind"


def find_sweep_run(client: MlflowClient, experiment_id: str, sweep_id: str) -> str | None:
    """The sweep's parent run in the experiment (the oldest, should there be several)."""
    from mlflow.entities import ViewType

    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_SWEEP_PARENT}` = '{quote(sweep_id)}'",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=50,
    )
    if not runs:
        return None
    oldest = min(runs, key=lambda run: (run.info.start_time or 0, run.info.run_id))
    return oldest.info.run_id


def sweep_lock_name(experiment_id: str, sweep_id: str) -> str:
    """The experiment whose creation elects the one starter that creates a sweep's parent."""
    return f"trainer-sweep-lock-{experiment_id}-{sweep_id}"


def sweep_run(
    client: MlflowClient,
    experiment_id: str,
    sweep_id: str,
    describe: Mapping[str, str] | None = None,
    wait_s: float = 60.0,
) -> str:
    """The sweep's parent run id, created on first use (see the module docstring for the race).

    `describe`: params for a new parent (the sweep's spec, its env counts). `wait_s`: how long a
    starter that lost the election waits for the winner's parent before creating one itself."""
    from mlflow.exceptions import MlflowException

    found = find_sweep_run(client, experiment_id, sweep_id)
    if found is not None:
        return found
    try:
        lock = client.create_experiment(sweep_lock_name(experiment_id, sweep_id))
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            # A server that refuses experiments to this user: no lock, converge instead.
            log.debug("sweep lock unavailable (%s); converging instead", error)
            return _create_and_converge(client, experiment_id, sweep_id, describe)
        return _await_parent(client, experiment_id, sweep_id, describe, wait_s)
    try:
        return _create_parent(client, experiment_id, sweep_id, describe)
    finally:
        client.delete_experiment(lock)


def _create_parent(
    client: MlflowClient,
    experiment_id: str,
    sweep_id: str,
    describe: Mapping[str, str] | None,
) -> str:
    created = client.create_run(
        experiment_id,
        run_name=sweep_id,
        tags={TAG_SWEEP_PARENT: sweep_id, TAG_SWEEP_ID: sweep_id, TAG_KIND: "sweep"},
    ).info.run_id
    for key, value in (describe or {}).items():
        client.log_param(created, key, value)
    # A sweep's parent holds no training of its own: it is "finished" as a container.
    client.set_terminated(created, "FINISHED")
    return created


def _await_parent(
    client: MlflowClient,
    experiment_id: str,
    sweep_id: str,
    describe: Mapping[str, str] | None,
    wait_s: float,
) -> str:
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while time.monotonic() < deadline:
        found = find_sweep_run(client, experiment_id, sweep_id)
        if found is not None:
            return found
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    log.warning(
        "the sweep %s's parent run did not appear within %.0f s (its creator may have died); "
        "creating one",
        sweep_id,
        wait_s,
    )
    return _create_and_converge(client, experiment_id, sweep_id, describe)


def _create_and_converge(
    client: MlflowClient,
    experiment_id: str,
    sweep_id: str,
    describe: Mapping[str, str] | None,
) -> str:
    created = _create_parent(client, experiment_id, sweep_id, describe)
    winner = find_sweep_run(client, experiment_id, sweep_id) or created
    if winner != created:
        client.delete_run(created)
    return winner


def extend_sweep_run(client: MlflowClient, parent_run_id: str) -> None:
    """Called as each child ends: the parent's end time follows its latest child, so its
    duration in the UI is the sweep's wall-clock time."""
    import time

    client.set_terminated(parent_run_id, "FINISHED", end_time=int(time.time() * 1000))


def log_to_sweep_run(
    client: MlflowClient,
    run_id: str,
    files: Sequence[Path],
    summary: Mapping[str, float],
    artifact_path: str = "comparison",
) -> None:
    """The comparison's files and summary figures, on the parent run (replacing earlier ones)."""
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path)
    for key, value in summary.items():
        client.log_metric(run_id, key, float(value))


def run_page(tracking_uri: str | None, experiment_id: str, run_id: str) -> str | None:
    """The run's page in the MLflow UI, opened in model-training mode (MLflow 3 opens the GenAI
    view otherwise, whatever the experiment's kind tag says); None for a local store."""
    if not tracking_uri or not tracking_uri.startswith(("http://", "https://")):
        return None
    base = tracking_uri.rstrip("/")
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def child_tags(parent_run_id: str | None) -> dict[str, Any]:
    """Tags that make a Job's run a child of its sweep's run."""
    tags: dict[str, Any] = {TAG_KIND: "train"}
    if parent_run_id:
        tags[TAG_PARENT_RUN] = parent_run_id
    return tags
