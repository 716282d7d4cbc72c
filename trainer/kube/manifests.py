"""Job spec → Kubernetes manifests: pure functions returning plain dicts.

One sweep point (a `JobSpec` with a fixed `env.num_envs`) becomes one ConfigMap holding the
point's spec and one `batch/v1` Job running `trainer run /etc/trainer/spec.yaml` (and, for a
ROM or save state on this machine, ConfigMaps holding them: `trainer.kube.game`). The Helm chart
in `helm/pyboy-trainer/` renders the very same objects; `tests/test_helm_chart.py` compares them.

A point of more than one replica (`distributed.replicas`) is an Indexed Job of that many pods
plus a headless Service named like the Job: each pod's hostname is `<job>-<index>` and its
subdomain the Service, so rank 0's rendezvous host `<job>-0.<job>` resolves in the namespace
(https://kubernetes.io/docs/concepts/workloads/controllers/job/#completion-mode). `trainer run`
starts torchrun from `TRAINER_RDZV_ENDPOINT` and `TRAINER_RDZV_ID`, which the pod gets here.
With `kubernetes.distributed_backend: pytorchjob` it is a Kubeflow PyTorchJob instead
(`trainer.kube.pytorchjob`), whose operator makes the pods and Services; rank 0 is `<job>-master-0`.

Names. Jobs are immutable, so a Job's name carries its config, never a timestamp:
`{spec.name}-e{num_envs}[x{replicas}]-{digest[:8]}`, where the digest is the SHA-256 of the ConfigMap's
`spec.yaml` text (`trainer.spec.identity`), which Helm reproduces with `toPrettyJson` and
`sha256sum`. Relaunching the same spec therefore yields the same names (idempotent), and any
change yields new Jobs. The label `pyboy-trainer/run-id` (`trainer.spec.run_id`) hashes only
the training settings: Jobs that continue one MLflow run and checkpoint folder share it.

Imports `trainer.spec` and `trainer.sweep` only: no client, no torch, no PyBoy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from trainer import __version__
from trainer.errors import ExitCode
from trainer.kube import game, pytorchjob
from trainer.kube.pytorchjob import is_pytorchjob
from trainer.kube.resources import pod_resources
from trainer.kube.yaml_stream import to_yaml_stream as to_yaml_stream  # the output format
from trainer.spec import (
    ENV_JOB_NAME,
    ENV_RDZV_ENDPOINT,
    ENV_RDZV_ID,
    ENV_SWEEP_ID,
    JobSpec,
    run_id,
    spec_document,
)
from trainer.spec.kube_rules import (
    CHECKPOINT_DIR,
    DEFAULT_NAMESPACE,
    GAME_DIR,
    SHM_DIR,
    SPEC_DIR,
    TMP_DIR,
)
from trainer.spec.models import point_changes
from trainer.sweep import SweepPoint, plan

# ---- names and defaults (docs/kubernetes.md documents each) ---------------------------------
#: The Kubernetes minor versions we support: every object we ship is validated against each one's
#: official schemas (tests/test_kube_versions.py); the chart's `kubeVersion` and the docs say the
#: same (a test checks). The oldest is set by `podFailurePolicy`, GA in 1.31.
KUBERNETES_VERSIONS = ("1.31", "1.32", "1.33", "1.34", "1.35")
APP_NAME = "pyboy-trainer"
#: `app.kubernetes.io/managed-by` on what `trainer render`/`launch` make (the chart writes "Helm").
MANAGED_BY = "trainer"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_SWEEP = "pyboy-trainer/sweep-id"
LABEL_NUM_ENVS = "pyboy-trainer/num-envs"
#: Pods of one run (distributed.replicas): "1" for a plain Job.
LABEL_REPLICAS = "pyboy-trainer/replicas"
LABEL_RUN_ID = "pyboy-trainer/run-id"
#: Kueue's queue label: a Job carrying it is admitted (unsuspended) by Kueue.
#: https://kueue.sigs.k8s.io/docs/tasks/run/jobs/
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"
#: Set by the Job controller on every pod of a Job (Kubernetes ≥ 1.27).
LABEL_JOB_NAME = "batch.kubernetes.io/job-name"
#: Set by the Job controller on every pod of an Indexed Job: the pod's index (its rank group).
LABEL_JOB_INDEX = "batch.kubernetes.io/job-completion-index"
#: The port name of the headless Service of a run of several replicas.
RENDEZVOUS_PORT_NAME = "rendezvous"
INT32_MAX = 2**31 - 1

IMAGE_REPOSITORY = "ghcr.io/pyboy-trainer/trainer"
DEFAULT_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"
#: The MLflow Service of `k8s/mlflow.yaml`, reachable from every namespace of the cluster.
DEFAULT_TRACKING_URI = "http://mlflow.pyboy-trainer.svc:5000"

CONTAINER_NAME = "trainer"
SPEC_KEY = "spec.yaml"
SPEC_PATH = f"{SPEC_DIR}/{SPEC_KEY}"
#: The image's numeric non-root user and group (Dockerfile `USER 10001:10001`).
RUN_AS_USER = 10001


def pod_spec(
    spec: JobSpec, num_envs: int, image: str | None = None, replicas: int | None = None
) -> JobSpec:
    """The spec one pod runs: fixed `num_envs` (and `replicas`), no sweep, the image resolved,
    `checkpoint.dir`
    absolute (relative dirs move to `CHECKPOINT_DIR`, where the checkpoint volume is mounted),
    and a ROM or save state on this machine replaced by its shipped copy (`trainer.kube.game`).
    An unset namespace is `DEFAULT_NAMESPACE` here; the CLI fills in the kubeconfig context's
    first (`trainer.cli.kubernetes`)."""
    changes: dict[str, Any] = {
        **point_changes(spec, num_envs, replicas),
        "kubernetes.image": image or spec.kubernetes.image or DEFAULT_IMAGE,
        "kubernetes.namespace": spec.kubernetes.namespace or DEFAULT_NAMESPACE,
    }
    for shipped in game.local_game_files(spec):
        changes[shipped.field] = shipped.mounted
    if not PurePosixPath(spec.checkpoint.dir).is_absolute():
        changes["checkpoint.dir"] = CHECKPOINT_DIR
    group = f" and replicas={replicas}" if replicas and replicas > 1 else ""
    return spec.updated(changes, origin=f"{spec.name} with num_envs={num_envs}{group}")


def plan_pods(
    spec: JobSpec,
    num_envs_list: Sequence[int] | None = None,
    image: str | None = None,
    sweep: str | None = None,
    replicas_list: Sequence[int] | None = None,
) -> tuple[str, list[SweepPoint]]:
    """The sweep's points as pods run them (`pod_spec`)."""
    return plan(
        spec,
        num_envs_list,
        replicas_list=replicas_list,
        sweep=sweep,
        point_spec=lambda base, n, r: pod_spec(base, n, image, r),
    )


def learner_threads(point: JobSpec) -> int:
    """`OMP_NUM_THREADS`: the learner's CPU request, whole cores, at least 1."""
    return max(1, int(point.resources.learner_cpu))


def run_env(point: JobSpec, name: str, sweep: str, tracking_uri: str | None) -> dict[str, str]:
    """Variables a run gets in a pod and as a local process alike (run identity, threads, MLflow)."""
    env = {
        ENV_JOB_NAME: name,
        ENV_SWEEP_ID: sweep,
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
        LABEL_REPLICAS: str(point.distributed.replicas),
        LABEL_RUN_ID: run_id(point),
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


def game_configmap(point: JobSpec, name: str, sweep: str, shipped: game.GameFile) -> dict[str, Any]:
    """The ConfigMap `<job>-rom` (or `-state`) holding one shipped file as binaryData."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": game.configmap_name(name, shipped.field),
            "namespace": point.kubernetes.namespace,
            "labels": labels(point, sweep),
        },
        "binaryData": shipped.binary_data(),
    }


def container_name(point: JobSpec) -> str:
    return pytorchjob.CONTAINER_NAME if is_pytorchjob(point) else CONTAINER_NAME


def rendezvous_host(point: JobSpec, name: str) -> str:
    """Rank 0's stable DNS name: the Indexed Job's pod `<job>-0` in the headless Service's
    subdomain, or the Service the training operator makes for a PyTorchJob's Master."""
    if is_pytorchjob(point):
        return pytorchjob.master_host(name)
    return f"{name}-0.{service_name(name)}"


def rendezvous_env(point: JobSpec, name: str) -> dict[str, str]:
    """With more than one replica: torchrun's rendezvous endpoint at rank 0's host, and id."""
    if point.distributed.replicas == 1:
        return {}
    return {
        ENV_RDZV_ENDPOINT: f"{rendezvous_host(point, name)}:{point.distributed.port}",
        ENV_RDZV_ID: name,
    }


def service_name(job: str) -> str:
    """The headless Service of a Job of several replicas: the Job's own name."""
    return job


def service_manifest(point: JobSpec, name: str, sweep: str) -> dict[str, Any]:
    """The headless Service that gives the pods of one Indexed Job DNS names: no cluster IP,
    its pods' addresses published before they are ready (the rendezvous runs before any pod
    could be), selected by the label the Job controller puts on them."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(name),
            "namespace": point.kubernetes.namespace,
            "labels": labels(point, sweep),
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {LABEL_JOB_NAME: name},
            "ports": [
                {
                    "name": RENDEZVOUS_PORT_NAME,
                    "port": point.distributed.port,
                    "targetPort": point.distributed.port,
                    "protocol": "TCP",
                }
            ],
        },
    }


def container_manifest(point: JobSpec, name: str, sweep: str) -> dict[str, Any]:
    """The trainer container: `trainer run` on the mounted spec, the run's env, resources,
    a locked-down security context and the mounts of `pod_manifest`'s volumes."""
    kube = point.kubernetes
    env = run_env(point, name, sweep, DEFAULT_TRACKING_URI)
    env.update(rendezvous_env(point, name))
    env.update({"HOME": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib"})
    container: dict[str, Any] = {
        "name": container_name(point),
        "image": kube.image,
        "imagePullPolicy": kube.image_pull_policy,
        "args": ["run", SPEC_PATH],
        "env": [{"name": k, "value": v} for k, v in env.items()]
        + [e.model_dump(mode="json", exclude_none=True) for e in kube.env],
    }
    if kube.mlflow_secret:
        container["envFrom"] = [{"secretRef": {"name": kube.mlflow_secret}}]
    if is_pytorchjob(point):
        container["ports"] = [pytorchjob.rendezvous_port(point)]
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
        {"name": "dshm", "mountPath": SHM_DIR},
        {"name": "tmp", "mountPath": TMP_DIR},
    ]
    if game.shipped_fields(point):
        container["volumeMounts"].append({"name": "game", "mountPath": GAME_DIR, "readOnly": True})
    container["volumeMounts"] += [
        m.model_dump(mode="json", exclude_none=True) for m in kube.volume_mounts
    ]
    return container


def pod_manifest(point: JobSpec, name: str, sweep: str) -> dict[str, Any]:
    """The pod template's spec: not restarted in place by a Job (a PyTorchJob does), non-root,
    the trainer not PID 1, and the volumes: the spec's ConfigMap, checkpoints (a PVC when
    given), /dev/shm in memory, /tmp."""
    kube = point.kubernetes
    checkpoints: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": kube.checkpoint_pvc}}
        if kube.checkpoint_pvc
        else {"emptyDir": {}}
    )
    pod: dict[str, Any] = {
        "restartPolicy": pytorchjob.RESTART_POLICY if is_pytorchjob(point) else "Never",
        "terminationGracePeriodSeconds": kube.termination_grace_period_seconds,
        "automountServiceAccountToken": False,
        # The pause container is PID 1, not the trainer: PID 1 never gets a signal it has no
        # handler for, so a SIGTERM before Python installs one (its first ~0.1 s) would be lost
        # and the pod SIGKILLed after the grace period. It also reaps orphaned processes.
        "shareProcessNamespace": True,
    }
    if has_headless_service(point):
        pod["subdomain"] = service_name(name)
    if kube.service_account:
        pod["serviceAccountName"] = kube.service_account
    if kube.priority_class:
        pod["priorityClassName"] = kube.priority_class
    if kube.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in kube.image_pull_secrets]
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
    if kube.affinity is not None:
        pod["affinity"] = kube.affinity.model_dump(mode="json", exclude_none=True)
    pod["containers"] = [container_manifest(point, name, sweep)]
    pod["volumes"] = [
        {"name": "spec", "configMap": {"name": name}},
        {"name": "checkpoints", **checkpoints},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": kube.shm_size}},
        {"name": "tmp", "emptyDir": {}},
    ]
    shipped = game.shipped_fields(point)
    if shipped:
        sources = [{"configMap": {"name": game.configmap_name(name, f)}} for f in shipped]
        pod["volumes"].append({"name": "game", "projected": {"sources": sources}})
    pod["volumes"] += [v.model_dump(mode="json", exclude_none=True) for v in kube.volumes]
    return pod


def has_headless_service(point: JobSpec) -> bool:
    """Several replicas in an Indexed Job (a PyTorchJob's operator makes its own Services)."""
    return point.distributed.replicas > 1 and not is_pytorchjob(point)


def group_backoff_limit(point: JobSpec) -> int:
    """Pod failures the group may take: `backoff_limit × replicas` (see `group_spec`)."""
    return min(point.kubernetes.backoff_limit * point.distributed.replicas, INT32_MAX)


def group_spec(point: JobSpec) -> dict[str, Any]:
    """The Job's retry budget, and for several replicas the Indexed Job of that many pods.

    One replica: `backoffLimit` retries. Several: each index (pod) may fail `backoff_limit`
    times (`backoffLimitPerIndex`), and one index past that fails the whole Job at once
    (`maxFailedIndexes: 0`: a group missing a rank cannot train, so its other pods are stopped
    rather than left waiting). A lost rank-0 pod takes every agent down with its rendezvous
    store, so one group restart costs `replicas` pod failures: the Job's total
    (`backoffLimit`) is `backoff_limit × replicas`, the same number of group restarts as a
    single pod has retries."""
    replicas = point.distributed.replicas
    limit = point.kubernetes.backoff_limit
    if replicas == 1:
        return {"backoffLimit": limit}
    return {
        "backoffLimit": group_backoff_limit(point),
        "completionMode": "Indexed",
        "completions": replicas,
        "parallelism": replicas,
        "backoffLimitPerIndex": limit,
        "maxFailedIndexes": 0,
    }


def object_metadata(point: JobSpec, name: str, sweep: str) -> dict[str, Any]:
    """The Job's (or PyTorchJob's) metadata: name, labels (with Kueue's queue label when
    `kubernetes.queue` is set) and annotations."""
    kube = point.kubernetes
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": kube.namespace,
        "labels": {**kube.labels, **labels(point, sweep)},
    }
    if kube.queue:
        metadata["labels"][LABEL_QUEUE] = kube.queue
    if kube.annotations:
        metadata["annotations"] = dict(kube.annotations)
    return metadata


def pod_template(point: JobSpec, name: str, sweep: str) -> dict[str, Any]:
    """The pods' template: the labels and annotations of the Job (plus `pod_annotations`)."""
    kube = point.kubernetes
    metadata: dict[str, Any] = {"labels": {**kube.labels, **labels(point, sweep)}}
    if kube.annotations or kube.pod_annotations:
        metadata["annotations"] = {**kube.annotations, **kube.pod_annotations}
    return {"metadata": metadata, "spec": pod_manifest(point, name, sweep)}


def run_limits(point: JobSpec) -> dict[str, Any]:
    """Kueue's suspension, the deadline and the clean-up delay, the same keys in a Job's spec
    and a PyTorchJob's `runPolicy`."""
    kube = point.kubernetes
    limits: dict[str, Any] = {}
    if kube.queue:
        limits["suspend"] = True  # Kueue unsuspends it on admission
    if kube.active_deadline_seconds is not None:
        limits["activeDeadlineSeconds"] = kube.active_deadline_seconds
    if kube.ttl_seconds_after_finished is not None:
        limits["ttlSecondsAfterFinished"] = kube.ttl_seconds_after_finished
    return limits


def job_manifest(point: JobSpec, name: str, sweep: str) -> dict[str, Any]:
    """The Job of one sweep point; `point` comes from `pod_spec` (image and paths resolved).

    Retries (`backoffLimit`) resume from the checkpoint; invalid input (exit 2) fails the Job at
    once, and a pod lost to a disruption (eviction, preemption) does not count as a failure.
    With `kubernetes.queue`, the Job carries Kueue's queue label and is created suspended."""
    job_spec: dict[str, Any] = {**group_spec(point), **run_limits(point)}
    job_spec["podReplacementPolicy"] = "Failed"
    job_spec["podFailurePolicy"] = {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER_NAME,
                    "operator": "In",
                    "values": [int(ExitCode.INVALID_INPUT)],
                },
            },
            # `status` is required by the API before 1.35 (optional, default "True", since).
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]
    }
    job_spec["template"] = pod_template(point, name, sweep)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_metadata(point, name, sweep),
        "spec": job_spec,
    }


def workload_manifest(point: JobSpec, name: str, sweep: str) -> dict[str, Any]:
    """What runs the point's pods: its Job, or its PyTorchJob."""
    if is_pytorchjob(point):
        return pytorchjob.manifest(
            point,
            object_metadata(point, name, sweep),
            pod_template(point, name, sweep),
            {"backoffLimit": group_backoff_limit(point), **run_limits(point)},
        )
    return job_manifest(point, name, sweep)


def configmap_names(point: SweepPoint) -> list[str]:
    """The ConfigMaps a point's Job mounts: its spec's, and those of shipped game files."""
    shipped = game.shipped_fields(point.spec)
    return [point.job_name] + [game.configmap_name(point.job_name, f) for f in shipped]


def dependents(point: SweepPoint) -> list[tuple[str, str]]:
    """(kind, name) of what a point's Job needs and owns once it exists: its ConfigMaps and,
    with several replicas, its headless Service."""
    found = [("ConfigMap", n) for n in configmap_names(point)]
    if has_headless_service(point.spec):
        found.append(("Service", service_name(point.job_name)))
    return found


def render(
    spec: JobSpec,
    num_envs_list: Sequence[int] | None = None,
    image: str | None = None,
    sweep: str | None = None,
    replicas_list: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Per sweep point: the shipped game's ConfigMaps (if any), the spec's ConfigMap, the
    headless Service (several replicas in an Indexed Job), the Job or PyTorchJob, in that order
    (what a Job needs exists before it)."""
    sweep, points = plan_pods(spec, num_envs_list, image, sweep, replicas_list)
    shipped = game.local_game_files(spec)
    manifests: list[dict[str, Any]] = []
    for point in points:
        for file in shipped:
            manifests.append(game_configmap(point.spec, point.job_name, sweep, file))
        manifests.append(configmap_manifest(point.spec, point.job_name, sweep))
        if has_headless_service(point.spec):
            manifests.append(service_manifest(point.spec, point.job_name, sweep))
        manifests.append(workload_manifest(point.spec, point.job_name, sweep))
    return manifests
