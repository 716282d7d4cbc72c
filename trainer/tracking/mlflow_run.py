"""`MlflowTracker`: one MLflow run per job, found again (and resumed) by its identity tag.

Idempotence, because a Job's pod can start twice: the job's identity (`spec.job_identity`) is
the Kubernetes Job name, or the same formula locally, and `start()` finds the run tagged
`trainer.job_id == identity` and resumes it. Checkpoints go to the run's artifacts too, for pods
without a PVC.

Failure policy: `start()` raises (a wrong URI should fail the job at once); after that, tracking
errors are logged as warnings and never stop training.

Metrics are buffered and sent with `MlflowClient.log_batch` (≤ 1000 points per request) by one
background thread, every `flush_interval_s` seconds or as soon as a full batch is waiting, and on
`flush()`/`close()`. The training thread only appends to a list, so an HTTP round trip never
stalls a rollout. We use our own buffer rather than MLflow's async logging (`synchronous=False`)
because it batches per call, not across calls, its queue is unbounded and its failures surface
only at exit; ours bounds memory, keeps failed points for the next attempt and flushes on demand.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer.spec import ENV_SWEEP_ID, JobSpec, spec_hash, training_hash
from trainer.tracking.checkpoints import LATEST, CheckpointStore
from trainer.tracking.client import (
    MAX_METRICS_PER_BATCH,
    MAX_TAG_VALUE_LENGTH,
    TAG_JOB_ID,
    TAG_NUM_ENVS,
    TAG_SWEEP_ID,
    chunked,
    experiment_id,
    log_batch,
    quote,
)
from trainer.tracking.sweeps import child_tags, extend_sweep_run, run_page, sweep_run
from trainer.tracking.system import start_system_metrics
from trainer.tracking.tracker import RunStatus, Tracker, flatten_params

if TYPE_CHECKING:  # mlflow and torch are imported lazily
    import torch
    from mlflow import MlflowClient
    from mlflow.entities import Metric

log = logging.getLogger(__name__)


def resolve_tracking_uri(spec: JobSpec, environ: Mapping[str, str] = os.environ) -> str:
    """`mlflow.tracking_uri`, else `$MLFLOW_TRACKING_URI`, else MLflow's local default.

    MLflow 3's default is `sqlite:///mlflow.db` in the working directory (or `./mlruns` when
    that holds an old file store), the same place `mlflow ui` reads by default.
    """
    if spec.mlflow.tracking_uri:
        return spec.mlflow.tracking_uri
    if environ.get("MLFLOW_TRACKING_URI"):
        return environ["MLFLOW_TRACKING_URI"]
    import mlflow

    return mlflow.get_tracking_uri()


class _MetricSender:
    """Buffers metric points and sends them with `log_batch` from one background thread."""

    def __init__(
        self, client: MlflowClient, run_id: str, interval_s: float, max_pending: int = 200_000
    ):
        self.client = client
        self.run_id = run_id
        self.interval_s = interval_s
        self.max_pending = max_pending
        self._pending: list[Metric] = []
        self._lock = threading.Lock()  # guards _pending
        self._send_lock = threading.Lock()  # one sender at a time keeps points in order
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._failing = False
        self.sent = 0

    def add(self, points: list[Metric]) -> None:
        with self._lock:
            self._pending.extend(points)
            dropped = len(self._pending) - self.max_pending
            if dropped > 0:
                del self._pending[:dropped]
                log.warning(
                    "MLflow unreachable: dropped the %d oldest buffered metric points", dropped
                )
            full = len(self._pending) >= MAX_METRICS_PER_BATCH
        # Started on first use, after the vector env forked its workers (no thread across fork).
        if self._thread is None and not self._stop:
            self._thread = threading.Thread(target=self._run, name="mlflow-metrics", daemon=True)
            self._thread.start()
        if full:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if not self._stop:
                self.send()

    def send(self) -> bool:
        """Send everything pending; on failure keep the unsent points and return False."""
        with self._send_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            sent = 0
            for chunk in chunked(batch, MAX_METRICS_PER_BATCH):
                try:
                    self.client.log_batch(self.run_id, metrics=chunk, synchronous=True)
                except Exception as exc:
                    with self._lock:
                        self._pending[:0] = batch[sent:]
                    if not self._failing:
                        log.warning(
                            "MLflow log_batch failed (%s); keeping %d points for the next try",
                            exc,
                            len(batch) - sent,
                        )
                    self._failing = True
                    return False
                sent += len(chunk)
                self.sent += len(chunk)
            if self._failing:
                log.warning("MLflow log_batch works again")
            self._failing = False
            return True

    def close(self) -> bool:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        return self.send()


class MlflowTracker(Tracker):
    """One MLflow run per job identity, found again (and resumed) by the `trainer.job_id` tag."""

    def __init__(
        self,
        spec: JobSpec,
        identity: str,
        tags: Mapping[str, str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        flush_interval_s: float = 5.0,
    ):
        self.spec = spec
        self.identity = identity
        self.extra_tags = dict(tags or {})
        self.environ = dict(os.environ if environ is None else environ)
        self.flush_interval_s = flush_interval_s
        self.run_id: str | None = None
        self.resumed = False
        self.experiment_id: str | None = None
        self.tracking_uri: str | None = None
        self._client: MlflowClient | None = None
        self._sender: _MetricSender | None = None
        self._last_stamp = 0  # ms; see log_metrics
        self._params: dict[str, str] = {}
        self._system: Any = None  # MLflow's SystemMetricsMonitor, while the run is open
        self._parent: str | None = None  # the sweep's run, when this run is part of a sweep
        self._closed = False

    # -- start -------------------------------------------------------------------------------
    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            raise RuntimeError("MlflowTracker: call start() first")
        return self._client

    def start(self) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import ViewType

        if self.run_id is not None:
            return
        self.tracking_uri = resolve_tracking_uri(self.spec, self.environ)
        self._client = MlflowClient(tracking_uri=self.tracking_uri)
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
        self._sender = _MetricSender(self.client, self.run_id, self.flush_interval_s)
        self._system = start_system_metrics(
            self.client_run_id, self.spec.mlflow.system_metrics_interval_s, self.resumed,
            self.tracking_uri,
        )  # fmt: skip
        self.run_url = run_page(self.tracking_uri, self.client_experiment_id, self.run_id)
        self.log_params(self.spec.model_dump(mode="json"))
        self.log_text(self.spec.to_yaml(), "spec.yaml")
        log.info(
            "MLflow run %s (%s) in experiment %r at %s",
            self.run_id,
            "resumed" if self.resumed else "new",
            self.spec.mlflow.experiment,
            self.tracking_uri,
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
        tags.update(self.extra_tags)
        tags[TAG_JOB_ID] = self.identity
        return {k: str(v)[:MAX_TAG_VALUE_LENGTH] for k, v in tags.items()}

    def _log_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        log_batch(self.client, self.client_run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    @property
    def client_run_id(self) -> str:
        if self.run_id is None:
            raise RuntimeError("MlflowTracker: call start() first")
        return self.run_id

    # -- params and metrics --------------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log new params; a param already in the run with another value (MLflow forbids changing
        it, e.g. a raised `ppo.total_steps` on resume) is kept and the new value goes to a tag."""
        from mlflow.entities import Param

        new: dict[str, str] = {}
        changed: dict[str, str] = {}
        for key, value in flatten_params(params).items():
            if key not in self._params:
                new[key] = value
            elif self._params[key] != value:
                changed[key] = value
        try:
            log_batch(self.client, self.client_run_id, params=[Param(k, v) for k, v in new.items()])
            self._params.update(new)
            if changed:
                log.warning(
                    "params changed since the run started (kept the logged values, new ones as tags): %s",
                    ", ".join(f"{k}: {self._params[k]} → {v}" for k, v in changed.items()),
                )
                self._log_tags({_changed_param_tag(k): v for k, v in changed.items()})
        except Exception as exc:
            log.warning("MLflow: logging params failed: %s", exc)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        if self._sender is None:
            raise RuntimeError("MlflowTracker: call start() first")
        # MLflow stores a point once per (key, step, timestamp, value): two episodes ending at the
        # same step with the same value (e.g. both envs truncated, no life lost) would be one
        # point in the same millisecond. A timestamp that rises with every call keeps both.
        now = self._last_stamp = max(int(time.time() * 1000), self._last_stamp + 1)
        self._sender.add(
            [Metric(key, float(value), now, int(step)) for key, value in metrics.items()]
        )

    def flush(self) -> None:
        if self._sender is not None:
            self._sender.send()

    def last_step(self, key: str | None = None) -> int:
        self.flush()
        try:
            keys = [key] if key else list(self.client.get_run(self.client_run_id).data.metrics)
            steps = [
                m.step for k in keys for m in self.client.get_metric_history(self.client_run_id, k)
            ]
        except Exception as exc:
            log.warning("MLflow: reading metric history failed: %s", exc)
            return -1
        return max(steps, default=-1)

    # -- artifacts -------------------------------------------------------------------------------
    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        try:
            self.client.log_artifact(self.client_run_id, os.fspath(path), artifact_path)
        except Exception as exc:
            log.warning("MLflow: uploading %s failed: %s", path, exc)

    def log_text(self, text: str, artifact_file: str) -> None:
        try:
            self.client.log_text(self.client_run_id, text, artifact_file)
        except Exception as exc:
            log.warning("MLflow: uploading %s failed: %s", artifact_file, exc)

    def log_checkpoint(self, path: str | os.PathLike[str], step: int) -> None:
        path = Path(path)
        try:
            with tempfile.TemporaryDirectory(prefix=".upload-", dir=path.parent) as tmp:
                for name in (f"step_{step}.pt", LATEST):
                    _link_or_copy(path, Path(tmp) / name)
                self.client.log_artifacts(self.client_run_id, tmp, "checkpoints")
        except Exception as exc:
            log.warning("MLflow: uploading checkpoint %s failed: %s", path, exc)

    def fetch_latest_checkpoint(self, dest_dir: str | os.PathLike[str]) -> Path | None:
        """Download `checkpoints/latest.pt` of a resumed run into `dest_dir/latest.pt` (checked
        readable with `weights_only=True`); None for a new run, no checkpoint or a failure."""
        if not self.resumed:
            return None
        dest_dir = Path(dest_dir)
        try:
            names = {a.path for a in self.client.list_artifacts(self.client_run_id, "checkpoints")}
            if f"checkpoints/{LATEST}" not in names:
                return None
            dest_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".download-", dir=dest_dir) as tmp:
                local = self.client.download_artifacts(
                    self.client_run_id, f"checkpoints/{LATEST}", tmp
                )
                CheckpointStore.load(local)
                target = dest_dir / LATEST
                os.replace(local, target)
        except Exception as exc:
            log.warning("MLflow: fetching the run's latest checkpoint failed: %s", exc)
            return None
        log.info("fetched checkpoint of run %s to %s", self.run_id, target)
        return target

    def log_model(
        self, model: torch.nn.Module, obs_example: torch.Tensor | None = None, name: str = "policy"
    ) -> None:
        """Log `model` (pickled, so any nn.Module works, `forward` or not) as an MLflow model.

        Kept fast: pinned requirements (no inference in a subprocess), an input-only signature
        from `obs_example` (no forward pass, no input example to validate).
        """
        import mlflow
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        signature = None
        if obs_example is not None:
            signature = infer_signature(obs_example.detach().cpu().numpy())
        requirements = [
            f"torch=={torch.__version__.split('+')[0]}",
            f"mlflow=={mlflow.__version__}",
        ]
        with contextlib.suppress(ImportError):
            import cloudpickle

            requirements.append(f"cloudpickle=={cloudpickle.__version__}")
        quiet = _DropMessage("Pickle or CloudPickle")  # pickle is our deliberate choice here
        logging.getLogger("mlflow.pytorch").addFilter(quiet)
        try:
            with self._fluent_context():
                mlflow.pytorch.log_model(
                    model,
                    name=name,
                    run_id=self.client_run_id,
                    signature=signature,
                    pip_requirements=requirements,
                    serialization_format="pickle",
                )
        except Exception as exc:
            log.warning("MLflow: logging the model failed: %s", exc)
        finally:
            logging.getLogger("mlflow.pytorch").removeFilter(quiet)

    @contextlib.contextmanager
    def _fluent_context(self) -> Iterator[None]:
        """Point MLflow's fluent API (used by `log_model`) at our server and experiment, then
        put everything back: the environment variables, and an explicit `set_tracking_uri`
        (which outranks the environment) only if one was in force."""
        import mlflow

        names = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")
        saved = {name: os.environ.get(name) for name in names}
        os.environ["MLFLOW_TRACKING_URI"] = str(self.tracking_uri)
        os.environ["MLFLOW_EXPERIMENT_ID"] = str(self.experiment_id)
        explicit = None
        if mlflow.get_tracking_uri() != self.tracking_uri:
            explicit = mlflow.get_tracking_uri()
            mlflow.set_tracking_uri(self.tracking_uri)
        try:
            yield
        finally:
            if explicit is not None:
                mlflow.set_tracking_uri(explicit)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    # -- end ---------------------------------------------------------------------------------------
    def close(self, status: RunStatus = "FINISHED") -> None:
        if self._closed or self.run_id is None:
            return
        self._closed = True
        if self._system is not None:
            self._system.finish()
        if self._sender is not None and not self._sender.close():
            log.warning("MLflow: %d metric points could not be sent", len(self._sender._pending))
        try:
            self.client.set_terminated(self.run_id, status)
            if self._parent is not None:
                extend_sweep_run(self.client, self._parent)
        except Exception as exc:
            log.warning("MLflow: marking the run %s failed: %s", status, exc)


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str):
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def _changed_param_tag(key: str) -> str:
    return "trainer.total_steps" if key == "ppo.total_steps" else f"trainer.param.{key}"


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
