"""Pass-through pod settings of `kubernetes.*`: volumes, volume mounts, env, affinity.

Typed after the core/v1 API (field names as Kubernetes spells them, so a snippet from the
Kubernetes docs pastes as is), checked with the API server's rules where a mistake would be a
422 or a pod that never starts (`kube_rules`), and rendered unchanged into the pod. Volumes are
the kinds Pod Security "restricted" admits (the trainer pod passes it): configMap, secret,
persistentVolumeClaim, emptyDir typed; csi, projected, downwardAPI and ephemeral passed as given
and checked by the API server (the launcher's dry run) and, in tests, the official schemas.

Imports nothing of ours but `kube_rules` and `base`.
"""

from __future__ import annotations

import posixpath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from trainer.spec import kube_rules as k8s
from trainer.spec.base import SpecModel, raise_problem


def _object_name(value: str) -> str:
    raise_problem(k8s.dns1123_subdomain_problem(value))
    return value


#: Names of Secrets, ConfigMaps, PersistentVolumeClaims (`IsDNS1123Subdomain`).
ObjectName = Annotated[
    str, AfterValidator(_object_name), Field(json_schema_extra=k8s.schema_dns1123_subdomain())
]
FileMode = Annotated[int, Field(ge=0, le=0o777)]


class KeyToPath(SpecModel):
    key: str = Field(..., min_length=1, description="Key of the ConfigMap or Secret.")
    path: str = Field(..., min_length=1, description="Relative file path in the volume.")
    mode: FileMode | None = Field(None, description="File mode (octal 0644 is 420).")

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        raise_problem(_relative_path_problem(value))
        return value


class ConfigMapVolume(SpecModel):
    name: ObjectName = Field(..., description="ConfigMap name.")
    items: list[KeyToPath] | None = Field(None, description="Keys to project (default: all).")
    defaultMode: FileMode | None = Field(None, description="File mode.")  # noqa: N815
    optional: bool | None = Field(None, description="Start the pod without it.")


class SecretVolume(SpecModel):
    secretName: ObjectName = Field(..., description="Secret name.")  # noqa: N815
    items: list[KeyToPath] | None = Field(None, description="Keys to project (default: all).")
    defaultMode: FileMode | None = Field(None, description="File mode.")  # noqa: N815
    optional: bool | None = Field(None, description="Start the pod without it.")


class PersistentVolumeClaimVolume(SpecModel):
    claimName: ObjectName = Field(..., description="PersistentVolumeClaim name.")  # noqa: N815
    readOnly: bool | None = Field(None, description="Mount it read-only.")  # noqa: N815


class EmptyDirVolume(SpecModel):
    medium: Literal["", "Memory"] | None = Field(None, description="'' (node disk) or Memory.")
    sizeLimit: str | None = Field(  # noqa: N815
        None, description="Size limit (a quantity).", pattern=k8s.QUANTITY.pattern
    )


#: The volume sources a pod may use under Pod Security "restricted" (pod-security-standards).
VOLUME_SOURCES = (
    "configMap",
    "secret",
    "persistentVolumeClaim",
    "emptyDir",
    "csi",
    "projected",
    "downwardAPI",
    "ephemeral",
)


class Volume(SpecModel):
    """A pod volume: a name and exactly one source."""

    name: str = Field(
        ...,
        description="Volume name (a DNS-1123 label), referenced by `kubernetes.volume_mounts`.",
        json_schema_extra=k8s.schema_dns1123_label(),
    )
    configMap: ConfigMapVolume | None = Field(None, description="A ConfigMap's keys as files.")  # noqa: N815
    secret: SecretVolume | None = Field(None, description="A Secret's keys as files.")
    persistentVolumeClaim: PersistentVolumeClaimVolume | None = Field(  # noqa: N815
        None, description="A PersistentVolumeClaim (e.g. ROMs on shared storage)."
    )
    emptyDir: EmptyDirVolume | None = Field(None, description="A scratch folder.")  # noqa: N815
    csi: dict[str, Any] | None = Field(None, description="A CSI inline volume, as in core/v1.")
    projected: dict[str, Any] | None = Field(None, description="A projected volume, as in core/v1.")
    downwardAPI: dict[str, Any] | None = Field(  # noqa: N815
        None, description="Downward API files, as in core/v1."
    )
    ephemeral: dict[str, Any] | None = Field(
        None, description="A generic ephemeral volume, as in core/v1."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        raise_problem(k8s.dns1123_label_problem(value))
        if value in k8s.POD_VOLUMES:
            raise ValueError(
                f"{value!r} is one of the pod's own volumes ({', '.join(k8s.POD_VOLUMES)}); "
                "pick another name"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        given = [s for s in VOLUME_SOURCES if getattr(self, s) is not None]
        if len(given) != 1:
            raise ValueError(
                f"volume {self.name!r} needs exactly one source of {', '.join(VOLUME_SOURCES)} "
                f"(got {', '.join(given) or 'none'})"
            )
        return self


class VolumeMount(SpecModel):
    name: str = Field(..., description="Name of a volume of `kubernetes.volumes`.")
    mountPath: str = Field(  # noqa: N815
        ...,
        description="Absolute path in the container (not one of the pod's own mounts).",
        json_schema_extra={"pattern": "^/", **k8s.schema_mount_path()},
    )
    readOnly: bool | None = Field(None, description="Mount read-only.")  # noqa: N815
    subPath: str | None = Field(None, description="Path within the volume (relative).")  # noqa: N815

    @field_validator("mountPath")
    @classmethod
    def _mount_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path (e.g. /roms)")
        raise_problem(k8s.mount_path_problem(value))
        return value

    @field_validator("subPath")
    @classmethod
    def _sub_path(cls, value: str | None) -> str | None:
        if value is not None:
            raise_problem(_relative_path_problem(value))
        return value


class KeySelector(SpecModel):
    name: ObjectName = Field(..., description="Secret or ConfigMap name.")
    key: str = Field(..., min_length=1, description="Key in it.")
    optional: bool | None = Field(None, description="Start the pod without it.")


class FieldSelector(SpecModel):
    fieldPath: str = Field(..., description="e.g. metadata.name, spec.nodeName.")  # noqa: N815
    apiVersion: str | None = Field(None, description="Default v1.")  # noqa: N815


class EnvVarSource(SpecModel):
    secretKeyRef: KeySelector | None = Field(None, description="A Secret's key.")  # noqa: N815
    configMapKeyRef: KeySelector | None = Field(None, description="A ConfigMap's key.")  # noqa: N815
    fieldRef: FieldSelector | None = Field(None, description="A field of the pod.")  # noqa: N815

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        given = [k for k in ("secretKeyRef", "configMapKeyRef", "fieldRef") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "valueFrom needs exactly one of secretKeyRef, configMapKeyRef, fieldRef "
                f"(got {', '.join(given) or 'none'})"
            )
        return self


class EnvVar(SpecModel):
    name: str = Field(
        ...,
        description="Variable name (not one the trainer sets itself).",
        json_schema_extra={
            "pattern": k8s.ENV_VAR_NAME.pattern,
            "not": {"anyOf": [{"enum": list(k8s.POD_ENV)}, {"pattern": "^TRAINER?_"}]},
        },
    )
    value: str | None = Field(None, description="Its value.")
    valueFrom: EnvVarSource | None = Field(None, description="Or where to read it from.")  # noqa: N815

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        raise_problem(k8s.env_var_name_problem(value))
        if value in k8s.POD_ENV or value.startswith(("TRAIN_", "TRAINER_")):
            raise ValueError(
                f"{value!r} is set by the trainer itself (reserved: {', '.join(k8s.POD_ENV)}, "
                "TRAIN_*, TRAINER_*); change the spec's setting instead"
            )
        return value

    @model_validator(mode="after")
    def _value_or_source(self) -> EnvVar:
        if self.value is not None and self.valueFrom is not None:
            raise ValueError(f"give value or valueFrom, not both (variable {self.name!r})")
        return self


class Affinity(SpecModel):
    """Pod affinity rules, each as in core/v1 (checked by the API server and the official
    schemas)."""

    nodeAffinity: dict[str, Any] | None = Field(None, description="Node affinity.")  # noqa: N815
    podAffinity: dict[str, Any] | None = Field(None, description="Pod affinity.")  # noqa: N815
    podAntiAffinity: dict[str, Any] | None = Field(None, description="Pod anti-affinity.")  # noqa: N815


def _relative_path_problem(path: str) -> str | None:
    if path.startswith("/") or ".." in path.split("/"):
        return "must be a relative path without '..' elements"
    return None


def mounts_problem(volumes: list[Volume], mounts: list[VolumeMount]) -> str | None:
    """Between `kubernetes.volumes` and `volume_mounts`: unique volume names and mount paths,
    every mount naming a volume (`ValidateVolumeMounts`)."""
    names = [v.name for v in volumes]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        return f"kubernetes.volumes: duplicate names: {', '.join(dupes)}"
    for mount in mounts:
        if mount.name not in names:
            return (
                f"kubernetes.volume_mounts: {mount.mountPath} names volume {mount.name!r}, which is not in "
                f"kubernetes.volumes ({', '.join(names) or 'none'})"
            )
    paths = [posixpath.normpath(m.mountPath) for m in mounts]
    dupes = sorted({p for p in paths if paths.count(p) > 1})
    if dupes:
        return f"kubernetes.volume_mounts: duplicate mountPath: {', '.join(dupes)}"
    return None


def nested_path(a: str, b: str) -> bool:
    """Whether one absolute path is the other or lies under it."""
    a, b = posixpath.normpath(a), posixpath.normpath(b)
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")
