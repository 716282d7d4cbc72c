"""Tracking and checkpoints: the only module that talks to MLflow.

The training loop talks to a `Tracker` (`NullTracker` when `mlflow.enabled: false`,
`MlflowTracker` otherwise), so "no MLflow" is one object, not `if`s in the loop. Checkpoints go
to a `CheckpointStore` on local disk (a PVC in a pod) and, through the tracker, to the MLflow run
(for pods without a PVC).

Idempotence, because a Job's pod can start twice:
- the job's identity (`job_identity`) is the Kubernetes Job name, or the same formula locally;
- `MlflowTracker.start()` finds the run tagged `trainer.job_id == identity` and resumes it;
- checkpoints are written atomically (`path.tmp`, fsync, `os.replace`); a damaged `latest.pt`
  falls back to the newest readable step file.

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

import abc
import contextlib
import json
import logging
import os
import random
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from trainer.spec import JobSpec, job_name

if TYPE_CHECKING:  # mlflow is imported lazily: a run without MLflow never pays for the import
    from mlflow import MlflowClient
    from mlflow.entities import Metric

log = logging.getLogger(__name__)

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]

#: Environment variables set by the Kubernetes renderer / launcher.
ENV_JOB_NAME = "TRAINER_JOB_NAME"
ENV_SWEEP_ID = "TRAINER_SWEEP_ID"

#: Run tag that identifies a job's run (the idempotent lookup key).
TAG_JOB_ID = "trainer.job_id"

# MLflow's limits (mlflow/utils/validation.py).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000

LATEST = "latest.pt"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def job_identity(spec: JobSpec, environ: Mapping[str, str] = os.environ) -> str:
    """The run's identity: `$TRAINER_JOB_NAME` in a pod, else the Job name the renderer would use."""
    name = environ.get(ENV_JOB_NAME, "").strip()
    return name or job_name(spec)


# ---- checkpoints ---------------------------------------------------------------------------


class CheckpointStore:
    """Checkpoints of one job under `root/checkpoints/`: `step_<n>.pt` (newest `keep`) + `latest.pt`."""

    def __init__(self, root: str | os.PathLike[str], keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep: must be ≥ 1 (got {keep})")
        self.root = Path(root)
        self.dir = self.root / "checkpoints"
        self.keep = keep

    @property
    def latest_path(self) -> Path:
        return self.dir / LATEST

    def step_path(self, step: int) -> Path:
        return self.dir / f"step_{step}.pt"

    def steps(self) -> list[int]:
        """Steps with a checkpoint file on disk, oldest first."""
        if not self.dir.is_dir():
            return []
        found = (_STEP_FILE.match(p.name) for p in self.dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def save(self, state: Mapping[str, Any], step: int) -> Path:
        """Write `step_<step>.pt` and `latest.pt` atomically, prune old steps; returns the step file.

        `latest.pt` is replaced before the step file appears, so after a kill at any point
        `latest.pt` is never older than the newest step file.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.step_path(step)
        tmp = path.with_name(path.name + ".tmp")
        latest_tmp = self.latest_path.with_name(LATEST + ".tmp")
        with open(tmp, "wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        shutil.copyfile(tmp, latest_tmp)
        _fsync_file(latest_tmp)
        os.replace(latest_tmp, self.latest_path)
        os.replace(tmp, path)
        _fsync_dir(self.dir)
        self._prune()
        return path

    def _prune(self) -> None:
        for step in self.steps()[: -self.keep]:
            self.step_path(step).unlink(missing_ok=True)

    def load_latest(self) -> dict[str, Any] | None:
        """The newest readable checkpoint: `latest.pt`, else step files newest first; None if none."""
        candidates = [self.latest_path] + [self.step_path(s) for s in reversed(self.steps())]
        existing = [p for p in candidates if p.is_file()]
        for i, path in enumerate(existing):
            try:
                state = self.load(path)
            except Exception as exc:  # truncated copy, bad zip, foreign pickle: try the next one
                rest = (
                    "falling back to " + existing[i + 1].name
                    if i + 1 < len(existing)
                    else "no other checkpoint"
                )
                log.warning(
                    "checkpoint %s is unreadable (%s: %s); %s", path, type(exc).__name__, exc, rest
                )
                continue
            return state
        if existing:
            log.warning("no readable checkpoint in %s: starting from scratch", self.dir)
        return None

    @staticmethod
    def load(path: str | os.PathLike[str]) -> dict[str, Any]:
        """Load one checkpoint file with `weights_only=True` (tensors, containers, numbers, str)."""
        state = torch.load(path, weights_only=True, map_location="cpu")
        if not isinstance(state, dict):
            raise ValueError(f"expected a dict, found {type(state).__name__}")
        return state


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Persist renames in `path` (no-op where directories can't be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def rng_state(np_generator: np.random.Generator | None = None) -> dict[str, Any]:
    """Python, NumPy (legacy global, and `np_generator` if given) and torch RNG states.

    Everything is a tensor, number, string, list, tuple or dict, so it survives
    `torch.load(weights_only=True)`: NumPy's legacy state carries a uint32 ndarray, stored here
    as an int64 tensor.
    """
    kind, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if np_generator is not None:
        state["numpy_generator"] = np_generator.bit_generator.state
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(
    state: Mapping[str, Any], np_generator: np.random.Generator | None = None
) -> None:
    """Restore what `rng_state()` captured (CUDA only when CUDA is available here)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    legacy = state["numpy"]
    key = legacy["key"]
    key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
    np.random.set_state(
        (
            legacy["kind"],
            key.astype(np.uint32),
            legacy["pos"],
            legacy["has_gauss"],
            legacy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if np_generator is not None and "numpy_generator" in state:
        np_generator.bit_generator.state = state["numpy_generator"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- trackers ------------------------------------------------------------------------------


class Tracker(abc.ABC):
    """What the training loop logs to. Usable as a context manager (closes FAILED on an error)."""

    run_id: str | None = None
    resumed: bool = False

    @abc.abstractmethod
    def start(self) -> None:
        """Find or create the run (idempotent per job identity)."""

    @abc.abstractmethod
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params; nested mappings are flattened to dotted keys (`ppo.learning_rate`)."""

    @abc.abstractmethod
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer metric values at `step`; cheap, never blocks on the network."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Send buffered metrics now."""

    @abc.abstractmethod
    def last_step(self, key: str | None = None) -> int:
        """Largest step logged so far for `key` (any metric if None); -1 when none."""

    @abc.abstractmethod
    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Upload a local file (into the folder `artifact_path` of the run's artifacts)."""

    @abc.abstractmethod
    def log_text(self, text: str, artifact_file: str) -> None:
        """Store `text` as the artifact `artifact_file` (e.g. `spec.yaml`)."""

    @abc.abstractmethod
    def log_checkpoint(self, path: str | os.PathLike[str], step: int) -> None:
        """Upload a checkpoint as `checkpoints/step_<step>.pt` and `checkpoints/latest.pt`."""

    @abc.abstractmethod
    def fetch_latest_checkpoint(self, dest_dir: str | os.PathLike[str]) -> Path | None:
        """Download the run's `checkpoints/latest.pt` into `dest_dir`; None when there is none."""

    @abc.abstractmethod
    def log_model(
        self, model: torch.nn.Module, obs_example: torch.Tensor | None = None, name: str = "policy"
    ) -> None:
        """Log the final policy as an MLflow PyTorch model."""

    @abc.abstractmethod
    def close(self, status: RunStatus = "FINISHED") -> None:
        """Flush and mark the run FINISHED, FAILED or KILLED (idempotent)."""

    def __enter__(self) -> Tracker:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close("KILLED")
        else:
            self.close("FAILED")


class NullTracker(Tracker):
    """Tracks nothing (`mlflow.enabled: false`); never imports MLflow."""

    def start(self) -> None:
        pass

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def last_step(self, key: str | None = None) -> int:
        return -1

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def log_checkpoint(self, path: str | os.PathLike[str], step: int) -> None:
        pass

    def fetch_latest_checkpoint(self, dest_dir: str | os.PathLike[str]) -> Path | None:
        return None

    def log_model(
        self, model: torch.nn.Module, obs_example: torch.Tensor | None = None, name: str = "policy"
    ) -> None:
        pass

    def close(self, status: RunStatus = "FINISHED") -> None:
        pass


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping → `{"ppo.learning_rate": "0.00025", ...}` with MLflow-sized string values.

    Lists and empty mappings are JSON-encoded; values longer than MLflow's 6000-character limit
    are cut (with a marker) rather than rejected.
    """
    out: dict[str, str] = {}
    for key, value in params.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_params(value, dotted + "."))
            continue
        text = json.dumps(value) if isinstance(value, list | tuple | Mapping) else str(value)
        if len(text) > MAX_PARAM_VALUE_LENGTH:
            text = text[: MAX_PARAM_VALUE_LENGTH - 15] + "…[truncated]"
        out[dotted] = text
    return out


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
            for start in range(0, len(batch), MAX_METRICS_PER_BATCH):
                chunk = batch[start : start + MAX_METRICS_PER_BATCH]
                try:
                    self.client.log_batch(self.run_id, metrics=chunk, synchronous=True)
                except Exception as exc:
                    with self._lock:
                        self._pending[:0] = batch[start:]
                    if not self._failing:
                        log.warning(
                            "MLflow log_batch failed (%s); keeping %d points for the next try",
                            exc,
                            len(batch) - start,
                        )
                    self._failing = True
                    return False
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
        self._params: dict[str, str] = {}
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
        self.experiment_id = self._experiment_id(self.spec.mlflow.experiment)
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TAG_JOB_ID}` = '{_quote(self.identity)}'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=2,
            order_by=["attributes.start_time DESC"],
        )
        tags = self._tags()
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
        self.log_params(self.spec.model_dump(mode="json"))
        self.log_text(self.spec.to_yaml(), "spec.yaml")
        log.info(
            "MLflow run %s (%s) in experiment %r at %s",
            self.run_id,
            "resumed" if self.resumed else "new",
            self.spec.mlflow.experiment,
            self.tracking_uri,
        )

    def _experiment_id(self, name: str) -> str:
        """Get or create the experiment; a concurrent creator (another pod) is not an error."""
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return self.client.create_experiment(name)
            except MlflowException as exc:
                exists = "RESOURCE_ALREADY_EXISTS" in str(
                    exc.error_code
                ) or "already exists" in str(exc)
                if not exists:
                    raise
                experiment = self.client.get_experiment_by_name(name)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":
            log.warning("MLflow experiment %r was deleted; restoring it", name)
            self.client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    def _tags(self) -> dict[str, str]:
        spec = self.spec
        tags = dict(spec.mlflow.tags)
        tags.update(
            {
                "trainer.spec_hash": spec.spec_hash(),
                "trainer.training_hash": spec.training_hash(),
                "trainer.host": socket.gethostname(),
                "game": spec.game.adapter,
                "rom": spec.game.rom,
                "num_envs": str(spec.env.num_envs),
            }
        )
        if self.environ.get(ENV_SWEEP_ID):
            tags["sweep_id"] = self.environ[ENV_SWEEP_ID]
        tags.update(self.extra_tags)
        tags[TAG_JOB_ID] = self.identity
        return {k: str(v)[:MAX_TAG_VALUE_LENGTH] for k, v in tags.items()}

    def _log_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, v) for k, v in tags.items()]
        for start in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(
                self.client_run_id,
                tags=items[start : start + MAX_PARAMS_TAGS_PER_BATCH],
                synchronous=True,
            )

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
        items = [Param(k, v) for k, v in new.items()]
        try:
            for start in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
                self.client.log_batch(
                    self.client_run_id,
                    params=items[start : start + MAX_PARAMS_TAGS_PER_BATCH],
                    synchronous=True,
                )
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
        now = int(time.time() * 1000)
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
        if self._sender is not None and not self._sender.close():
            log.warning("MLflow: %d metric points could not be sent", len(self._sender._pending))
        try:
            self.client.set_terminated(self.run_id, status)
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


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


# ---- reading a sweep back (trainer compare) ------------------------------------------------


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
            raise LookupError(
                f"--experiment: no experiment named {experiment!r} at {client.tracking_uri}"
            )
        experiment_ids = [found.experiment_id]
    else:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiment_ids, filter_string=f"tags.sweep_id = '{_quote(sweep_id)}'", max_results=1000
    )
    records = []
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "charts/episodic_return")
        records.append(
            RunRecord(
                run_id=run.info.run_id,
                name=run.info.run_name or run.info.run_id,
                num_envs=int(run.data.tags.get("num_envs", "0") or 0),
                status=run.info.status,
                metrics=dict(run.data.metrics),
                returns=sorted((m.step, m.value) for m in history),
            )
        )
    return sorted(records, key=lambda r: (r.num_envs, r.name))


def log_comparison(
    tracking_uri: str | None,
    experiment_id_of: str,
    sweep_id: str,
    files: Sequence[Path],
    summary: Mapping[str, float],
) -> str:
    """Log the comparison (table, plots) to a `compare-<sweep id>` run in the experiment of run
    `experiment_id_of`, tagged with the sweep id so it sits beside the runs it compares."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment_id = client.get_run(experiment_id_of).info.experiment_id
    existing = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`trainer.compare_of` = '{_quote(sweep_id)}'",
        max_results=1,
    )
    if existing:
        run_id = existing[0].info.run_id
    else:
        run_id = client.create_run(
            experiment_id,
            run_name=f"compare-{sweep_id}",
            tags={"sweep_id": sweep_id, "trainer.compare_of": sweep_id},
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
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run = client.create_run(
        experiment_id,
        run_name=f"bench-{time.strftime('%Y-%m-%d')}",
        tags={"trainer.kind": "bench", "host": socket.gethostname()},
    )
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    metrics = [Metric(key, float(value), stamp, 0) for key, value in figures.items()]
    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run.info.run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])
    client.log_artifact(run.info.run_id, str(report_file))
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id
