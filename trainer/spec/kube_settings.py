"""The spec's `resources` and `kubernetes` sections: what the launcher, the renderer and the Helm
chart turn into the Job's pod (requests, image, scheduling, mounts, metadata), checked with the
API server's rules (`kube_rules`) so a mistake is said before any Job is sent.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from trainer.spec import kube_rules as k8s
from trainer.spec.base import SpecModel, raise_problem
from trainer.spec.kube_rules import QUANTITY, parse_quantity
from trainer.spec.pod import Affinity, EnvVar, Volume, VolumeMount, mounts_problem

#: The smallest CPU amount Kubernetes expresses: 1m ("precision finer than 1m is not allowed").
MIN_CPU = 0.001


def _quantity_text(value: Any) -> Any:
    """A YAML number where a memory quantity goes: said plainly, not "must be a valid string"."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(
            "must be a Kubernetes quantity with its unit, such as 512Mi or 1.5Gi (a bare number "
            "would be bytes: quote it if that is meant)"
        )
    return value


def _at_least_a_byte(value: str) -> str:
    if parse_quantity(value) < 1:  # e.g. '1m': a thousandth of a byte, rendered as '0'
        raise ValueError(f"must be at least 1 byte, such as 512Mi or 1.5Gi (got {value!r})")
    return value


#: Memory (`resources.*_memory*`, `kubernetes.shm_size`): a Kubernetes quantity of bytes.
MemoryQuantity = Annotated[
    str,
    Field(pattern=QUANTITY.pattern),
    BeforeValidator(_quantity_text),
    AfterValidator(_at_least_a_byte),
]


def string_branches(schema: dict[str, Any], pattern: str) -> None:
    """A validator's pattern on the string branch of an optional field's JSON Schema (the
    chart's values schema then refuses what the spec refuses)."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            branch["pattern"] = pattern


class ResourcesSpec(SpecModel):
    # ≥ 1m: Kubernetes counts CPU in millicores, and less rendered as a request of '0'.
    cpu_per_env: float = Field(
        1.0, ge=MIN_CPU, description="CPU cores requested per environment (at least 0.001)."
    )
    learner_cpu: float = Field(
        1.0, ge=MIN_CPU, description="CPU cores requested for the learner (at least 0.001)."
    )
    memory_per_env: MemoryQuantity = Field(
        "256Mi", description="Memory requested per environment (Kubernetes quantity)."
    )
    learner_memory: MemoryQuantity = Field(
        "1Gi", description="Memory requested for the learner (Kubernetes quantity)."
    )
    gpu: int = Field(0, ge=0, description="NVIDIA GPUs (`nvidia.com/gpu`) for the learner.")


class TolerationSpec(SpecModel):
    """A pod toleration, checked as the API server does (`ValidateTolerations`)."""

    model_config = ConfigDict(json_schema_extra={"allOf": k8s.schema_toleration_rules()})

    key: str | None = Field(
        None,
        description="Taint key (a label key); empty: every taint, with operator Exists.",
        json_schema_extra=k8s.schema_qualified_name(),
    )
    operator: Literal["Exists", "Equal"] = Field(
        "Equal", description="Equal (key and value match) or Exists (the key is there)."
    )
    value: str | None = Field(
        None,
        description="Taint value with Equal (a label value); empty with Exists.",
        json_schema_extra={"pattern": k8s.schema_labels()["additionalProperties"]["pattern"]},
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect; empty: every effect."
    )
    tolerationSeconds: int | None = Field(  # noqa: N815
        None,
        description="With effect NoExecute only: how long the pod stays bound after the taint.",
    )

    @model_validator(mode="after")
    def _api_rules(self) -> TolerationSpec:
        raise_problem(
            k8s.toleration_problem(
                self.key, self.operator, self.value, self.effect, self.tolerationSeconds
            )
        )
        return self


class KubernetesSpec(SpecModel):
    namespace: str | None = Field(
        None,
        description="Namespace for the Job and its ConfigMaps (a DNS-1123 label); unset: the "
        "kubeconfig context's namespace (a pod's own when launched from a pod), else "
        f"`{k8s.DEFAULT_NAMESPACE}`, where `k8s/` installs; the chart uses the release namespace.",
        json_schema_extra=k8s.schema_dns1123_label(),
    )
    image: str | None = Field(
        None,
        json_schema_extra=lambda schema: string_branches(schema, k8s.IMAGE_REFERENCE.pattern),
        description="Trainer image; default: the launcher's built-in default.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Image pull policy."
    )
    backoff_limit: int = Field(
        3, ge=0, le=k8s.INT32_MAX, description="Pod retries before the Job fails."
    )
    ttl_seconds_after_finished: int | None = Field(
        86400,
        ge=0,
        le=k8s.INT32_MAX,
        description="Delete the finished Job after this many seconds.",
    )
    active_deadline_seconds: int | None = Field(
        None, ge=1, description="Fail the Job after this much wall time."
    )
    termination_grace_period_seconds: int = Field(
        60, ge=5, description="Time between SIGTERM and SIGKILL (the trainer checkpoints then)."
    )
    service_account: str | None = Field(
        None,
        description="ServiceAccount for the pod (a DNS-1123 subdomain).",
        json_schema_extra=k8s.schema_dns1123_subdomain(),
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Node selector: node label keys and values.",
        json_schema_extra=k8s.schema_labels(),
    )
    tolerations: list[TolerationSpec] = Field(default_factory=list, description="Tolerations.")
    checkpoint_pvc: str | None = Field(
        None,
        description="PersistentVolumeClaim mounted at checkpoint.dir (keeps checkpoints across "
        "pods; a DNS-1123 subdomain).",
        json_schema_extra=k8s.schema_dns1123_subdomain(),
    )
    mlflow_secret: str | None = Field(
        None,
        description="Secret whose keys (e.g. MLFLOW_TRACKING_USERNAME/PASSWORD) become env vars; "
        "values never appear in the spec (a DNS-1123 subdomain).",
        json_schema_extra=k8s.schema_dns1123_subdomain(),
    )
    shm_size: MemoryQuantity = Field(
        "1Gi", description="Size limit of the in-memory /dev/shm volume."
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels on the Job and pod (Kubernetes label keys and values).",
        json_schema_extra=k8s.schema_labels(),
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations on the Job and pod, e.g. "
        '`cluster-autoscaler.kubernetes.io/safe-to-evict: "false"`.',
        json_schema_extra=k8s.schema_annotations(),
    )
    pod_annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations on the pod only (over `annotations` for the same key), e.g. "
        "for a service mesh or a log collector.",
        json_schema_extra=k8s.schema_annotations(),
    )
    volumes: list[Volume] = Field(
        default_factory=list,
        description="Extra pod volumes, as in core/v1 (configMap, secret, persistentVolumeClaim, "
        "emptyDir, csi, projected, downwardAPI, ephemeral: the kinds Pod Security 'restricted' "
        "admits), e.g. a PVC holding your ROMs.",
    )
    volume_mounts: list[VolumeMount] = Field(
        default_factory=list,
        description="Mounts of `kubernetes.volumes` into the trainer container, as in core/v1 "
        "(`name`, `mountPath`, `readOnly`, `subPath`).",
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        description="Extra environment variables of the trainer container, as in core/v1 "
        "(`value`, or `valueFrom` a secretKeyRef, configMapKeyRef or fieldRef); not the ones the "
        "trainer sets itself.",
    )
    image_pull_secrets: list[str] = Field(
        default_factory=list,
        description="Secrets (docker-registry) to pull a private image with, by name.",
        json_schema_extra={"items": k8s.schema_dns1123_subdomain()},
    )
    affinity: Affinity | None = Field(
        None,
        description="Pod affinity (nodeAffinity, podAffinity, podAntiAffinity), as in core/v1.",
    )
    distributed_backend: Literal["job", "pytorchjob"] | None = Field(
        None,
        description="What runs the pods of one run: unset or `job`, a batch/v1 Job (with several "
        "replicas an Indexed Job plus a headless Service: plain Kubernetes); `pytorchjob`, a "
        "Kubeflow PyTorchJob (kubeflow.org/v1: one Master and replicas - 1 Workers; needs the "
        "Kubeflow training operator). `trainer launch` creates Jobs only: apply a PyTorchJob "
        "with `trainer render SPEC | kubectl apply -f -` or the Helm chart.",
    )
    queue: str | None = Field(
        None,
        description="Kueue LocalQueue to submit to (label `kueue.x-k8s.io/queue-name`, a DNS-1123 "
        "label): the Job is created suspended and Kueue starts it when the queue admits it.",
        json_schema_extra=k8s.schema_dns1123_label(),
    )
    priority_class: str | None = Field(
        None,
        description="PriorityClass of the pod (`priorityClassName`, a DNS-1123 subdomain): who "
        "is preempted first on a full cluster.",
        json_schema_extra=k8s.schema_dns1123_subdomain(),
    )

    @field_validator("namespace", "queue")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if value is not None:
            raise_problem(k8s.dns1123_label_problem(value))
        return value

    @field_validator("service_account", "checkpoint_pvc", "mlflow_secret", "priority_class")
    @classmethod
    def _object_name(cls, value: str | None) -> str | None:
        if value is not None:
            raise_problem(k8s.dns1123_subdomain_problem(value))
        return value

    @field_validator("image_pull_secrets")
    @classmethod
    def _secret_names(cls, value: list[str]) -> list[str]:
        for name in value:
            raise_problem(k8s.dns1123_subdomain_problem(name))
        return value

    @model_validator(mode="after")
    def _volumes_and_env(self) -> KubernetesSpec:
        raise_problem(mounts_problem(self.volumes, self.volume_mounts))
        names = [e.name for e in self.env]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"kubernetes.env: duplicate names: {', '.join(dupes)}")
        return self

    @field_validator("labels", "node_selector")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        raise_problem(k8s.labels_problem(value))
        return value

    @field_validator("annotations", "pod_annotations")
    @classmethod
    def _annotations(cls, value: dict[str, str]) -> dict[str, str]:
        raise_problem(k8s.annotations_problem(value))
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and (not value or value != value.strip()):
            raise ValueError("must be an image reference without leading or trailing spaces")
        if value is not None:
            raise_problem(k8s.image_reference_problem(value))
        return value
