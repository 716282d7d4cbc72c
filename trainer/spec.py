"""The job spec: one Pydantic-validated YAML document is the single source of truth.

Everything else (the trainer in a pod, the launcher, the Kubernetes renderer, the Helm chart)
reads a `JobSpec`. This module imports nothing of ours.

Sources and their precedence, lowest first: the YAML file, then `TRAIN_*` environment variables
(the seed's Make variables), then `--set dotted.key=value` from the command line.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: Exit code for any invalid input (spec, override, CLI argument), across the CLI.
EXIT_INVALID_INPUT = 2

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Kubernetes resource quantity, e.g. 256Mi, 1Gi, 500M, 0.5 (memory); see apimachinery quantity.go.
QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$")
_QUANTITY_FACTORS = {
    None: 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}

BUTTONS = ("noop", "up", "down", "left", "right", "a", "b", "start", "select")
Button = Literal["noop", "up", "down", "left", "right", "a", "b", "start", "select"]


class SpecError(ValueError):
    """Invalid input. `str()` is the user-facing message, one problem per line."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def parse_quantity(value: str) -> float:
    """Kubernetes quantity string → number (bytes for memory, cores for CPU)."""
    match = QUANTITY.match(str(value))
    if not match:
        raise ValueError(f"not a Kubernetes quantity (examples: 256Mi, 1Gi, 500m): {value!r}")
    return float(match.group(1)) * _QUANTITY_FACTORS[match.group(3)]


def _check_quantity(value: str) -> str:
    parse_quantity(value)
    return value


Quantity = Annotated[str, Field(pattern=QUANTITY.pattern)]


class GameSpec(_Model):
    rom: str = Field(
        "builtin:dungeon",
        description="ROM to run: `builtin:<name>` for a game shipped with the trainer, or a path to "
        "your own .gb/.gbc file (mounted into the pod or baked into a derived image).",
    )
    adapter: str = Field(
        "dungeon",
        description="Game adapter that reads RAM into rewards and episode ends "
        "(registered in `trainer.games.ADAPTERS`: `dungeon` for the built-in game, `zelda` for Link's Awakening, `generic` for any ROM, rewarded for new screens).",
    )
    state: str | None = Field(
        None,
        description="Optional PyBoy save state to start every episode from; by default the "
        "adapter plays from power-on to its start position and saves a state itself.",
    )
    reward: dict[str, float] = Field(
        default_factory=dict,
        description="Reward weight overrides by term name (e.g. `{coin: 1.0, step: -0.01}`); "
        "unknown terms are rejected by the adapter.",
    )


class ObsSpec(_Model):
    type: Literal["tiles", "pixels"] = Field(
        "tiles",
        description="`tiles`: the screen's background tile ids (PyBoy game_area), a small integer "
        "grid; `pixels`: grayscale screen, downsampled.",
    )
    downsample: int = Field(
        2, ge=1, le=8, description="Pixels only: keep every n-th pixel on each axis."
    )
    frame_stack: int = Field(
        1, ge=1, le=8, description="Number of past observations stacked as channels."
    )


class EnvSpec(_Model):
    num_envs: int | Literal["auto"] = Field(
        2,
        description="Emulators stepped in parallel, or `auto` for one per CPU the process may use "
        "(cgroup quota and affinity respected).",
    )
    frame_skip: int = Field(
        4, ge=1, le=64, description="Emulator frames per environment step (action repeat)."
    )
    press_frames: int | None = Field(
        None,
        ge=1,
        description="Frames the button is held within each step; default: half of frame_skip (at least 1).",
    )
    episode_length: int = Field(
        750,
        ge=1,
        description="Steps after which an episode is truncated (time limit, not a real ending).",
    )
    actions: list[Button] = Field(
        default_factory=lambda: ["noop", "up", "down", "left", "right", "a", "b"],
        description=f"Discrete action set, each one button (or noop); allowed: {', '.join(BUTTONS)}.",
    )
    obs: ObsSpec = Field(default_factory=ObsSpec, description="Observation settings.")
    backend: Literal["auto", "serial", "process"] = Field(
        "auto",
        description="Vector backend: `process` runs emulators in worker processes over shared "
        "memory, `serial` in this process; `auto` picks serial for 1 env, process otherwise.",
    )
    envs_per_worker: int | Literal["auto"] = Field(
        "auto",
        description="Environments each worker process steps; `auto` spreads them over the usable CPUs.",
    )

    @field_validator("num_envs")
    @classmethod
    def _num_envs_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be ≥ 1 or 'auto'")
        return value

    @field_validator("envs_per_worker")
    @classmethod
    def _epw_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be ≥ 1 or 'auto'")
        return value

    @field_validator("actions")
    @classmethod
    def _actions_unique(cls, value: list[str]) -> list[str]:
        if len(value) < 2:
            raise ValueError("needs at least 2 actions to choose from")
        dupes = sorted({a for a in value if value.count(a) > 1})
        if dupes:
            raise ValueError(f"duplicate actions: {', '.join(dupes)}")
        return value

    @model_validator(mode="after")
    def _press_within_skip(self) -> EnvSpec:
        if self.press_frames is not None and self.press_frames > self.frame_skip:
            raise ValueError(
                f"env.press_frames must not exceed env.frame_skip ({self.frame_skip}; got {self.press_frames})"
            )
        return self

    @property
    def hold_frames(self) -> int:
        return self.press_frames if self.press_frames is not None else max(1, self.frame_skip // 2)


class PPOSpec(_Model):
    total_steps: int = Field(
        20000, ge=1, description="Environment steps to train for, summed over environments."
    )
    rollout_steps: int = Field(
        128, ge=1, description="Steps per environment in each rollout before an update."
    )
    update_epochs: int = Field(6, ge=1, description="Passes over each rollout batch.")
    batch_size: int = Field(128, ge=1, description="Minibatch size (samples per gradient step).")
    learning_rate: float = Field(
        2.5e-4, ge=0, description="Adam learning rate (0 freezes the policy: a baseline)."
    )
    anneal_lr: bool = Field(
        True, description="Anneal the learning rate linearly to 0 over training."
    )
    gamma: float = Field(0.99, gt=0, le=1, description="Discount factor.")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE λ.")
    clip_coef: float = Field(0.1, gt=0, description="PPO ratio clip ε.")
    clip_vloss: bool = Field(True, description="Clip the value loss like the policy ratio.")
    norm_adv: bool = Field(True, description="Normalize advantages per minibatch.")
    ent_coef: float = Field(0.01, ge=0, description="Entropy bonus weight.")
    vf_coef: float = Field(0.5, ge=0, description="Value loss weight.")
    max_grad_norm: float = Field(0.5, gt=0, description="Global gradient-norm clip.")
    target_kl: float | None = Field(
        None, gt=0, description="Stop an update's epochs early past this approximate KL."
    )
    hidden_size: int = Field(128, ge=8, le=4096, description="Width of the policy's hidden layer.")
    device: str = Field(
        "auto",
        description="Torch device for the learner: auto (CUDA when present), cpu, cuda, cuda:N.",
    )
    async_rollout: bool = Field(
        False,
        description="Collect the next rollout with the previous policy while the learner updates "
        "(overlaps collection and learning; one update of policy lag).",
    )

    @field_validator("device")
    @classmethod
    def _device_known(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value):
            raise ValueError("must be one of auto, cpu, cuda, cuda:N, mps")
        return value


class CheckpointSpec(_Model):
    dir: str = Field(
        "training_runs", description="Directory for checkpoints and run outputs (a PVC in a pod)."
    )
    every_updates: int = Field(
        10, ge=1, description="Write a checkpoint every n updates (and at the end, and on SIGTERM)."
    )
    keep: int = Field(3, ge=1, description="Step checkpoints kept on disk besides `latest`.")
    resume: bool = Field(
        True, description="Continue from the latest checkpoint of this job when one exists."
    )


class MlflowSpec(_Model):
    enabled: bool = Field(
        True, description="Track the run in MLflow; false: nothing talks to MLflow."
    )
    tracking_uri: str | None = Field(
        None,
        description="Tracking URI; default: $MLFLOW_TRACKING_URI, else MLflow's local default.",
    )
    experiment: str = Field("pyboy-ppo", min_length=1, description="Experiment name.")
    run_name: str | None = Field(None, description="Run name; default: the job name.")
    tags: dict[str, str] = Field(default_factory=dict, description="Extra run tags.")
    log_model: bool = Field(True, description="Log the final policy as an MLflow PyTorch model.")


class ResourcesSpec(_Model):
    cpu_per_env: float = Field(1.0, gt=0, description="CPU cores requested per environment.")
    learner_cpu: float = Field(1.0, gt=0, description="CPU cores requested for the learner.")
    memory_per_env: Quantity = Field(
        "256Mi", description="Memory requested per environment (Kubernetes quantity)."
    )
    learner_memory: Quantity = Field(
        "1Gi", description="Memory requested for the learner (Kubernetes quantity)."
    )
    gpu: int = Field(0, ge=0, description="NVIDIA GPUs (`nvidia.com/gpu`) for the learner.")

    @field_validator("memory_per_env", "learner_memory")
    @classmethod
    def _memory_quantity(cls, value: str) -> str:
        return _check_quantity(value)


class TolerationSpec(_Model):
    key: str | None = Field(None, description="Taint key.")
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Equal or Exists.")
    value: str | None = Field(None, description="Taint value (with Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect."
    )
    tolerationSeconds: int | None = Field(
        None, description="For NoExecute: how long to stay bound."
    )  # noqa: N815


class KubernetesSpec(_Model):
    namespace: str = Field("default", description="Namespace for the Job and its ConfigMap.")
    image: str | None = Field(
        None, description="Trainer image; default: the launcher's built-in default."
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Image pull policy."
    )
    backoff_limit: int = Field(3, ge=0, description="Pod retries before the Job fails.")
    ttl_seconds_after_finished: int | None = Field(
        86400, ge=0, description="Delete the finished Job after this many seconds."
    )
    active_deadline_seconds: int | None = Field(
        None, ge=1, description="Fail the Job after this much wall time."
    )
    termination_grace_period_seconds: int = Field(
        60, ge=5, description="Time between SIGTERM and SIGKILL (the trainer checkpoints then)."
    )
    service_account: str | None = Field(None, description="ServiceAccount for the pod.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node selector.")
    tolerations: list[TolerationSpec] = Field(default_factory=list, description="Tolerations.")
    checkpoint_pvc: str | None = Field(
        None,
        description="PersistentVolumeClaim mounted at checkpoint.dir (keeps checkpoints across pods).",
    )
    mlflow_secret: str | None = Field(
        None,
        description="Secret whose keys (e.g. MLFLOW_TRACKING_USERNAME/PASSWORD) become env vars; values never appear in the spec.",
    )
    shm_size: Quantity = Field("1Gi", description="Size limit of the in-memory /dev/shm volume.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels on the Job and pod."
    )

    @field_validator("namespace")
    @classmethod
    def _namespace_dns(cls, value: str) -> str:
        if len(value) > 63 or not DNS1123_LABEL.match(value):
            raise ValueError(
                "must be a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters"
            )
        return value

    @field_validator("shm_size")
    @classmethod
    def _shm_quantity(cls, value: str) -> str:
        return _check_quantity(value)


class SweepSpec(_Model):
    num_envs: list[int] = Field(
        default_factory=list,
        description="Environment counts to compare; the launcher makes one Job per value.",
    )

    @field_validator("num_envs")
    @classmethod
    def _counts(cls, value: list[int]) -> list[int]:
        bad = [v for v in value if v < 1]
        if bad:
            raise ValueError(f"every count must be ≥ 1 (got {bad})")
        if len(set(value)) != len(value):
            raise ValueError(f"counts must be distinct (got {value})")
        return value


class JobSpec(_Model):
    """One training job. `name` is a DNS-1123 label: it names the Job and the MLflow run."""

    name: str = Field(
        ...,
        description="Job name: DNS-1123 label (lowercase letters, digits, '-'), at most 40 characters.",
    )
    seed: int = Field(
        1, ge=0, description="Seed for the policy, the action sampling and the environments."
    )
    game: GameSpec = Field(
        default_factory=GameSpec, description="Which game and how it is rewarded."
    )
    env: EnvSpec = Field(default_factory=EnvSpec, description="Emulators and observations.")
    ppo: PPOSpec = Field(default_factory=PPOSpec, description="PPO hyperparameters.")
    checkpoint: CheckpointSpec = Field(
        default_factory=CheckpointSpec, description="Checkpoints and resume."
    )
    mlflow: MlflowSpec = Field(default_factory=MlflowSpec, description="MLflow tracking.")
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description="Pod resources per environment."
    )
    kubernetes: KubernetesSpec = Field(default_factory=KubernetesSpec, description="Job settings.")
    sweep: SweepSpec = Field(
        default_factory=SweepSpec, description="Environment counts for the launcher."
    )

    @field_validator("name")
    @classmethod
    def _name_dns(cls, value: str) -> str:
        # 40 leaves room for the "-e<envs>-<hash>" suffix within the 63-character label limit.
        if len(value) > 40 or not DNS1123_LABEL.match(value):
            raise ValueError(
                "must be a DNS-1123 label of at most 40 characters: lowercase letters, digits and '-', "
                "starting and ending with a letter or digit (e.g. 'zelda-ppo')"
            )
        return value

    @model_validator(mode="after")
    def _batch_fits_rollout(self) -> JobSpec:
        if isinstance(self.env.num_envs, int):
            check_batch(self.env.num_envs, self.ppo.rollout_steps, self.ppo.batch_size)
        for count in self.sweep.num_envs:
            check_batch(count, self.ppo.rollout_steps, self.ppo.batch_size, where="sweep.num_envs")
        return self

    # ---- derived values -------------------------------------------------------------------
    def resolved_num_envs(self) -> int:
        """`env.num_envs`, with `auto` resolved to the CPUs this process may use."""
        if self.env.num_envs == "auto":
            return available_cpus()
        return int(self.env.num_envs)

    def with_num_envs(self, num_envs: int) -> JobSpec:
        """A copy for one sweep point: fixed env count, no sweep of its own (validated)."""
        data = self.model_dump(mode="json")
        data["env"]["num_envs"] = num_envs
        data["sweep"] = {"num_envs": []}
        return JobSpec.model_validate(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def spec_hash(self, length: int = 8) -> str:
        """Hash of the whole spec: the first hex digits of `spec_digest` (Helm computes the same)."""
        return spec_digest(self)[:length]

    def training_hash(self, length: int = 12) -> str:
        """Hash of what a checkpoint depends on: game, env, network and algorithm.

        Excludes the step budget, tracking, resources and Kubernetes settings, so a run can be
        resumed with a larger `ppo.total_steps` or on another node, but not with another game,
        observation or network.
        """
        data = self.model_dump(mode="json")
        ppo = {
            k: v
            for k, v in data["ppo"].items()
            if k not in ("total_steps", "device", "async_rollout")
        }
        env = {k: v for k, v in data["env"].items() if k not in ("backend", "envs_per_worker")}
        return _hash({"seed": data["seed"], "game": data["game"], "env": env, "ppo": ppo}, length)


#: Kubernetes object names are DNS-1123 labels of at most 63 characters.
NAME_MAX = 63
DIGEST_LENGTH = 8


def job_name(spec: JobSpec) -> str:
    """The job's name and identity: `<name>-e<num_envs>-<spec hash>`, a DNS-1123 label ≤ 63.

    The Kubernetes renderer and the Helm chart name Jobs with it (and pass it to the pod as
    TRAINER_JOB_NAME); a local run computes the same value, so its checkpoints and MLflow run
    are found again. `spec` is one sweep point (a fixed `env.num_envs`).
    """
    name = f"{spec.name}-e{spec.env.num_envs}-{spec.spec_hash(DIGEST_LENGTH)}"
    if len(name) > NAME_MAX:
        raise SpecError(
            [
                f"name: Job name {name!r} is longer than {NAME_MAX} characters; shorten the spec's name"
            ]
        )
    return name


def check_batch(
    num_envs: int, rollout_steps: int, batch_size: int, where: str = "env.num_envs"
) -> None:
    rollout = num_envs * rollout_steps
    if batch_size > rollout:
        raise ValueError(
            f"ppo.batch_size must not exceed {where} × ppo.rollout_steps "
            f"({num_envs} × {rollout_steps} = {rollout}; got {batch_size}): "
            "lower ppo.batch_size or raise ppo.rollout_steps"
        )


def _hash(data: Any, length: int) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def available_cpus() -> int:
    """CPUs this process may use: min of the affinity mask and the cgroup CPU quota (≥ 1).

    `os.cpu_count()` reports the node's CPUs, not the pod's limit; see the cgroup v2 docs for
    `cpu.max` ("$MAX $PERIOD") and v1's cfs_quota_us / cfs_period_us.
    """
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, int(quota + 0.5)))
    return max(1, count)


def _cgroup_cpu_quota() -> float | None:
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


# ---- canonical spec document: Go's json.MarshalIndent, byte for byte -------------------------
# The spec's identity (its hash, the Job name) is computed from this text because the Helm chart
# must derive the very same names from user-edited values: Helm's `toPrettyJson` is Go's
# MarshalIndent (keys sorted, Go's float format, `<>&` escaped), and `sha256sum` hashes it.


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


def spec_digest(spec: JobSpec) -> str:
    """SHA-256 (hex) of `spec_document(spec)`: Helm's `sha256sum` of the same text."""
    return hashlib.sha256(spec_document(spec).encode()).hexdigest()


# ---- loading, with errors that name file, line and key ---------------------------------------

#: The seed's Make variables → spec keys (the README documents them).
ENV_OVERRIDES: dict[str, str] = {
    "TRAIN_STEPS": "ppo.total_steps",
    "TRAIN_ENVS": "env.num_envs",
    "TRAIN_EPISODE_LENGTH": "env.episode_length",
    "TRAIN_UPDATE_EPOCHS": "ppo.update_epochs",
    "TRAIN_BATCH_SIZE": "ppo.batch_size",
    "TRAIN_OUTPUT_DIR": "checkpoint.dir",
}


def load_spec(
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> JobSpec:
    """Read a YAML job spec, apply `TRAIN_*` environment overrides, then `--set` overrides.

    Raises `SpecError` whose message names the file, the line, the dotted key, the bad value and
    what is allowed (e.g. `configs/x.yaml:12: ppo.update_epochs: must be ≥ 1 (got -1)`).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(
            [f"{path}: no such file; pass the path of a job spec YAML (see configs/)"]
        ) from None
    except OSError as exc:
        raise SpecError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
        lines = _key_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([f"{where}: invalid YAML: {problem}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(
            [
                f"{path}:1: the spec must be a mapping of keys (name, game, env, ppo, …), got {type(data).__name__}"
            ]
        )
    sources: dict[str, str] = {}
    env_pairs = [
        (key, value, f"environment {var}={value}")
        for var, key in ENV_OVERRIDES.items()
        if (value := (os.environ if environ is None else environ).get(var, "")) != ""
    ]
    cli_pairs = []
    for item in overrides:
        if "=" not in item:
            raise SpecError(
                [f"--set {item}: expected dotted.key=value (e.g. --set ppo.total_steps=50000)"]
            )
        key, value = item.split("=", 1)
        cli_pairs.append((key.strip(), value, f"--set {item}"))
    for key, raw, source in env_pairs + cli_pairs:
        _set_dotted(data, key, _parse_scalar(raw), source)
        sources[key] = source
    return validate_spec(data, origin=str(path), lines=lines, sources=sources)


def validate_spec(
    data: Mapping[str, Any],
    origin: str = "<spec>",
    lines: Mapping[str, int] | None = None,
    sources: Mapping[str, str] | None = None,
) -> JobSpec:
    """Validate a mapping into a `JobSpec`, translating Pydantic errors to our message format."""
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_errors(exc, data, origin, lines or {}, sources or {})) from None


def _parse_scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        return raw


def _set_dotted(data: dict[str, Any], key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    valid = _valid_paths()
    if key not in valid and not _is_free_map_key(key):
        hint = _suggest(key, list(valid))
        raise SpecError([f"{source}: unknown key {key!r}{hint}"])
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise SpecError([f"{source}: {part!r} is not a mapping in the spec"])
        node = child
    node[parts[-1]] = value


def _is_free_map_key(key: str) -> bool:
    """Keys below free-form maps (game.reward.<term>, mlflow.tags.<tag>, …) are allowed."""
    return any(
        key.startswith(prefix + ".") and key.count(".") == prefix.count(".") + 1
        for prefix in _FREE_MAPS
    )


_FREE_MAPS = ("game.reward", "mlflow.tags", "kubernetes.node_selector", "kubernetes.labels")


def _valid_paths(
    model: type[BaseModel] = JobSpec, prefix: str = ""
) -> dict[str, type[BaseModel] | None]:
    """Every dotted key of the spec → the model it opens (None for leaves)."""
    out: dict[str, type[BaseModel] | None] = {}
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out[dotted] = ann
            out.update(_valid_paths(ann, dotted + "."))
        else:
            out[dotted] = None
    return out


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:  # e.g. 'ppo_settings' → 'ppo': a known key the word starts with
        close = sorted(
            (c for c in choices if word.startswith(c) or c.startswith(word)), key=len, reverse=True
        )[:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _key_lines(text: str) -> dict[str, int]:
    """Dotted key → 1-based line, from the YAML node tree (list items as key.N)."""
    root = yaml.compose(text)
    out: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                dotted = f"{prefix}{key_node.value}"
                out[dotted] = key_node.start_mark.line + 1
                walk(value_node, dotted + ".")
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                out[f"{prefix}{i}"] = item.start_mark.line + 1
                walk(item, f"{prefix}{i}.")

    if root is not None:
        walk(root, "")
    return out


def _lookup(data: Any, loc: Sequence[Any]) -> Any:
    node = data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _format_errors(
    exc: ValidationError,
    data: Mapping[str, Any],
    origin: str,
    lines: Mapping[str, int],
    sources: Mapping[str, str],
) -> list[str]:
    problems = []
    paths = list(_valid_paths())
    for err in exc.errors(include_url=False):
        # Drop union/tag branch names Pydantic adds (e.g. 'int', "literal['auto']").
        loc = [
            p
            for p in err["loc"]
            if not (isinstance(p, str) and (p in ("int", "str", "float") or "[" in p))
        ]
        dotted = ".".join(str(p) for p in loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = ".".join(str(p) for p in loc[:-1])
            siblings = [
                p.rsplit(".", 1)[-1]
                for p in paths
                if (p.rsplit(".", 1)[0] if "." in p else "") == parent
            ]
            message = f"unknown key{_suggest(str(loc[-1]), siblings)}; allowed here: {', '.join(siblings)}"
        elif kind == "missing":
            message = "required key is missing"
        else:
            message = err["msg"].removeprefix("Value error, ")
            message = (
                message.replace("Input should be", "must be")
                .replace("greater than or equal to", "≥")
                .replace("less than or equal to", "≤")
                .replace("greater than", ">")
                .replace("less than", "<")
            )
            named = message.split(" ", 1)[0]
            if named in paths:
                # A cross-field check: its message starts with the key to change; point there.
                dotted, message = named, message.split(" ", 1)[1]
            elif "input" in err and not isinstance(err["input"], dict):
                message += f" (got {_show(err['input'])})"
        where = origin
        source = next(
            (s for k, s in sources.items() if dotted == k or dotted.startswith(k + ".")), None
        )
        if source:
            where = source
        else:
            line = _nearest_line(dotted, lines)
            if line:
                where = f"{origin}:{line}"
        label = f"{dotted}: " if dotted else ""
        problems.append(f"{where}: {label}{message}")
    # One message per problem, in file order, without repeats (unions can report twice).
    return list(dict.fromkeys(problems))


def _nearest_line(dotted: str, lines: Mapping[str, int]) -> int | None:
    parts = dotted.split(".") if dotted else []
    while parts:
        key = ".".join(parts)
        if key in lines:
            return lines[key]
        parts.pop()
    return None


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def json_schema() -> dict[str, Any]:
    """JSON Schema of the job spec (for editors: `trainer schema > spec.schema.json`)."""
    return JobSpec.model_json_schema()


def reference_markdown() -> str:
    """The spec reference (README): one table per section, from the models' descriptions."""
    out: list[str] = []

    def default_of(field: Any) -> str:
        if field.is_required():
            return "*required*"
        value = field.get_default(call_default_factory=True)
        if isinstance(value, BaseModel):
            return ""
        return f"`{json.dumps(value)}`"

    def table(model: type[BaseModel], prefix: str) -> None:
        rows = []
        nested = []
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                nested.append((f"{prefix}{name}", ann))
                continue
            description = (field.description or "").replace("|", "\\|")
            rows.append(f"| `{prefix}{name}` | {default_of(field)} | {description} |")
        if rows:
            out.append(f"#### `{prefix.rstrip('.') or 'top level'}`\n")
            out.append("| key | default | meaning |\n|---|---|---|")
            out.extend(rows)
            out.append("")
        for dotted, sub in nested:
            table(sub, dotted + ".")

    table(JobSpec, "")
    return "\n".join(out).rstrip() + "\n"
