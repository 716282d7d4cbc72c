"""Job spec → Kubernetes manifests (pure functions returning plain dicts), plus a thin client.

One sweep point (a `JobSpec` with a fixed `env.num_envs`) becomes one ConfigMap holding the
point's spec and one `batch/v1` Job running `trainer run /etc/trainer/spec.yaml`. The Helm chart
in `helm/pyboy-trainer/` renders the very same objects; `tests/test_helm_chart.py` compares them.

Names. Jobs are immutable, so a Job's name carries its config, never a timestamp:
`{spec.name}-e{num_envs}-{digest[:8]}`, where the digest is the SHA-256 of the ConfigMap's
`spec.yaml` text. That text is the point's spec as indented JSON (JSON is YAML) written exactly
the way Go's `json.MarshalIndent` writes it — keys sorted, numbers in Go's float format, `<>&`
escaped, nulls left out — because that is what Helm's `toPrettyJson` produces, so the chart
derives the same names from user-edited values with `sha256sum`. Relaunching the same spec
therefore yields the same names (idempotent), and any change yields new Jobs.

This module imports `trainer.spec` only (and the `kubernetes` client lazily, inside
`KubeClient.from_config`): the launcher must start fast, without torch or PyBoy.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

from trainer import __version__
from trainer.spec import (
    DIGEST_LENGTH,
    EXIT_INVALID_INPUT,
    JobSpec,
    SpecError,
    job_name,
    parse_quantity,
    spec_document,
    validate_spec,
)

# ---- names and defaults (docs/kubernetes.md documents each) ---------------------------------

APP_NAME = "pyboy-trainer"
#: `app.kubernetes.io/managed-by` on what `trainer render`/`launch` make (the chart writes "Helm").
MANAGED_BY = "trainer"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_SWEEP = "pyboy-trainer/sweep-id"
LABEL_NUM_ENVS = "pyboy-trainer/num-envs"
#: Set by the Job controller on every pod of a Job (Kubernetes ≥ 1.27).
LABEL_JOB_NAME = "batch.kubernetes.io/job-name"

IMAGE_REPOSITORY = "ghcr.io/pyboy-trainer/trainer"
DEFAULT_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"
#: The MLflow Service of `k8s/mlflow.yaml`, reachable from every namespace of the cluster.
DEFAULT_TRACKING_URI = "http://mlflow.pyboy-trainer.svc:5000"

CONTAINER_NAME = "trainer"
SPEC_DIR = "/etc/trainer"
SPEC_KEY = "spec.yaml"
SPEC_PATH = f"{SPEC_DIR}/{SPEC_KEY}"
CHECKPOINT_DIR = "/var/lib/trainer/checkpoints"
#: The image's numeric non-root user and group (Dockerfile `USER 10001:10001`).
RUN_AS_USER = 10001


# ---- sweep points ---------------------------------------------------------------------------


def env_counts(spec: JobSpec, num_envs_list: Sequence[int] | None = None) -> list[int]:
    """Env counts to run: the explicit list, else `sweep.num_envs`, else `env.num_envs`."""
    if num_envs_list:
        counts = list(num_envs_list)
        bad = [n for n in counts if not isinstance(n, int) or n < 1]
        if bad:
            raise SpecError([f"--envs: every count must be an integer ≥ 1 (got {bad})"])
        if len(set(counts)) != len(counts):
            raise SpecError([f"--envs: counts must be distinct (got {counts})"])
        return counts
    if spec.sweep.num_envs:
        return list(spec.sweep.num_envs)
    if spec.env.num_envs == "auto":
        raise SpecError(
            [
                "env.num_envs: 'auto' cannot size a pod (its CPU request depends on it); "
                "set a number, sweep.num_envs, or pass --envs"
            ]
        )
    return [int(spec.env.num_envs)]


def pod_spec(spec: JobSpec, num_envs: int, image: str | None = None) -> JobSpec:
    """The spec one pod runs: fixed `num_envs`, no sweep, the image resolved, `checkpoint.dir`
    absolute (relative dirs move to `CHECKPOINT_DIR`, where the checkpoint volume is mounted)."""
    data = spec.model_dump(mode="json")
    data["env"]["num_envs"] = num_envs
    data["sweep"] = {"num_envs": []}
    data["kubernetes"]["image"] = image or spec.kubernetes.image or DEFAULT_IMAGE
    if not PurePosixPath(data["checkpoint"]["dir"]).is_absolute():
        data["checkpoint"]["dir"] = CHECKPOINT_DIR
    return validate_spec(data, origin=f"{spec.name} with num_envs={num_envs}")


def sweep_id(spec_name: str, job_names: Iterable[str]) -> str:
    """`{name}-{sha256 of the sorted Job names}[:8]`: the same spec and env list, the same id."""
    joined = ",".join(sorted(job_names))
    return f"{spec_name}-{hashlib.sha256(joined.encode()).hexdigest()[:DIGEST_LENGTH]}"


@dataclass(frozen=True)
class SweepPoint:
    num_envs: int
    spec: JobSpec
    job_name: str


def plan(
    spec: JobSpec,
    num_envs_list: Sequence[int] | None = None,
    image: str | None = None,
    sweep: str | None = None,
    local: bool = False,
) -> tuple[str, list[SweepPoint]]:
    """(sweep id, one point per env count). `local=True` keeps paths for a local process."""
    points = []
    for count in env_counts(spec, num_envs_list):
        point = spec.with_num_envs(count) if local else pod_spec(spec, count, image)
        points.append(SweepPoint(count, point, job_name(point)))
    return sweep or sweep_id(spec.name, [p.job_name for p in points]), points


# ---- manifests ------------------------------------------------------------------------------


def format_cpu(cores: float) -> str:
    """Cores → a clean quantity: "3", "2500m"."""
    millis = math.floor(cores * 1000 + 0.5)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def format_memory(num_bytes: float) -> str:
    """Bytes → the largest unit that divides them exactly: "1536Mi", "2Gi", "2G", "2024"."""
    value = math.floor(num_bytes + 0.5)
    for suffix, factor in (
        ("Ti", 2**40),
        ("T", 10**12),
        ("Gi", 2**30),
        ("G", 10**9),
        ("Mi", 2**20),
        ("M", 10**6),
        ("Ki", 2**10),
        ("k", 10**3),
    ):
        if value >= factor and value % factor == 0:
            return f"{value // factor}{suffix}"
    return str(value)


def pod_resources(point: JobSpec) -> dict[str, dict[str, str]]:
    """Requests = limits (Guaranteed QoS): envs × per-env + learner, and the GPUs if any."""
    res = point.resources
    count = int(point.env.num_envs)
    cpu = format_cpu(count * res.cpu_per_env + res.learner_cpu)
    memory = format_memory(
        count * parse_quantity(res.memory_per_env) + parse_quantity(res.learner_memory)
    )
    limits = {"cpu": cpu, "memory": memory}
    if res.gpu > 0:
        limits["nvidia.com/gpu"] = str(res.gpu)
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": limits}


def learner_threads(point: JobSpec) -> int:
    """`OMP_NUM_THREADS`: the learner's CPU request, whole cores, at least 1."""
    return max(1, int(point.resources.learner_cpu))


def run_env(point: JobSpec, name: str, sweep: str, tracking_uri: str | None) -> dict[str, str]:
    """Variables a run gets in a pod and as a local process alike (run identity, threads, MLflow)."""
    env = {
        "TRAINER_JOB_NAME": name,
        "TRAINER_SWEEP_ID": sweep,
        "OMP_NUM_THREADS": str(learner_threads(point)),
    }
    if point.mlflow.enabled and (point.mlflow.tracking_uri or tracking_uri):
        env["MLFLOW_TRACKING_URI"] = point.mlflow.tracking_uri or tracking_uri or ""
    return env


def labels(point: JobSpec, sweep: str) -> dict[str, str]:
    return {
        LABEL_NAME: APP_NAME,
        LABEL_INSTANCE: point.name,
        LABEL_COMPONENT: "trainer",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_SWEEP: sweep,
        LABEL_NUM_ENVS: str(point.env.num_envs),
    }


def configmap_manifest(point: JobSpec, name: str, sweep: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": point.kubernetes.namespace,
            "labels": labels(point, sweep),
        },
        "data": {SPEC_KEY: spec_document(point)},
    }


def job_manifest(point: JobSpec, name: str, sweep: str) -> dict[str, Any]:
    """The Job of one sweep point; `point` comes from `pod_spec` (image and paths resolved)."""
    kube = point.kubernetes
    meta_labels = {**kube.labels, **labels(point, sweep)}
    env = run_env(point, name, sweep, DEFAULT_TRACKING_URI)
    env.update({"HOME": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib"})
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": kube.image,
        "imagePullPolicy": kube.image_pull_policy,
        "args": ["run", SPEC_PATH],
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }
    if kube.mlflow_secret:
        container["envFrom"] = [{"secretRef": {"name": kube.mlflow_secret}}]
    container["resources"] = pod_resources(point)
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    container["volumeMounts"] = [
        {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
        {"name": "checkpoints", "mountPath": point.checkpoint.dir},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    checkpoints: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": kube.checkpoint_pvc}}
        if kube.checkpoint_pvc
        else {"emptyDir": {}}
    )
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": kube.termination_grace_period_seconds,
        "automountServiceAccountToken": False,
    }
    if kube.service_account:
        pod["serviceAccountName"] = kube.service_account
    pod["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if kube.node_selector:
        pod["nodeSelector"] = dict(kube.node_selector)
    if kube.tolerations:
        pod["tolerations"] = [
            t.model_dump(mode="json", exclude_none=True) for t in kube.tolerations
        ]
    pod["containers"] = [container]
    pod["volumes"] = [
        {"name": "spec", "configMap": {"name": name}},
        {"name": "checkpoints", **checkpoints},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": kube.shm_size}},
        {"name": "tmp", "emptyDir": {}},
    ]
    job_spec: dict[str, Any] = {"backoffLimit": kube.backoff_limit}
    if kube.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = kube.active_deadline_seconds
    if kube.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = kube.ttl_seconds_after_finished
    job_spec["podReplacementPolicy"] = "Failed"
    job_spec["podFailurePolicy"] = {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER_NAME,
                    "operator": "In",
                    "values": [EXIT_INVALID_INPUT],
                },
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }
    job_spec["template"] = {"metadata": {"labels": dict(meta_labels)}, "spec": pod}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": kube.namespace, "labels": meta_labels},
        "spec": job_spec,
    }


def render(
    spec: JobSpec,
    num_envs_list: Sequence[int] | None = None,
    image: str | None = None,
    sweep_id: str | None = None,
) -> list[dict[str, Any]]:
    """One ConfigMap and one Job per env count, in that order (the ConfigMap first)."""
    sweep, points = plan(spec, num_envs_list, image, sweep_id)
    manifests: list[dict[str, Any]] = []
    for point in points:
        manifests.append(configmap_manifest(point.spec, point.job_name, sweep))
        manifests.append(job_manifest(point.spec, point.job_name, sweep))
    return manifests


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (the ConfigMap's spec), plain YAML otherwise, and no
    anchors/aliases for repeated objects (kubectl reads them, but people should not have to)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_presenter)


def to_yaml_stream(manifests: Iterable[Mapping[str, Any]]) -> str:
    """Manifests as one YAML stream (`---` before each), ready for `kubectl apply -f -`."""
    return "".join(
        "---\n"
        + yaml.dump(dict(m), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
        for m in manifests
    )


# ---- the client wrapper ---------------------------------------------------------------------


class KubeError(RuntimeError):
    """The cluster could not be reached or configured (user-facing message)."""


@dataclass
class ApplyResult:
    kind: str
    name: str
    status: str  # "created" | "exists" | "failed" | "skipped"
    message: str = ""


@dataclass
class ApplyReport:
    results: list[ApplyResult] = field(default_factory=list)

    def of(self, status: str, kind: str | None = None) -> list[str]:
        return [
            r.name for r in self.results if r.status == status and (kind is None or r.kind == kind)
        ]

    @property
    def ok(self) -> bool:
        return all(r.status in ("created", "exists") for r in self.results)


def kube_config_available(environ: Mapping[str, str] | None = None) -> bool:
    """Whether an in-cluster service account or a kubeconfig file is there (no client import)."""
    environ = os.environ if environ is None else environ
    if environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    ):
        return True
    paths = environ.get("KUBECONFIG", "").split(os.pathsep) if environ.get("KUBECONFIG") else []
    paths = [p for p in paths if p] or [os.path.expanduser("~/.kube/config")]
    return any(os.path.isfile(p) for p in paths)


def _kubeconfig_path() -> str:
    # Read $KUBECONFIG now: the client reads it once, at import, and would miss later changes.
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def current_namespace(context: str | None = None) -> str:
    """The namespace of the pod we run in, else of the kubeconfig's context, else "default"."""
    in_cluster = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.isfile(in_cluster):
        with open(in_cluster) as handle:
            return handle.read().strip() or "default"
    try:
        from kubernetes import config

        contexts, active = config.list_kube_config_contexts(config_file=_kubeconfig_path())
        chosen = next((c for c in contexts if c["name"] == context), active) if context else active
        return (chosen or {}).get("context", {}).get("namespace") or "default"
    except Exception:  # no kubeconfig, or an unreadable one: the API's own default
        return "default"


def _api_status(exc: BaseException) -> int | None:
    """The HTTP status of a Kubernetes ApiException (None: no answer from the API server)."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) and status > 0 else None


def _unreachable(exc: BaseException) -> bool:
    """No answer from the API server: refused, timed out, DNS, TLS (urllib3) or status 0."""
    if _api_status(exc) is not None:
        return False
    module = type(exc).__module__ or ""
    return (
        isinstance(exc, OSError)
        or module.startswith("urllib3")
        or type(exc).__name__ == "ApiException"
    )


def _api_reason(exc: BaseException) -> str:
    import json

    body = getattr(exc, "body", None)
    if body:
        try:
            message = json.loads(body).get("message")
            if message:
                return str(message)
        except (ValueError, AttributeError):
            pass
    return getattr(exc, "reason", None) or str(exc) or type(exc).__name__


class KubeClient:
    """Create, list, read logs of and delete our objects through the official client's
    `BatchV1Api` and `CoreV1Api` (or any objects with the same methods: tests pass fakes that
    record the bodies). Bodies are the plain dicts of `render`; results come back as dicts in
    the API's own (camelCase) form."""

    REQUEST_TIMEOUT = 15

    def __init__(self, batch: Any, core: Any, serializer: Any = None):
        self.batch = batch
        self.core = core
        self._serializer = serializer

    @classmethod
    def from_config(cls, context: str | None = None) -> KubeClient:
        """In-cluster config when running in a pod, else the kubeconfig (`$KUBECONFIG`)."""
        try:
            from kubernetes import client, config
            from kubernetes.config.config_exception import ConfigException
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise KubeError(f"the kubernetes client is not installed: {exc}") from None
        try:
            if os.environ.get("KUBERNETES_SERVICE_HOST") and context is None:
                config.load_incluster_config()
            else:
                config.load_kube_config(config_file=_kubeconfig_path(), context=context)
        except (ConfigException, OSError, TypeError) as exc:
            raise KubeError(
                f"no usable Kubernetes configuration ({exc}); set KUBECONFIG or use --backend local"
            ) from None
        api = client.ApiClient()
        return cls(client.BatchV1Api(api), client.CoreV1Api(api), serializer=api)

    # -- helpers --
    def _dict(self, obj: Any) -> dict[str, Any]:
        if isinstance(obj, dict):
            return obj
        if self._serializer is not None:
            return self._serializer.sanitize_for_serialization(obj)
        return obj.to_dict()

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, _request_timeout=self.REQUEST_TIMEOUT, **kwargs)
        except Exception as exc:
            if _unreachable(exc):
                raise KubeError(f"cannot reach the Kubernetes API server ({what}): {exc}") from exc
            raise

    # -- create --
    def create(self, manifest: Mapping[str, Any]) -> ApplyResult:
        """Create one object; an existing one of that name is left as it is ("exists").

        Raises `KubeError` when the API server does not answer; other API errors (invalid,
        forbidden, quota) come back as a "failed" result with the server's message.
        """
        kind, meta = manifest["kind"], manifest["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        if kind == "ConfigMap":
            func = self.core.create_namespaced_config_map
        elif kind == "Job":
            func = self.batch.create_namespaced_job
        else:
            raise ValueError(f"KubeClient creates ConfigMaps and Jobs, not {kind}")
        try:
            self._call(f"create {kind} {name}", func, namespace=namespace, body=dict(manifest))
        except KubeError:
            raise
        except Exception as exc:
            if _api_status(exc) is None:
                raise
            if _api_status(exc) == 409:
                return ApplyResult(kind, name, "exists", "exists, unchanged")
            return ApplyResult(kind, name, "failed", f"HTTP {_api_status(exc)}: {_api_reason(exc)}")
        return ApplyResult(kind, name, "created")

    def apply(self, manifests: Sequence[Mapping[str, Any]]) -> ApplyReport:
        """Create each object in order. A Job is skipped when its ConfigMap failed; when the
        API server stops answering, the rest is marked "skipped" and `KubeError` is raised
        with the report so far attached (`exc.report`)."""
        report = ApplyReport()
        failed_configmaps: set[str] = set()
        for index, manifest in enumerate(manifests):
            kind, name = manifest["kind"], manifest["metadata"]["name"]
            volumes = (
                manifest.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])
            )
            needs = {v["configMap"]["name"] for v in volumes if "configMap" in v}
            if kind == "Job" and needs & failed_configmaps:
                report.results.append(
                    ApplyResult(kind, name, "skipped", "its ConfigMap was not created")
                )
                continue
            try:
                result = self.create(manifest)
            except KubeError as exc:
                report.results.append(ApplyResult(kind, name, "failed", str(exc)))
                report.results.extend(
                    ApplyResult(m["kind"], m["metadata"]["name"], "skipped", "not attempted")
                    for m in manifests[index + 1 :]
                )
                exc.report = report  # type: ignore[attr-defined]
                raise
            if result.status == "failed" and kind == "ConfigMap":
                failed_configmaps.add(name)
            report.results.append(result)
        return report

    # -- read --
    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        result = self._call(
            "list Jobs",
            self.batch.list_namespaced_job,
            namespace=namespace,
            label_selector=selector,
        )
        return [self._dict(item) for item in self._dict(result).get("items", [])]

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        result = self._call(
            "list Pods", self.core.list_namespaced_pod, namespace=namespace, label_selector=selector
        )
        return [self._dict(item) for item in self._dict(result).get("items", [])]

    def list_configmaps(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        result = self._call(
            "list ConfigMaps",
            self.core.list_namespaced_config_map,
            namespace=namespace,
            label_selector=selector,
        )
        return [self._dict(item) for item in self._dict(result).get("items", [])]

    def pod_logs(self, namespace: str, pod: str, follow: bool = False) -> Iterator[str]:
        """The trainer container's log lines; with `follow`, streamed until the pod ends."""
        if not follow:
            text = self._call(
                f"logs of {pod}",
                self.core.read_namespaced_pod_log,
                name=pod,
                namespace=namespace,
                container=CONTAINER_NAME,
            )
            yield from str(text).splitlines()
            return
        try:
            response = self.core.read_namespaced_pod_log(
                name=pod,
                namespace=namespace,
                container=CONTAINER_NAME,
                follow=True,
                _preload_content=False,
            )
        except Exception as exc:
            if _unreachable(exc):
                raise KubeError(
                    f"cannot reach the Kubernetes API server (logs of {pod}): {exc}"
                ) from exc
            raise
        buffer = b""
        for chunk in response.stream(amt=4096):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace")
        if buffer:
            yield buffer.decode(errors="replace")

    # -- delete --
    def delete(self, kind: str, namespace: str, name: str) -> str:
        """Delete one Job (Background propagation: its pods go too) or ConfigMap.

        Returns "deleted" or "absent" (404)."""
        if kind == "Job":
            func, kwargs = self.batch.delete_namespaced_job, {"propagation_policy": "Background"}
        elif kind == "ConfigMap":
            func, kwargs = self.core.delete_namespaced_config_map, {}
        else:
            raise ValueError(f"KubeClient deletes ConfigMaps and Jobs, not {kind}")
        try:
            self._call(f"delete {kind} {name}", func, name=name, namespace=namespace, **kwargs)
        except KubeError:
            raise
        except Exception as exc:
            if _api_status(exc) is None:
                raise
            if _api_status(exc) == 404:
                return "absent"
            raise KubeError(
                f"delete {kind} {name}: HTTP {_api_status(exc)}: {_api_reason(exc)}"
            ) from exc
        return "deleted"


def selector(**labels_: str | None) -> str:
    """A label selector for our objects, e.g. `selector(sweep="x")`."""
    keys = {
        "sweep": LABEL_SWEEP,
        "instance": LABEL_INSTANCE,
        "job": LABEL_JOB_NAME,
        "num_envs": LABEL_NUM_ENVS,
    }
    parts = [f"{LABEL_NAME}={APP_NAME}"]
    parts += [f"{keys[k]}={v}" for k, v in labels_.items() if v]
    return ",".join(parts)


# ---- the Helm chart's values schema ----------------------------------------------------------


def chart_values_schema() -> dict[str, Any]:
    """`helm/pyboy-trainer/values.schema.json`: the job spec's JSON Schema under `spec`, the env
    counts and the chart's MLflow server, all closed (`additionalProperties: false`).

    Regenerate with `UPDATE_GOLDEN=1 pytest tests/test_helm_chart.py` (a test keeps it in sync).
    """
    job = JobSpec.model_json_schema()
    defs = job.pop("$defs", {})
    defs["JobSpec"] = job
    nullable_string = {"type": ["string", "null"]}
    server = {
        "type": "object",
        "additionalProperties": False,
        "description": "A small MLflow tracking server deployed with the release.",
        "properties": {
            "enabled": {
                "type": "boolean",
                "description": "Deploy the server; the Jobs then report to it.",
            },
            "image": {**nullable_string, "description": "Server image; empty: the trainer image."},
            "port": {
                "type": "integer",
                "minimum": 1,
                "maximum": 65535,
                "description": "Service port.",
            },
            "storage": {
                "type": "string",
                "pattern": r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$",
                "description": "Size of the PVC holding the SQLite store and the artifacts.",
            },
            "storageClassName": {
                **nullable_string,
                "description": "StorageClass of the PVC; empty: the cluster default.",
            },
            "allowedHosts": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Extra Host headers the server accepts (--allowed-hosts).",
            },
            "resources": {"type": "object", "description": "Container resources of the server."},
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "pyboy-trainer chart values",
        "type": "object",
        "additionalProperties": False,
        "required": ["spec"],
        "properties": {
            "global": {
                "type": "object",
                "description": "Helm's global values (when used as a subchart).",
            },
            "envs": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1},
                "uniqueItems": True,
                "description": "Env counts, one Job each; empty: spec.sweep.num_envs, else spec.env.num_envs.",
            },
            "spec": {
                "$ref": "#/$defs/JobSpec",
                "description": "The trainer job spec (see `trainer schema`).",
            },
            "mlflow": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "defaultTrackingUri": {
                        "type": "string",
                        "description": "MLFLOW_TRACKING_URI of the Jobs when the spec has none and no server is deployed.",
                    },
                    "server": server,
                },
            },
        },
        "$defs": defs,
    }


#: Chart-specific notes appended to a spec field's description in values.yaml.
_CHART_NOTES = {
    "name": "Jobs are named <name>-e<envs>-<8 hex digits of sha256(the ConfigMap's spec.yaml)>.",
    "checkpoint.dir": f"In the pod, a relative dir becomes {CHECKPOINT_DIR} (the checkpoint volume).",
    "mlflow.tracking_uri": "Empty: the chart's MLflow server when mlflow.server.enabled, "
    "else mlflow.defaultTrackingUri.",
    "kubernetes.namespace": "Ignored by the chart: objects go to the release namespace (helm --namespace).",
    "kubernetes.image": f"Empty: {IMAGE_REPOSITORY}:<the chart's appVersion>.",
}

_CHART_HEADER = """\
# Values of the pyboy-trainer chart. GENERATED by trainer.kube.chart_values_yaml() from the job
# spec's models (UPDATE_GOLDEN=1 pytest tests/test_helm_chart.py rewrites it): edit the models.
#
# `spec` is a trainer job spec: the same keys as configs/*.yaml, every key listed with its
# default (values.schema.json holds the spec's JSON Schema, so a typo fails `helm install`).
# The chart names each Job from the full spec exactly as `trainer render` does, so the chart
# and `trainer render` give the same objects for the same spec and env counts. A values file
# of yours only needs the keys you change, e.g.
#
#   spec:
#     name: zelda-ppo
#     ppo: {total_steps: 200000}
#   envs: [1, 2, 4, 8]

# One ConfigMap + one Job per env count: these counts, else spec.sweep.num_envs, else
# spec.env.num_envs (a number; `auto` cannot size a pod).
envs: []
"""

_CHART_FOOTER = f"""
mlflow:
  # MLFLOW_TRACKING_URI of the Jobs when spec.mlflow.tracking_uri is empty and no server is
  # deployed here: the Service of k8s/mlflow.yaml (the default of `trainer render` too).
  defaultTrackingUri: {DEFAULT_TRACKING_URI}
  server:
    # Deploy a small MLflow tracking server with the release (SQLite and artifacts on one PVC;
    # use k8s/mlflow.yaml for PostgreSQL). The Jobs then report to it.
    enabled: false
    # Empty: the trainer image (it has MLflow installed).
    image: null
    port: 5000
    storage: 5Gi
    storageClassName: null
    # Host headers the server accepts besides its Service names and localhost (MLflow >= 3
    # rejects other hosts), e.g. an ingress host.
    allowedHosts: []
    resources:
      requests: {{cpu: 250m, memory: 512Mi}}
      limits: {{cpu: "1", memory: 1Gi}}
"""


def _yaml_scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1000, sort_keys=False)
    return text.removesuffix("\n...\n").strip()


def chart_values_yaml(name: str = "pyboy") -> str:
    """`helm/pyboy-trainer/values.yaml`: the spec's defaults, each key with its description."""
    import textwrap

    from pydantic import BaseModel

    lines = [_CHART_HEADER, "spec:"]

    def walk(model: type[BaseModel], data: Mapping[str, Any], indent: str, prefix: str) -> None:
        for key, info in model.model_fields.items():
            dotted = prefix + key
            comment = " ".join(filter(None, [info.description, _CHART_NOTES.get(dotted)]))
            lines.extend(
                textwrap.wrap(
                    comment,
                    98 - len(indent),
                    initial_indent=f"{indent}# ",
                    subsequent_indent=f"{indent}# ",
                )
            )
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                lines.append(f"{indent}{key}:")
                walk(annotation, data[key], indent + "  ", dotted + ".")
            else:
                lines.append(f"{indent}{key}: {_yaml_scalar(data[key])}")

    walk(JobSpec, JobSpec(name=name).model_dump(mode="json"), "  ", "")
    return "\n".join(lines) + "\n" + _CHART_FOOTER
