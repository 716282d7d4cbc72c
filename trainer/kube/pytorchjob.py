"""A sweep point as a Kubeflow PyTorchJob (`kubernetes.distributed_backend: pytorchjob`).

The training operator (kubeflow.org/v1) makes the pods, `<job>-master-0` and `<job>-worker-<i>`,
and a Service named like each. Each pod runs the Indexed Job's own pod template
(`trainer.kube.manifests.pod_template`), whose `trainer run` joins the c10d rendezvous at the
Master's Service: the same torchrun agent, restarts and checkpoints as on an Indexed Job. The
operator also sets WORLD_SIZE/RANK/MASTER_ADDR in the pods; `trainer run` leaves them to its
agent (`trainer.rl.distributed.under_torchrun`).

Names the operator requires (kubeflow/training-operator v1.9,
pkg/apis/kubeflow.org/v1/pytorch_types.go): it reads the rendezvous port from the port
`pytorchjob-port` of the container `pytorch`, and fails the PyTorchJob without it.

Pure functions of the spec; imports `trainer.spec` only.
"""

from __future__ import annotations

import copy
from typing import Any

from trainer.spec import JobSpec

API_VERSION = "kubeflow.org/v1"
CONTAINER_NAME = "pytorch"
PORT_NAME = "pytorchjob-port"

#: How the operator restarts a failed container: `OnFailure`, in place (emptyDir checkpoints
#: survive), counted against `runPolicy.backoffLimit`. `ExitCode` would end the run on exit 2 at
#: once (as the Job's podFailurePolicy does) but also on any exit 1 to 127, which includes an
#: agent that lost rank 0's rendezvous and only has to start again.
RESTART_POLICY = "OnFailure"


def is_pytorchjob(point: JobSpec) -> bool:
    return point.kubernetes.distributed_backend == "pytorchjob"


def master_host(name: str) -> str:
    """The Master pod's Service, rank 0's rendezvous host."""
    return f"{name}-master-0"


def rendezvous_port(point: JobSpec) -> dict[str, Any]:
    """The container port the operator looks for (its Services expose it)."""
    return {"name": PORT_NAME, "containerPort": point.distributed.port, "protocol": "TCP"}


def manifest(
    point: JobSpec, metadata: dict[str, Any], template: dict[str, Any], run_policy: dict[str, Any]
) -> dict[str, Any]:
    """The PyTorchJob: a Master and `replicas - 1` Workers of `template`, with the Job's
    `metadata` and `run_policy` (the Indexed Job's group retry budget, Kueue's suspension,
    deadline, clean-up)."""
    replicas = point.distributed.replicas

    def replica(count: int) -> dict[str, Any]:
        return {
            "replicas": count,
            "restartPolicy": RESTART_POLICY,
            "template": copy.deepcopy(template),
        }

    specs = {"Master": replica(1)}
    if replicas > 1:
        specs["Worker"] = replica(replicas - 1)
    return {
        "apiVersion": API_VERSION,
        "kind": "PyTorchJob",
        "metadata": metadata,
        "spec": {"runPolicy": run_policy, "pytorchReplicaSpecs": specs},
    }
