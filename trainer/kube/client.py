"""The Kubernetes API client wrapper: create, list, read logs of and delete our objects.

The only module that imports the `kubernetes` client (lazily, in `KubeClient.from_config`): tests
pass fake `BatchV1Api`/`CoreV1Api` objects that record the bodies, the thinnest boundary there is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainer.errors import TrainerError, describe_failure
from trainer.kube.manifests import (
    APP_NAME,
    CONTAINER_NAME,
    LABEL_INSTANCE,
    LABEL_JOB_NAME,
    LABEL_NAME,
    LABEL_NUM_ENVS,
    LABEL_SWEEP,
)
from trainer.spec.kube_rules import DEFAULT_NAMESPACE


class KubeError(TrainerError):
    """The cluster could not be reached or configured (user-facing message)."""


class ApiError(KubeError):
    """The API server answered with an error (`status`, and its own `reason`)."""

    def __init__(self, what: str, status: int, reason: str):
        super().__init__(f"{what}: HTTP {status}: {reason}")
        self.status, self.reason = status, reason


@dataclass
class ApplyResult:
    kind: str
    name: str
    status: str  # "created" | "exists" | "failed" | "skipped"
    message: str = ""
    uid: str | None = None  # of a created object, from the server's answer


@dataclass
class ApplyReport:
    results: list[ApplyResult] = field(default_factory=list)
    #: The server's dry run rejected an object, so nothing was created.
    rejected_in_dry_run: bool = False

    def of(self, status: str, kind: str | None = None) -> list[str]:
        return [
            r.name for r in self.results if r.status == status and (kind is None or r.kind == kind)
        ]

    @property
    def ok(self) -> bool:
        return all(r.status in ("created", "exists") for r in self.results)


SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def kube_config_source(environ: Mapping[str, str] | None = None) -> str | None:
    """Where a Kubernetes configuration was found ("the in-cluster service account" or
    "kubeconfig PATH"), None when there is none (no client import)."""
    environ = os.environ if environ is None else environ
    if environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(SERVICE_ACCOUNT_TOKEN):
        return "the in-cluster service account"
    paths = environ.get("KUBECONFIG", "").split(os.pathsep) if environ.get("KUBECONFIG") else []
    paths = [p for p in paths if p] or [os.path.expanduser("~/.kube/config")]
    found = next((p for p in paths if os.path.isfile(p)), None)
    return f"kubeconfig {found}" if found else None


def kube_config_available(environ: Mapping[str, str] | None = None) -> bool:
    """Whether an in-cluster service account or a kubeconfig file is there (no client import)."""
    return kube_config_source(environ) is not None


def _kubeconfig_path() -> str:
    # Read $KUBECONFIG now: the client reads it once, at import, and would miss later changes.
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def current_namespace(context: str | None = None) -> str:
    """The namespace of the pod we run in, else the kubeconfig context's, else
    `DEFAULT_NAMESPACE` (pyboy-trainer, where `k8s/` installs; never the API's "default")."""
    in_cluster = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.isfile(in_cluster):
        with open(in_cluster) as handle:
            return handle.read().strip() or DEFAULT_NAMESPACE
    try:
        from kubernetes import config

        contexts, active = config.list_kube_config_contexts(config_file=_kubeconfig_path())
        chosen = next((c for c in contexts if c["name"] == context), active) if context else active
        return (chosen or {}).get("context", {}).get("namespace") or DEFAULT_NAMESPACE
    except Exception:  # no kubeconfig, or an unreadable one
        return DEFAULT_NAMESPACE


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
    body = getattr(exc, "body", None)
    if body:
        try:
            message = json.loads(body).get("message")
            if message:
                return str(message)
        except (ValueError, AttributeError):
            pass
    return getattr(exc, "reason", None) or str(exc) or type(exc).__name__


#: Said after a missing or broken kubeconfig: every Kubernetes command reaches it (status,
#: logs and cancel have no `--backend`), and only `launch` can run without a cluster.
WITHOUT_A_CLUSTER = " (`trainer launch --backend local` trains here without a cluster)"


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
            import yaml
            from kubernetes import client, config
            from kubernetes.config.config_exception import ConfigException
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise KubeError(f"the kubernetes client is not installed: {exc}") from None
        try:
            if os.environ.get("KUBERNETES_SERVICE_HOST") and context is None:
                config.load_incluster_config()
            else:
                config.load_kube_config(config_file=_kubeconfig_path(), context=context)
        except yaml.YAMLError as exc:  # the client parses the file with PyYAML and lets it raise
            mark = getattr(exc, "problem_mark", None)
            where = f"{_kubeconfig_path()}:{mark.line + 1}" if mark else _kubeconfig_path()
            raise KubeError(
                f"no usable Kubernetes configuration: {where} is not valid YAML "
                f"({getattr(exc, 'problem', None) or exc}); fix it or set KUBECONFIG to another "
                f"file{WITHOUT_A_CLUSTER}"
            ) from None
        except (ConfigException, OSError, TypeError) as exc:
            raise KubeError(
                f"no usable Kubernetes configuration ({exc}); set KUBECONFIG{WITHOUT_A_CLUSTER}"
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

    def _call(self, what: str, func: Any, *args: Any, stream: bool = False, **kwargs: Any) -> Any:
        """`func(...)`, with our request timeout unless it `stream`s. `KubeError` when the API
        server does not answer; `ApiError` (status, reason) when it answers with an error."""
        if not stream:
            kwargs["_request_timeout"] = self.REQUEST_TIMEOUT
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            status = _api_status(exc)
            if status is not None:
                raise ApiError(what, status, _api_reason(exc)) from exc
            if _unreachable(exc):
                host = getattr(getattr(self._serializer, "configuration", None), "host", None)
                raise KubeError(
                    f"cannot reach the Kubernetes API server{f' at {host}' if host else ''} "
                    f"({what}: {describe_failure(exc)}); check the kubeconfig's cluster and "
                    "context (`kubectl cluster-info`)"
                ) from exc
            raise

    # -- create --
    def create(self, manifest: Mapping[str, Any], dry_run: bool = False) -> ApplyResult:
        """Create one object; an existing one of that name is left as it is ("exists"). With
        `dry_run`, the server validates and admits it (`dryRun=All`) but stores nothing.

        Raises `KubeError` when the API server does not answer; other API errors (invalid,
        forbidden, quota) come back as a "failed" result with the server's message.
        """
        kind, meta = manifest["kind"], manifest["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        creators = {
            "ConfigMap": (self.core, "create_namespaced_config_map"),
            "Service": (self.core, "create_namespaced_service"),
            "Job": (self.batch, "create_namespaced_job"),
        }
        if kind not in creators:
            raise ValueError(f"KubeClient creates ConfigMaps, Services and Jobs, not {kind}")
        api, method = creators[kind]
        func = getattr(api, method)
        options = {"dry_run": "All"} if dry_run else {}
        try:
            answer = self._call(
                f"create {kind} {name}", func, namespace=namespace, body=dict(manifest), **options
            )
        except ApiError as exc:
            if exc.status == 409:
                return ApplyResult(kind, name, "exists", "exists, unchanged")
            return ApplyResult(kind, name, "failed", f"HTTP {exc.status}: {exc.reason}")
        uid = (self._dict(answer).get("metadata") or {}).get("uid") if answer is not None else None
        return ApplyResult(kind, name, "created", uid=uid)

    def dry_run(self, manifests: Sequence[Mapping[str, Any]]) -> ApplyReport | None:
        """Send every object with `dryRun=All`: the server runs its validation, defaulting and
        admission (quota, policies, RBAC) on each, and stores nothing. None when it would accept
        them all; else a report where the rejected objects are "failed" with the server's
        message and the others "skipped". `KubeError` (report attached) when it does not answer.
        """
        results = []
        for index, manifest in enumerate(manifests):
            try:
                results.append(self.create(manifest, dry_run=True))
            except KubeError as exc:
                exc.report = ApplyReport(  # type: ignore[attr-defined]
                    [*_skipped(manifests[:index], NOT_CREATED), _failed(manifest, str(exc))]
                    + _skipped(manifests[index + 1 :], NOT_CREATED),
                    rejected_in_dry_run=True,
                )
                raise
        if all(r.status != "failed" for r in results):
            return None
        return ApplyReport(
            [
                r if r.status == "failed" else _skipped([m], NOT_CREATED)[0]
                for r, m in zip(results, manifests, strict=True)
            ],
            rejected_in_dry_run=True,
        )

    def apply(self, manifests: Sequence[Mapping[str, Any]]) -> ApplyReport:
        """The whole sweep or nothing: a server-side dry run of every object first (`dry_run`);
        when it rejects any, nothing is created. Then each object in order. A Job is skipped when
        a ConfigMap it mounts (its spec, a shipped ROM) failed; when the API server stops answering, the rest is marked "skipped"
        and `KubeError` is raised with the report so far attached (`exc.report`)."""
        rejected = self.dry_run(manifests)
        if rejected is not None:
            return rejected
        report = ApplyReport()
        failed: set[tuple[str, str]] = set()
        for index, manifest in enumerate(manifests):
            kind, name = manifest["kind"], manifest["metadata"]["name"]
            needs = job_needs(manifest) if kind == "Job" else set()
            if needs & failed:
                what = " and ".join(sorted({k for k, _ in needs & failed}))
                report.results.append(
                    ApplyResult(kind, name, "skipped", f"its {what} was not created")
                )
                continue
            try:
                result = self.create(manifest)
            except KubeError as exc:
                report.results.append(_failed(manifest, str(exc)))
                report.results.extend(_skipped(manifests[index + 1 :], "not attempted"))
                exc.report = report  # type: ignore[attr-defined]
                raise
            if result.status == "failed":
                failed.add((kind, name))
            report.results.append(result)
            if kind == "Job" and result.status == "created" and result.uid:
                # The Job's UID exists only now: its ConfigMaps (and Service) become its
                # dependents, so the TTL's clean-up of the Job removes them too (garbage
                # collection).
                made = {(r.kind, r.name) for r in report.results}
                for dependent_kind, dependent in sorted(needs & made):
                    self.set_owner(manifest, result.uid, dependent, dependent_kind)
        return report

    def set_owner(
        self, job: Mapping[str, Any], uid: str, name: str, kind: str = "ConfigMap"
    ) -> None:
        """Make the ConfigMap or Service `name` a dependent of the Job `job` (uid `uid`): an
        ownerReference, so the garbage collector deletes it with the Job. A failure is not fatal
        (the Job runs; the object then outlives it, as before): `KubeError` only when the
        server is gone."""
        owner = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": job["metadata"]["name"],
            "uid": uid,
        }
        body = {"metadata": {"ownerReferences": [owner]}}
        patch = getattr(self.core, f"patch_namespaced_{_SNAKE[kind]}")
        try:
            self._call(
                f"set the owner of {kind} {name}",
                patch,
                name=name,
                namespace=job["metadata"]["namespace"],
                body=body,
            )
        except ApiError:
            pass

    # -- read --
    def list(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Our objects of `kind` (Job, Pod, ConfigMap, Event) matching a label selector (for
        events, a field selector: `involvedObject.name=...`)."""
        api, method = {
            "Job": (self.batch, "list_namespaced_job"),
            "Pod": (self.core, "list_namespaced_pod"),
            "ConfigMap": (self.core, "list_namespaced_config_map"),
            "Service": (self.core, "list_namespaced_service"),
        }[kind]
        func = getattr(api, method)
        result = self._call(f"list {kind}s", func, namespace=namespace, label_selector=selector)
        return [self._dict(item) for item in self._dict(result).get("items", [])]

    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return self.list("Job", namespace, selector)

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return self.list("Pod", namespace, selector)

    def list_configmaps(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return self.list("ConfigMap", namespace, selector)

    def list_events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The events about the object `name` (a Job or a pod), oldest first."""
        result = self._call(
            f"list the events of {name}",
            self.core.list_namespaced_event,
            namespace=namespace,
            field_selector=f"involvedObject.name={name}",
        )
        events = [self._dict(item) for item in self._dict(result).get("items", [])]
        return sorted(events, key=event_time)

    def pod_logs(self, namespace: str, pod: str, follow: bool = False) -> Iterator[str]:
        """The trainer container's log lines; with `follow`, streamed until the pod ends."""
        what, read = f"logs of {pod}", self.core.read_namespaced_pod_log
        where = {"name": pod, "namespace": namespace, "container": CONTAINER_NAME}
        if not follow:
            yield from str(self._call(what, read, **where)).splitlines()
            return
        response = self._call(what, read, **where, follow=True, stream=True, _preload_content=False)
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
        """Delete one Job (Background propagation: its pods go too), ConfigMap or Service.

        Returns "deleted" or "absent" (404)."""
        if kind == "Job":
            func, kwargs = self.batch.delete_namespaced_job, {"propagation_policy": "Background"}
        elif kind == "ConfigMap":
            func, kwargs = self.core.delete_namespaced_config_map, {}
        elif kind == "Service":
            func, kwargs = self.core.delete_namespaced_service, {}
        else:
            raise ValueError(f"KubeClient deletes ConfigMaps, Services and Jobs, not {kind}")
        try:
            self._call(f"delete {kind} {name}", func, name=name, namespace=namespace, **kwargs)
        except ApiError as exc:
            if exc.status == 404:
                return "absent"
            raise
        return "deleted"


_SNAKE = {"ConfigMap": "config_map", "Service": "service"}


def job_needs(job: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of what a Job's pods need before they can run: the ConfigMaps they mount
    (directly or projected) and the headless Service of their subdomain."""
    pod = job.get("spec", {}).get("template", {}).get("spec", {})
    volumes = pod.get("volumes", [])
    projected = [s for v in volumes for s in (v.get("projected") or {}).get("sources", [])]
    needs = {
        ("ConfigMap", v["configMap"]["name"]) for v in [*volumes, *projected] if "configMap" in v
    }
    if pod.get("subdomain"):
        needs.add(("Service", pod["subdomain"]))
    return needs


def event_time(event: Mapping[str, Any]) -> str:
    """When an event last happened (events.k8s.io's eventTime, else core's timestamps)."""
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _failed(manifest: Mapping[str, Any], message: str) -> ApplyResult:
    return ApplyResult(manifest["kind"], manifest["metadata"]["name"], "failed", message)


NOT_CREATED = "not created: the server's dry run rejected the sweep"


def _skipped(manifests: Sequence[Mapping[str, Any]], why: str) -> list[ApplyResult]:
    return [ApplyResult(m["kind"], m["metadata"]["name"], "skipped", why) for m in manifests]


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
