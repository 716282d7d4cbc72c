"""Small helpers over `MlflowClient` that every MLflow caller here shares: MLflow's request
limits, batching within them, get-or-create an experiment, and quoting in filter strings.
MLflow itself is imported by the callers (lazily: a run without MLflow never pays for it)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

# MLflow's limits (mlflow/utils/validation.py).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_TAG_VALUE_LENGTH = 8000

#: Run tags our runs carry. `trainer.job_id` identifies a job's run (the idempotent lookup key).
TAG_JOB_ID = "trainer.job_id"
TAG_SWEEP_ID = "sweep_id"
TAG_NUM_ENVS = "num_envs"

#: MLflow 3's experiment kind: its UI opens a "custom model development" experiment on its
#: training runs, not on the GenAI overview (traces, tokens) it shows for unmarked ones.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

T = TypeVar("T")


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def log_batch(
    client: MlflowClient,
    run_id: str,
    *,
    metrics: Sequence[Any] = (),
    params: Sequence[Any] = (),
    tags: Sequence[Any] = (),
) -> None:
    """`client.log_batch`, split into requests within MLflow's per-request limits."""
    for chunk in chunked(list(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=chunk, synchronous=True)
    for chunk in chunked(list(params), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=chunk, synchronous=True)
    for chunk in chunked(list(tags), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, tags=chunk, synchronous=True)


def experiment_id(client: MlflowClient, name: str) -> str:
    """Get or create the experiment `name`, marked as a model-training experiment; a concurrent
    creator (another pod) is not an error, and a deleted experiment is restored rather than
    failing every run."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND})
        except MlflowException as exc:
            exists = "RESOURCE_ALREADY_EXISTS" in str(exc.error_code) or "already exists" in str(
                exc
            )
            experiment = client.get_experiment_by_name(name) if exists else None
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        log.warning("MLflow experiment %r was deleted; restoring it", name)
        client.restore_experiment(experiment.experiment_id)
    if TAG_EXPERIMENT_KIND not in experiment.tags:  # e.g. created by `mlflow experiments create`
        client.set_experiment_tag(experiment.experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND)
    return experiment.experiment_id


def quote(value: str) -> str:
    """`value` for a single-quoted string in an MLflow filter expression."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
