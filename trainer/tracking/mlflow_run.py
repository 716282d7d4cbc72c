"""`MlflowTracker`: one MLflow run per job, found again (and resumed) by its identity tag. After
start-up, everything it sends goes through one background queue (`queue.SendQueue`): the
training thread never waits on the network.

Idempotence, because a Job's pod can start twice and a new Job (a larger step budget, another
image) continues a run: the run's identity (`spec.run_identity`, a hash of the training settings
only) is the same in every such pod and locally, and `start()` finds the run tagged
`trainer.job_id == identity` and resumes it; `trainer.k8s_job` names the latest Job. Checkpoints go to the run's artifacts too, for pods
without a PVC.

Start-up (`start()`, before any emulator starts): find or create the run, with a few quick
tries. A server that answers but refuses (credentials, a wrong URI) fails the job (exit 1). An
unreachable one fails it too with `mlflow.required: true`; with `required: false` (the default)
one line says so and training starts: the queue finds or creates the run when the server
answers, and what was logged meanwhile follows it. If that run already holds steps beyond the
ones logged meanwhile (a job that had to start over without its checkpoint), the points at or
below its last step are not sent: the same rule as a resume. The start-up reads `last_step` and
`fetch_latest_checkpoint` are synchronous: a resume needs them before training.

Then: metrics, params, tags, texts (spec, console log), checkpoint and model uploads are queued.
A checkpoint is staged as hard links beside it (pruning cannot take what waits to be sent), and
only the newest waits. `close()` sends what is queued for up to `mlflow.drain_timeout_s` and
says what could not be sent. Credentials never appear in what is logged (`redact.Redactor`).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer.errors import TrainerError
from trainer.spec import ENV_JOB_NAME, ENV_SWEEP_ID, JobSpec, spec_hash, training_hash
from trainer.spec.tracking_uri import environment_tracking_uri, tracking_uri_source
from trainer.tracking.checkpoints import LATEST, CheckpointStore
from trainer.tracking.client import (
    FAIL_FAST_HTTP,
    MAX_TAG_VALUE_LENGTH,
    TAG_JOB_ID,
    TAG_K8S_JOB,
    TAG_NUM_ENVS,
    TAG_SWEEP_ID,
    describe_failure,
    experiment_id,
    is_transient,
    log_batch,
    open_store,
    quote,
    retrying,
    set_defaults,
    unset,
)
from trainer.tracking.model import log_pytorch_model
from trainer.tracking.queue import Point, SendQueue, Task
from trainer.tracking.redact import Redactor
from trainer.tracking.staging import Staging
from trainer.tracking.sweeps import child_tags, extend_sweep_run, run_page, sweep_run
from trainer.tracking.system import start_system_metrics
from trainer.tracking.tracker import (
    LoggedSteps,
    RunStatus,
    Tracker,
    flatten_params,
    pack_points,
)

if TYPE_CHECKING:  # mlflow and torch are imported lazily
    import torch
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


def resolve_tracking_uri(spec: JobSpec, environ: Mapping[str, str] = os.environ) -> str:
    """`mlflow.tracking_uri`, else `$MLFLOW_TRACKING_URI`, else MLflow's local default.

    MLflow 3's default is `sqlite:///mlflow.db` in the working directory (or `./mlruns` when
    that holds an old file store), the same place `mlflow ui` reads by default.
    """
    if spec.mlflow.tracking_uri:
        return spec.mlflow.tracking_uri
    from_environment = environment_tracking_uri(environ)
    if from_environment:
        return from_environment
    import mlflow

    return mlflow.get_tracking_uri()


class MlflowTracker(Tracker):
    """One MLflow run per job identity, found again (and resumed) by the `trainer.job_id` tag.

    `notify(line)` prints the tracking's own lines (outage, end-of-run report): the console.
    """

    def __init__(
        self,
        spec: JobSpec,
        identity: str,
        tags: Mapping[str, str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        flush_interval_s: float = 5.0,
        notify: Callable[[str], None] | None = None,
    ):
        self.spec = spec
        self.identity = identity
        self.extra_tags = dict(tags or {})
        self.environ = dict(os.environ if environ is None else environ)
        self.flush_interval_s = flush_interval_s
        self.redact = Redactor({**os.environ, **self.environ})
        self._print = notify or log.warning
        self.run_id: str | None = None
        self.resumed = False
        self.experiment_id: str | None = None
        self.tracking_uri: str | None = None
        self._client: MlflowClient | None = None
        self._queue: SendQueue | None = None
        self._last_stamp = 0  # ms; see log_metrics
        self._params: dict[str, str] = {}
        self._held = LoggedSteps()  # what the run already held when it was found late
        self._env_added: dict[str, str] = {}
        self._staging = Staging()
        self._system: Any = None  # MLflow's SystemMetricsMonitor, while the run is open
        self._parent: str | None = None  # the sweep's run, when this run is part of a sweep
        self._closed = False

    def notify(self, line: str) -> None:
        self._print(self.redact(line))

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            raise RuntimeError("MlflowTracker: call start() first")
        return self._client

    @property
    def queue(self) -> SendQueue:
        if self._queue is None:
            raise RuntimeError("MlflowTracker: call start() first")
        return self._queue

    @property
    def target(self) -> str:
        return self.redact(str(self.tracking_uri))

    # -- start -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._queue is not None:
            return
        self.tracking_uri = resolve_tracking_uri(self.spec, self.environ)
        quiet = {}
        if self.target != self.tracking_uri:  # MLflow prints "View run at <URI>" on stdout
            quiet = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
        self._env_added = set_defaults({**FAIL_FAST_HTTP, **quiet})
        self._client = open_store(
            self.tracking_uri, tracking_uri_source(self.spec.mlflow.tracking_uri, self.environ)
        )
        self._queue = SendQueue(
            self._send_points,
            is_transient=is_transient,
            notify=self.notify,
            target=self.target,
            describe=describe_failure,
            max_points=self.spec.mlflow.max_buffered_points,
            interval_s=self.flush_interval_s,
        )
        try:
            retrying(self._open_run)
        except Exception as exc:
            self._start_failed(exc)
        self.log_params(self.spec.model_dump(mode="json"))
        self.log_text(self.spec.to_yaml(), "spec.yaml")

    def _start_failed(self, exc: Exception) -> None:
        mlflow = self.spec.mlflow
        where = tracking_uri_source(self.spec.mlflow.tracking_uri, self.environ)
        what = self.redact(describe_failure(exc, limit=300))
        if not is_transient(exc) or mlflow.required:
            self._shutdown()
            if not is_transient(exc):
                raise TrainerError(
                    f"MLflow at {self.target} refused to start the run: {what}\n"
                    f"check {where} and the credentials (MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN)"
                ) from None
            raise TrainerError(
                f"MLflow at {self.target} is unreachable ({what}) and mlflow.required is true: "
                f"start the server or fix {where}, or set mlflow.required: false to train "
                "meanwhile"
            ) from None
        self.notify(
            f"⚠️  MLflow unreachable at {self.target} at start ({what}): training without it for "
            "now; the run is found or created when the server answers, and what is logged "
            f"meanwhile follows (up to mlflow.max_buffered_points={mlflow.max_buffered_points:,} "
            "metric points; set mlflow.required: true to fail instead)"
        )
        self.queue.begin_outage()
        self.queue.put(Task("the MLflow run", self._open_run_late))

    def _open_run(self) -> None:
        from mlflow.entities import ViewType

        self.experiment_id = experiment_id(self.client, self.spec.mlflow.experiment)
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TAG_JOB_ID}` = '{quote(self.identity)}'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=2,
            order_by=["attributes.start_time DESC"],
        )
        self._parent = self._sweep_parent()
        tags = {**self._tags(), **child_tags(self._parent)}
        if found:
            if len(found) > 1:
                log.warning(
                    "several MLflow runs carry %s=%s; resuming the newest",
                    TAG_JOB_ID,
                    self.identity,
                )
            run = found[0]
            self.run_id = run.info.run_id
            self.resumed = True
            self._params = dict(run.data.params)
            starts = int(run.data.tags.get("trainer.starts", "1") or 1) + 1
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            run = self.client.create_run(
                self.experiment_id,
                tags={TAG_JOB_ID: self.identity},
                run_name=self.spec.mlflow.run_name or self.identity,
            )
            self.run_id = run.info.run_id
            starts = 1
        tags["trainer.starts"] = str(starts)
        self._log_tags(tags)
        if self._system is None:  # MLflow's own thread, its own requests (`tracking.system`)
            self._system = start_system_metrics(
                self.client_run_id, self.spec.mlflow.system_metrics_interval_s, self.resumed,
                self.tracking_uri,
            )  # fmt: skip
        self.run_url = run_page(self.tracking_uri, self.client_experiment_id, self.run_id)
        log.info(
            "MLflow run %s (%s) in experiment %r at %s",
            self.run_id,
            "resumed" if self.resumed else "new",
            self.spec.mlflow.experiment,
            self.target,
        )

    def _open_run_late(self) -> None:
        """The queue's first task when the server was unreachable at start."""
        self._open_run()
        if self.resumed:
            self._held = self.logged_steps()
            dropped = self.queue.drop_points(self._held.holds)
            if dropped:
                self.notify(
                    f"MLflow run {self.run_id} already holds steps up to {self._held.last():,}: "
                    f"{dropped:,} points it holds are not sent again"
                )

    def _sweep_parent(self) -> str | None:
        """The parent run of this run's sweep ($TRAINER_SWEEP_ID), created by the first run of
        the sweep to start (`tracking.sweeps`); None outside a sweep."""
        sweep = self.environ.get(ENV_SWEEP_ID, "").strip()
        if not sweep:
            return None
        return sweep_run(
            self.client, self.client_experiment_id, sweep, {"sweep_of": self.spec.name}
        )

    @property
    def client_experiment_id(self) -> str:
        if self.experiment_id is None:
            raise RuntimeError("MlflowTracker: call start() first")
        return self.experiment_id

    def _tags(self) -> dict[str, str]:
        spec = self.spec
        tags = dict(spec.mlflow.tags)
        tags.update(
            {
                "trainer.spec_hash": spec_hash(spec),
                "trainer.training_hash": training_hash(spec),
                "trainer.host": socket.gethostname(),
                "game": spec.game.adapter,
                "rom": spec.game.rom,
                TAG_NUM_ENVS: str(spec.env.num_envs),
            }
        )
        if self.environ.get(ENV_SWEEP_ID):
            tags[TAG_SWEEP_ID] = self.environ[ENV_SWEEP_ID]
        if self.environ.get(ENV_JOB_NAME):
            tags[TAG_K8S_JOB] = self.environ[ENV_JOB_NAME]
        tags.update(self.extra_tags)
        tags[TAG_JOB_ID] = self.identity
        return {k: self.redact(str(v))[:MAX_TAG_VALUE_LENGTH] for k, v in tags.items()}

    def _log_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        log_batch(self.client, self.client_run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    @property
    def client_run_id(self) -> str:
        if self.run_id is None:
            raise RuntimeError("MlflowTracker: the run has not started")
        return self.run_id

    # -- params and metrics --------------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = self.redact.mapping(flatten_params(params))
        self.queue.put(Task("params", lambda: self._send_params(flat)))

    def _send_params(self, flat: Mapping[str, str]) -> None:
        """New params are logged; one already in the run with another value (MLflow forbids
        changing it, e.g. a raised `ppo.total_steps` on resume) is kept, the new value a tag."""
        from mlflow.entities import Param

        new = {k: v for k, v in flat.items() if k not in self._params}
        changed = {k: v for k, v in flat.items() if k in self._params and self._params[k] != v}
        log_batch(self.client, self.client_run_id, params=[Param(k, v) for k, v in new.items()])
        self._params.update(new)
        if changed:
            log.warning(
                "params changed since the run started (kept the logged values, new ones as tags): %s",
                ", ".join(f"{k}: {self._params[k]} → {v}" for k, v in changed.items()),
            )
            self._log_tags({_changed_param_tag(k): v for k, v in changed.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        metrics = self._held.new(metrics, step)
        if not metrics:
            return
        # MLflow stores a point once per (key, step, timestamp, value): two episodes ending at the
        # same step with the same value (e.g. both envs truncated, no life lost) would be one
        # point in the same millisecond. A timestamp that rises with every call keeps both.
        now = self._last_stamp = max(int(time.time() * 1000), self._last_stamp + 1)
        self.queue.put_points(
            [(key, float(value), now, int(step)) for key, value in metrics.items()]
        )

    def _send_points(self, points: Sequence[Point]) -> None:
        from mlflow.entities import Metric

        batch = [Metric(key, value, stamp, step) for key, value, stamp, step in points]
        self.client.log_batch(self.client_run_id, metrics=batch, synchronous=True)

    def unsent_metrics(self) -> dict[str, list[Any]]:
        return pack_points(self.queue.unsent_points() if self._queue is not None else [])

    def flush(self, timeout: float | None = None) -> bool:
        return self._queue.flush(timeout) if self._queue is not None else True

    def logged_steps(self) -> LoggedSteps:
        if self.run_id is None:
            return LoggedSteps()  # the run is not found yet: `_open_run_late` reads it then
        run_id = self.run_id

        def read() -> LoggedSteps:
            keys = list(self.client.get_run(run_id).data.metrics)
            history = {k: self.client.get_metric_history(run_id, k) for k in keys}
            return LoggedSteps(
                {k: max(m.step for m in points) for k, points in history.items() if points}
            )

        try:
            return retrying(read)
        except Exception as exc:
            log.warning("MLflow: reading metric history failed: %s", self.redact(str(exc)))
            return LoggedSteps()

    # -- artifacts -------------------------------------------------------------------------------
    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        path = Path(path)
        self._queue_upload(path.name, {path.name: path}, artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        text = self.redact(text)
        send = lambda: self.client.log_text(self.client_run_id, text, artifact_file)  # noqa: E731
        self.queue.put(Task(artifact_file, send, key=f"text:{artifact_file}"))

    def log_checkpoint(self, path: str | os.PathLike[str], step: int) -> None:
        """Queue `checkpoints/step_<step>.pt` and `checkpoints/latest.pt`; a newer checkpoint
        replaces one still waiting (only the newest matters to a resume)."""
        path = Path(path)
        files = {f"step_{step}.pt": path, LATEST: path}
        self._queue_upload(f"checkpoint at step {step:,}", files, "checkpoints", key="checkpoint")

    def _queue_upload(
        self,
        name: str,
        files: Mapping[str, Path],
        artifact_path: str | None,
        key: str | None = None,
    ) -> None:
        """Stage `files` (`staging.Staging`) and queue their upload under `artifact_path`."""
        staged = self._staging.stage(next(iter(files.values())).parent, files)
        if staged is None:
            return

        def send() -> None:
            self.client.log_artifacts(self.client_run_id, str(staged), artifact_path)
            self._staging.remove(staged)

        self.queue.put(Task(name, send, key=key, discard=lambda: self._staging.remove(staged)))

    def fetch_latest_checkpoint(self, dest_dir: str | os.PathLike[str]) -> Path | None:
        """Download `checkpoints/latest.pt` of a resumed run into `dest_dir/latest.pt` (checked
        readable); None for a new run, no checkpoint, a failure or a run not found yet."""
        if not self.resumed or self.run_id is None:
            return None
        dest_dir, run_id = Path(dest_dir), self.run_id
        try:
            names = {
                a.path for a in retrying(lambda: self.client.list_artifacts(run_id, "checkpoints"))
            }
            if f"checkpoints/{LATEST}" not in names:
                return None
            dest_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".download-", dir=dest_dir) as tmp:
                local = retrying(
                    lambda: self.client.download_artifacts(run_id, f"checkpoints/{LATEST}", tmp)
                )
                CheckpointStore.load(local)
                target = dest_dir / LATEST
                os.replace(local, target)
        except Exception as exc:
            log.warning(
                "MLflow: fetching the run's latest checkpoint failed: %s", self.redact(str(exc))
            )
            return None
        log.info("fetched checkpoint of run %s to %s", self.run_id, target)
        return target

    def log_model(
        self, model: torch.nn.Module, obs_example: torch.Tensor | None = None, name: str = "policy"
    ) -> None:
        def send() -> None:
            log_pytorch_model(
                model, obs_example, name, self.client_run_id, str(self.tracking_uri),
                str(self.experiment_id),
            )  # fmt: skip

        self.queue.put(Task(f"model {name!r}", send, key=f"model:{name}"))

    # -- end ---------------------------------------------------------------------------------------
    def close(self, status: RunStatus = "FINISHED") -> None:
        """Queue the run's status, send what is queued for up to `mlflow.drain_timeout_s`, and
        say what could not be sent."""
        if self._closed or self._queue is None:
            return
        self._closed = True
        if self._system is not None:
            self._system.finish()
        queue, timeout = self._queue, self.spec.mlflow.drain_timeout_s
        queue.put(Task(f"run status {status}", lambda: self._terminate(status)))
        if queue.outage:
            self.notify(
                f"⏳ MLflow still unreachable: trying for up to {timeout:g} s "
                f"(mlflow.drain_timeout_s) to send {queue.pending().describe()}"
            )
        left = queue.close(timeout)
        if left:
            self.notify(
                f"⚠️  MLflow at {self.target}: not sent within mlflow.drain_timeout_s={timeout:g} s: "
                f"{left.describe()}. The checkpoints on disk keep the unsent metrics: running "
                "this job again sends them."
            )
        if queue.rejected:
            self.notify(
                f"⚠️  MLflow refused {len(queue.rejected)} items: {', '.join(queue.rejected)}"
            )
        self._shutdown()

    def _terminate(self, status: RunStatus) -> None:
        """The run's status, and the sweep's run's end time (`sweeps.extend_sweep_run`): one
        task, retried whole (both calls are idempotent)."""
        self.client.set_terminated(self.client_run_id, status)
        if self._parent is not None:
            extend_sweep_run(self.client, self._parent)

    def _shutdown(self) -> None:
        if self._queue is not None and not self._closed:
            self._closed = True
            self._queue.close(0)
        unset(self._env_added)
        self._env_added = {}


def _changed_param_tag(key: str) -> str:
    return "trainer.total_steps" if key == "ppo.total_steps" else f"trainer.param.{key}"
