"""Names and hashes derived from a spec: the Job name, the spec's canonical document and digest,
the training hash checkpoints are checked against, the sweep id, and the run id.

Two identities. The Job name hashes the whole spec (Jobs are immutable: any change is a new Job).
The run id hashes only the training settings (`training_settings`: no step budget, no
Kubernetes, tracking, resources or checkpoint-cadence fields): it names the MLflow run and the
checkpoint folder, so a new Job with a larger `ppo.total_steps`, another image or TTL continues
the same run from its checkpoints.

The spec's identity (its hash, the Job name) is computed from a canonical text because the Helm
chart must derive the very same names from user-edited values: Helm's `toPrettyJson` is Go's
`json.MarshalIndent` (keys sorted, Go's float format, `<>&` escaped), and `sha256sum` hashes it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from trainer.spec.models import JobSpec, SpecError

#: Environment variables a run gets from the Kubernetes renderer or the local launcher.
ENV_JOB_NAME = "TRAINER_JOB_NAME"
ENV_SWEEP_ID = "TRAINER_SWEEP_ID"
#: Optional override of the run id (checkpoint folder, MLflow run); unset in pods.
ENV_RUN_ID = "TRAINER_RUN_ID"
#: A run of more than one replica on Kubernetes: torchrun's c10d rendezvous endpoint (rank 0's
#: stable name `<job>-0.<service>:<distributed.port>`) and rendezvous id (the Job's name).
ENV_RDZV_ENDPOINT = "TRAINER_RDZV_ENDPOINT"
ENV_RDZV_ID = "TRAINER_RDZV_ID"

#: Kubernetes object names are DNS-1123 labels of at most 63 characters.
NAME_MAX = 63
DIGEST_LENGTH = 8


def spec_hash(spec: JobSpec, length: int = DIGEST_LENGTH) -> str:
    """Hash of the whole spec: the first hex digits of `spec_digest` (Helm computes the same)."""
    return spec_digest(spec)[:length]


def replicas_suffix(spec: JobSpec) -> str:
    """`x<replicas>` after the env count in Job names and run ids; "" for one replica."""
    return f"x{spec.distributed.replicas}" if spec.distributed.replicas > 1 else ""


def pod_suffix(spec: JobSpec) -> str:
    """The longest suffix the controller adds to the Job's name to name its pods (their
    hostnames) and, for a PyTorchJob, their Services: `-<index>` for an Indexed Job of several
    replicas, `-master-0` / `-worker-<i>` for a PyTorchJob, none for a plain Job's pods
    (which get a random suffix and no hostname of their own)."""
    replicas = spec.distributed.replicas
    if spec.kubernetes.distributed_backend == "pytorchjob":
        return f"-worker-{replicas - 2}" if replicas > 1 else "-master-0"
    return f"-{replicas - 1}" if replicas > 1 else ""


def job_name(spec: JobSpec) -> str:
    """The Job's name: `<name>-e<num_envs>[x<replicas>]-<spec hash>`, a DNS-1123 label ≤ 63.

    The Kubernetes renderer and the Helm chart name Jobs with it (and pass it to the pod as
    TRAINER_JOB_NAME, an MLflow tag); any change to the spec makes a new name, because Jobs are
    immutable. The run a Job trains is `run_id`. `spec` is one sweep point (a fixed `env.num_envs`).
    The names of the Job's pods (`pod_suffix`) must fit in 63 characters too.
    """
    name = f"{spec.name}-e{spec.env.num_envs}{replicas_suffix(spec)}-{spec_hash(spec)}"
    suffix = pod_suffix(spec)
    if len(name + suffix) > NAME_MAX:
        raise SpecError(
            [
                f"name: Job name {name!r} is longer than {NAME_MAX} characters"
                + (f" with its pods' suffix ({suffix})" if suffix else "")
                + "; shorten the spec's name"
            ]
        )
    return name


def run_id(spec: JobSpec) -> str:
    """The training run's name: `<name>-e<num_envs>[x<replicas>]-r<run digest>`, a DNS-1123
    label ≤ 63 (`x<replicas>` only with more than one replica).

    Names the checkpoint folder and the MLflow run (tag `trainer.job_id`), and labels the Job
    (`pyboy-trainer/run-id`, the Helm chart computes the same): Jobs of one run differ only in
    settings that do not change what is learned. `spec` is one sweep point.
    """
    return f"{spec.name}-e{spec.env.num_envs}{replicas_suffix(spec)}-r{run_digest(spec)}"


def run_identity(spec: JobSpec, environ: Mapping[str, str] = os.environ) -> str:
    """The run's identity: `$TRAINER_RUN_ID` when set (to force a folder), else `run_id(spec)`."""
    name = environ.get(ENV_RUN_ID, "").strip()
    return name or run_id(spec)


def sweep_id(spec_name: str, job_names: Iterable[str]) -> str:
    """`{name}-{sha256 of the sorted Job names}[:8]`: the same spec and env list, the same id."""
    joined = ",".join(sorted(job_names))
    return f"{spec_name}-{hashlib.sha256(joined.encode()).hexdigest()[:DIGEST_LENGTH]}"


#: env settings that change how emulators are run, not what is learned.
_ENV_NOT_TRAINED = (
    "backend",
    "envs_per_worker",
    "worker_timeout_s",
    "max_worker_restarts",
    "restart_window_s",
)


def training_settings(spec: JobSpec) -> dict[str, Any]:
    """What a checkpoint depends on: seed, game, env and network/algorithm settings.

    Excludes the step budget, tracking, resources, checkpoint cadence and Kubernetes settings,
    so a run can be resumed with a larger `ppo.total_steps` or on another node, but not with
    another game, observation or network.
    """
    data = spec.model_dump(mode="json")
    ppo = {
        k: v for k, v in data["ppo"].items() if k not in ("total_steps", "device", "async_rollout")
    }
    env = {k: v for k, v in data["env"].items() if k not in _ENV_NOT_TRAINED}
    settings = {"seed": data["seed"], "game": data["game"], "env": env, "ppo": ppo}
    # More replicas change the data each update sees; one replica leaves the key out, so runs
    # from before `distributed` existed keep their ids and checkpoints.
    if spec.distributed.replicas > 1:
        settings["replicas"] = spec.distributed.replicas
    return settings


def training_hash(spec: JobSpec, length: int = 12) -> str:
    """Hash of `training_settings`, stored in every checkpoint and checked on resume."""
    blob = json.dumps(training_settings(spec), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


# ---- canonical spec document: Go's json.MarshalIndent, byte for byte -------------------------


def _drop_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_none(v) for v in value]
    return value


def go_float(value: float) -> str:
    """A float the way Go's encoding/json writes a float64 (shortest digits, 'f' or 'e')."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"JSON has no representation for {value}")
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    magnitude = abs(value)
    if magnitude < 1e-6 or magnitude >= 1e21:
        text = repr(value)  # Python's shortest repr is in 'e' form here: 1.5e-07, 1e+21
        mantissa, exponent = text.split("e")
        sign, digits = exponent[0], exponent[1:].lstrip("0") or "0"
        return f"{mantissa}e{sign}{digits.zfill(1) if sign == '-' else digits.zfill(2)}"
    return format(Decimal(repr(value)), "f")


_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def go_string(value: str) -> str:
    """A string the way Go's encoding/json writes it (HTML-safe escaping, UTF-8 kept)."""
    out = []
    for char in value:
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif ord(char) < 0x20:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def go_json(value: Any, indent: str = "") -> str:
    """`json.MarshalIndent(value, "", "  ")` of Go, for the JSON types a spec holds."""
    inner = indent + "  "
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return go_string(value)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = [
            f"{inner}{go_string(str(k))}: {go_json(value[k], inner)}"
            for k in sorted(value, key=str)
        ]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(inner + go_json(v, inner) for v in value) + "\n" + indent + "]"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def spec_document(spec: JobSpec) -> str:
    """The spec as Helm's `toPrettyJson` writes it (nulls dropped): the ConfigMap's `spec.yaml`
    (JSON is YAML) and the text every spec hash is taken of."""
    return go_json(_drop_none(spec.model_dump(mode="json")))


def run_digest(spec: JobSpec, length: int = DIGEST_LENGTH) -> str:
    """SHA-256 of `training_settings` written like `spec_document` (nulls dropped, Go's JSON),
    so the Helm chart's `toPrettyJson | sha256sum` of the same subset gives the same digits."""
    document = go_json(_drop_none(training_settings(spec)))
    return hashlib.sha256(document.encode()).hexdigest()[:length]


def spec_digest(spec: JobSpec) -> str:
    """SHA-256 (hex) of `spec_document(spec)`: Helm's `sha256sum` of the same text."""
    return hashlib.sha256(spec_document(spec).encode()).hexdigest()
