"""Small helpers over `MlflowClient` that every MLflow caller here shares: MLflow's request
limits, batching within them, get-or-create an experiment, quoting in filter strings, and which
failures are worth retrying. MLflow itself is imported lazily (a run without MLflow never pays
for it)."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from trainer.errors import describe_failure
from trainer.spec.tracking_uri import local_store_path, tracking_uri_scheme

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

# MLflow's limits (mlflow/utils/validation.py).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_TAG_VALUE_LENGTH = 8000

#: Run tags our runs carry. `trainer.job_id` identifies a run (the idempotent lookup key: the
#: run id of the training settings, `trainer.spec.run_id`); `trainer.k8s_job` is the latest Job.
TAG_JOB_ID = "trainer.job_id"
TAG_K8S_JOB = "trainer.k8s_job"
TAG_SWEEP_ID = "sweep_id"
TAG_NUM_ENVS = "num_envs"

#: MLflow 3's experiment kind: its UI opens a "custom model development" experiment on its
#: training runs, not on the GenAI overview (traces, tokens) it shows for unmarked ones.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

T = TypeVar("T")

#: HTTP statuses worth retrying: the server is overloaded, restarting or behind a failing proxy.
TRANSIENT_HTTP_STATUS = frozenset({429, 500, 502, 503, 504})

#: MLflow's client retries each request 7 times with backoff, about 4 minutes
#: (mlflow/environment_variables.py), inside the call: an outage would hide in one request.
#: The tracking queue retries on its own, so its requests fail fast (unless the user set these).
FAIL_FAST_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


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


def is_transient(exc: BaseException) -> bool:
    """Can trying again later help? Connection failures, timeouts, 5xx and 429: yes. A refusal
    (another 4xx: bad value, unknown run, no permission) or a bug in our code: no."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else None
        return status is None or status in TRANSIENT_HTTP_STATUS
    if isinstance(
        exc, requests.ConnectionError | requests.Timeout | ConnectionError | TimeoutError
    ):
        return True
    if isinstance(exc, MlflowException):  # a failed connection arrives as INTERNAL_ERROR (500)
        return exc.get_http_status_code() in TRANSIENT_HTTP_STATUS
    return False


def retrying(call: Callable[[], T], attempts: int = 3, first_wait_s: float = 0.5) -> T:
    """`call()`, tried again after 0.5 s, 1 s, … while it fails transiently: for the few
    synchronous calls at start-up (find the run, read its last step), which a blip should not
    turn into a fresh start."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts - 1 or not is_transient(exc):
                raise
            time.sleep(first_wait_s * 2**attempt)
    raise AssertionError("unreachable")


def set_defaults(
    values: Mapping[str, str], environ: MutableMapping[str, str] = os.environ
) -> dict[str, str]:
    """Set the variables of `values` not already set; returns those it set (for `unset`)."""
    added = {name: value for name, value in values.items() if name not in environ}
    environ.update(added)
    return added


def unset(added: Mapping[str, str], environ: MutableMapping[str, str] = os.environ) -> None:
    """Undo `set_defaults` where nobody changed the value since."""
    for name, value in added.items():
        if environ.get(name) == value:
            del environ[name]


def check_server_reachable(uri: str, timeout_s: float = 10.0) -> None:
    """`TrainerError` (exit 1) naming `uri` when it is a tracking server (http/https) that does
    not answer: tried 3 times within ~2 s. MLflow's own client would retry each request for
    about 4 minutes (`FAIL_FAST_HTTP`) and then say the run was not found. Any HTTP answer
    counts as reachable (a proxy may have no `/health`); what the server then refuses is said
    by the call that is refused."""
    import requests

    from trainer.errors import TrainerError

    if not uri.lower().startswith(("http://", "https://")):
        return

    def probe() -> None:
        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=timeout_s)
        except requests.exceptions.SSLError:
            pass  # it answered; trusting it is MLflow's call (MLFLOW_TRACKING_INSECURE_TLS, …)

    try:
        retrying(probe)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TrainerError(
            f"MLflow at {uri} is unreachable ({describe_failure(exc)}): start the server, or "
            "point --tracking-uri or $MLFLOW_TRACKING_URI at one"
        ) from None


def open_store(uri: str, where: str) -> MlflowClient:
    """`MlflowClient(uri)`, which opens a database or folder store at once: an error naming
    `where` (the spec key, option or variable the URI came from) when it cannot, instead of
    MLflow's or SQLAlchemy's traceback. A local store (a SQLite file, a folder) that cannot be
    opened is invalid input (exit 2); a database server that refuses is a failure (exit 1)."""
    from mlflow import MlflowClient

    from trainer.errors import InvalidInput, TrainerError

    local = local_store_path(uri)
    sqlite = local is not None and tracking_uri_scheme(uri) == "sqlite"
    problem = sqlite_problem(local) if sqlite else None
    if problem is None:
        try:
            return MlflowClient(tracking_uri=uri)
        except Exception as exc:  # MlflowException, sqlalchemy's OperationalError, OSError, …
            problem = describe_failure(exc, limit=300)
            if "MLFLOW_ALLOW_FILE_STORE" in str(exc):  # MLflow 3 (3.18 here): folders opt in
                problem = (
                    "this MLflow refuses folder stores (its file store is in maintenance mode); "
                    "use a database such as sqlite:///mlflow.db, or set MLFLOW_ALLOW_FILE_STORE=true"
                )
    error = InvalidInput if local is not None else TrainerError
    raise error(f"{where}: MLflow cannot open the tracking store {uri} ({problem})")


def sqlite_problem(path: Path) -> str | None:
    """Why SQLite cannot open the database file `path`, found in one try: MLflow's store
    retries opening it 10 times with back-off, about 100 s (mlflow/store/db/utils.py), which
    a local file never needs. Done as MLflow would: its folders made, the file created."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create its folder {path.parent}: {exc.strerror}"
    try:
        with contextlib.closing(sqlite3.connect(path)) as database:
            database.execute("PRAGMA schema_version")
    except (OSError, sqlite3.Error) as exc:
        return f"SQLite cannot open {path}: {getattr(exc, 'strerror', None) or exc}"
    return None
