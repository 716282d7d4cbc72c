"""The job spec's models: one Pydantic-validated document is the single source of truth.

Everything else (the trainer in a pod, the launcher, the Kubernetes renderer, the Helm chart)
reads a `JobSpec`. Every field has a description (they become `--help`, the README reference and
the chart's values.yaml); `extra="forbid"` makes a typo an error. Loading from YAML with
line-numbered errors is `trainer.spec.loading`; names and hashes are `trainer.spec.identity`.

Longer than 500 lines because the spec is one tree of models read top to bottom, each field with
its description; the `resources` and `kubernetes` sections are `kube_settings`, and the rules
behind the fields live elsewhere (`kube_rules`, `pod`, `game_ram`, `adapters`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from trainer.errors import InvalidInput
from trainer.spec import kube_rules as k8s
from trainer.spec.adapters import check_game_settings
from trainer.spec.base import SpecModel, raise_problem
from trainer.spec.cpus import available_cpus
from trainer.spec.game_ram import RamSpec
from trainer.spec.kube_settings import KubernetesSpec, ResourcesSpec
from trainer.spec.pod import nested_path
from trainer.spec.tracking_uri import tracking_uri_problem

BUTTONS = ("noop", "up", "down", "left", "right", "a", "b", "start", "select")
Button = Literal["noop", "up", "down", "left", "right", "a", "b", "start", "select"]


class SpecError(InvalidInput):
    """An invalid spec or override. `str()` is the user-facing message, one problem per line
    (`file:line: dotted.key: what is wrong`)."""


class GameSpec(SpecModel):
    rom: str = Field(
        "builtin:dungeon",
        min_length=1,
        description="ROM to run: `builtin:<name>` for a game shipped with the trainer, or a path to "
        "your own .gb/.gbc file: a file here is shipped to the pod by `trainer launch`/`render` "
        "(≤ 1 MiB); an absolute path that is no file here must exist in the pod (a volume or a "
        "derived image).",
    )
    adapter: str = Field(
        "dungeon",
        description="Game adapter that reads RAM into rewards and episode ends "
        "(registered in `trainer.games.ADAPTERS`: `dungeon` for the built-in game, `zelda` for Link's Awakening, `generic` for any ROM, rewarded for new screens, `ram` for any ROM with rewards declared in `game.ram`).",
    )
    state: str | None = Field(
        None,
        min_length=1,
        description="Optional PyBoy save state to start every episode from (a file here is "
        "shipped to the pod like `game.rom`); by default the adapter plays from power-on to its "
        "start position and saves a state itself.",
    )
    reward: dict[str, float] = Field(
        default_factory=dict,
        description="Reward weight overrides by term name (e.g. `{coin: 1.0, step: -0.01}`); "
        "unknown terms are rejected.",
    )
    ram: RamSpec | None = Field(
        None,
        description="With `adapter: ram`: reward terms, episode ends and the start of play "
        "declared on RAM addresses (see the `game.ram` tables).",
    )

    @model_validator(mode="after")
    def _adapter_known(self) -> GameSpec:
        check_game_settings(self.adapter, self.reward, self.ram, self.state)
        return self


class ObsSpec(SpecModel):
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


def _count_schema(schema: dict[str, Any]) -> None:
    """The `_count_or_auto` rule (≥ 1) in the JSON Schema too, so the chart refuses 0 as well."""
    for branch in schema.get("anyOf", []):
        if branch.get("type") == "integer":
            branch["minimum"] = 1


class EnvSpec(SpecModel):
    num_envs: int | Literal["auto"] = Field(
        2,
        json_schema_extra=_count_schema,
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
    backend: Literal["auto", "serial", "process", "fastest"] = Field(
        "auto",
        description="Vector backend: `process` runs emulators in worker processes over shared "
        "memory (a dead or hung worker is replaced), `serial` in this process; `auto` picks "
        "serial for 1 env, process otherwise; `fastest` times both on the game for a few "
        "steps at start-up and keeps the faster (serial wins on cheap games and few CPUs; "
        "with `ppo.async_rollout` it is process, whose workers step while the learner works).",
    )
    envs_per_worker: int | Literal["auto"] = Field(
        "auto",
        json_schema_extra=_count_schema,
        description="Environments each worker process steps; `auto` spreads them over the usable CPUs.",
    )
    worker_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Seconds a worker process may take to build, reset or step its emulators "
        "before it counts as hung and is replaced (a ROM that hangs PyBoy).",
    )
    max_worker_restarts: int = Field(
        3,
        ge=0,
        description="Replacements of one worker process allowed within `env.restart_window_s`; "
        "one more fails the run, naming the environments and the ROM (a ROM that keeps crashing "
        "or hanging PyBoy), instead of restarting forever.",
    )
    restart_window_s: float = Field(
        600.0, gt=0, description="Sliding time window of `env.max_worker_restarts`, in seconds."
    )

    @field_validator("num_envs", "envs_per_worker")
    @classmethod
    def _count_or_auto(cls, value: int | str) -> int | str:
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


class PPOSpec(SpecModel):
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
        "(overlaps collection and learning: faster per step, one update of policy lag corrected "
        "by the decoupled PPO objective, but it learned less per step than collect-then-learn).",
    )

    @field_validator("device")
    @classmethod
    def _device_known(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value):
            raise ValueError("must be one of auto, cpu, cuda, cuda:N, mps")
        return value


class CheckpointSpec(SpecModel):
    dir: str = Field(
        "training_runs",
        description="Directory for checkpoints and run outputs (a PVC in a pod). An absolute dir "
        "must not be /tmp, /dev/shm or /etc/trainer (the pod mounts them), hold one of them, or "
        "lie under /etc/trainer, /proc, /sys or /dev.",
        json_schema_extra=k8s.schema_mount_path(),
    )
    every_updates: int = Field(
        10, ge=1, description="Write a checkpoint every n updates (and at the end, and on SIGTERM)."
    )
    keep: int = Field(3, ge=1, description="Step checkpoints kept on disk besides `latest`.")
    resume: bool = Field(
        True, description="Continue from the latest checkpoint of this job when one exists."
    )
    video: bool = Field(
        True,
        description="Record one evaluation episode of the policy as an animated GIF at the end of "
        "training (under `videos/` in the run and the checkpoint folder).",
    )
    video_every: int = Field(
        0,
        ge=0,
        description="Also record one every n checkpoints (0: only at the end).",
    )

    @field_validator("dir")
    @classmethod
    def _mountable(cls, value: str) -> str:
        raise_problem(k8s.mount_path_problem(value))
        return value


class MlflowSpec(SpecModel):
    enabled: bool = Field(
        True, description="Track the run in MLflow; false: nothing talks to MLflow."
    )
    tracking_uri: str | None = Field(
        None,
        description="Tracking URI; default: $MLFLOW_TRACKING_URI, else MLflow's local default.",
    )
    experiment: str = Field("pyboy-ppo", min_length=1, description="Experiment name.")
    run_name: str | None = Field(
        None, description="Run name; default: the run id (`<name>-e<num_envs>-r<training hash>`)."
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Extra run tags.")
    log_model: bool = Field(True, description="Log the final policy as an MLflow PyTorch model.")
    required: bool = Field(
        False,
        description="true: an unreachable tracking server at start fails the run (exit 1); false: "
        "train meanwhile, create or resume the run when the server answers, and send what was "
        "logged in between (up to `mlflow.max_buffered_points`).",
    )
    max_buffered_points: int = Field(
        100_000,
        ge=1000,
        description="Metric points kept while the server is unreachable (about 15 minutes of "
        "training on the built-in game); beyond, the oldest are dropped and counted in the "
        "metric `tracking/dropped_points`.",
    )
    drain_timeout_s: float = Field(
        30.0,
        ge=0,
        description="At the end of a run (or on SIGTERM), how long to keep sending what is "
        "queued to an unreachable server before giving up; keep it below "
        "`kubernetes.termination_grace_period_seconds`.",
    )

    @field_validator("tracking_uri")
    @classmethod
    def _usable_uri(cls, value: str | None) -> str | None:
        if value:
            raise_problem(tracking_uri_problem(value))
        # The spec is logged as params and lands in a ConfigMap: credentials go elsewhere.
        if value is not None and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@]*@", value):
            raise ValueError(
                "must not contain credentials (user:password@): set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the environment instead, "
                "on Kubernetes through kubernetes.mlflow_secret"
            )
        return value

    system_metrics_interval_s: float | None = Field(
        10.0,
        gt=0,
        description="Log MLflow's system metrics (CPU, memory, disk, network, GPU as "
        "`system/...`) every this many seconds; null: off.",
    )


class DistributedSpec(SpecModel):
    replicas: int = Field(
        1,
        ge=1,
        le=256,
        description="Training processes (pods on Kubernetes) of one run, each with env.num_envs "
        "emulators and a learner; gradients are averaged over them before every optimizer step "
        "(DD-PPO), so all hold the same weights. ppo.batch_size is the global minibatch.",
    )
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="torch.distributed backend: auto is nccl on CUDA, else gloo."
    )
    port: int = Field(
        29400, ge=1024, le=65535, description="Rendezvous port (torchrun's c10d store)."
    )
    max_restarts: int = Field(
        3,
        ge=0,
        description="Group restarts after a replica fails (torchrun --max-restarts); each "
        "restart resumes every replica from the last checkpoint.",
    )
    timeout_s: int = Field(
        300,
        ge=10,
        description="Seconds to wait for all replicas (rendezvous, and any one collective) "
        "before the group fails instead of waiting forever.",
    )


class SweepSpec(SpecModel):
    num_envs: list[int] = Field(
        default_factory=list,
        description="Environment counts to compare; the launcher makes one Job per value.",
    )
    replicas: list[int] = Field(
        default_factory=list,
        description="Replica counts to compare (distributed.replicas of each point): the sweep "
        "runs every num_envs × replicas pair, e.g. 1×8 against 2×4 and 4×2 envs.",
    )
    total_envs: int | None = Field(
        None,
        ge=1,
        description="Keep only the points whose replicas × num_envs equals this (the same "
        "emulators in all, split over more or fewer pods).",
    )

    @field_validator("num_envs", "replicas")
    @classmethod
    def _counts(cls, value: list[int]) -> list[int]:
        return check_env_counts(value)


class JobSpec(SpecModel):
    """One training job. `name` is a DNS-1123 label: it names the Job and the MLflow run."""

    name: str = Field(
        ...,
        description="Job name: DNS-1123 label (lowercase letters, digits, '-'), at most 40 characters.",
        json_schema_extra=k8s.schema_dns1123_label(40),
    )
    seed: int = Field(
        1,
        ge=0,
        le=2**32 - 1,  # NumPy's seed range (np.random.seed); torch's is wider
        description="Seed for the policy, the action sampling and the environments.",
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
    distributed: DistributedSpec = Field(
        default_factory=DistributedSpec,
        description="One run over several processes or pods (data-parallel PPO).",
    )
    sweep: SweepSpec = Field(
        default_factory=SweepSpec, description="Environment counts for the launcher."
    )

    @field_validator("name")
    @classmethod
    def _name_dns(cls, value: str) -> str:
        # 40 leaves room for the "-e<envs>-<hash>" suffix within the 63-character label limit.
        problem = k8s.dns1123_label_problem(value, max_length=40)
        raise_problem(problem and f"{problem} (e.g. 'zelda-ppo')")
        return value

    @model_validator(mode="after")
    def _mounts_clear_of_checkpoints(self) -> JobSpec:
        # A relative checkpoint.dir is mounted at CHECKPOINT_DIR in a pod (kube.pod_spec).
        pod_dir = self.checkpoint.dir if self.checkpoint.dir.startswith("/") else k8s.CHECKPOINT_DIR
        for mount in self.kubernetes.volume_mounts:
            if nested_path(mount.mountPath, pod_dir):
                raise ValueError(
                    f"kubernetes.volume_mounts: {mount.mountPath} overlaps the checkpoint mount "
                    f"{pod_dir} (checkpoint.dir); mount it elsewhere"
                )
        return self

    @model_validator(mode="after")
    def _service_name_for_replicas(self) -> JobSpec:
        # Several replicas get a headless Service named like the Job, and a PyTorchJob's operator
        # names one after it for every pod (`<job>-master-0`): DNS-1035 labels.
        if self.name[0].isalpha():
            return self
        if self.kubernetes.distributed_backend == "pytorchjob":
            raise ValueError(
                f"name: {self.name!r} must start with a letter for a PyTorchJob "
                "(kubernetes.distributed_backend): the training operator names a Service after "
                "it for each pod, and Service names are DNS-1035 labels"
            )
        if max([self.distributed.replicas, *self.sweep.replicas]) > 1:
            raise ValueError(
                f"name: {self.name!r} must start with a letter for more than one replica (the "
                "Job's headless Service takes its name, and Service names are DNS-1035 labels)"
            )
        return self

    @model_validator(mode="after")
    def _workers_divide_envs(self) -> JobSpec:
        per = self.env.envs_per_worker
        where = "sweep.num_envs" if self.sweep.num_envs else "env.num_envs"
        counts = self.sweep.num_envs or [self.env.num_envs]  # `auto` is checked when resolved
        bad = [n for n in counts if isinstance(n, int) and isinstance(per, int) and n % per]
        if bad:
            raise ValueError(
                f"env.envs_per_worker: {per} does not divide {where} {bad} (every worker process "
                "steps the same number of environments); pick a divisor of each, or 'auto'"
            )
        return self

    @model_validator(mode="after")
    def _batch_fits_rollout(self) -> JobSpec:
        replicas = self.distributed.replicas
        sweep = self.sweep
        # The spec itself runs (`trainer run`) unless the sweep replaces its replica count.
        if not sweep.replicas:
            count = self.env.num_envs if isinstance(self.env.num_envs, int) else 1
            where = "env.num_envs" if isinstance(self.env.num_envs, int) else None  # auto
            check_batch(count, self.ppo.rollout_steps, self.ppo.batch_size, replicas, where=where)
        if not (sweep.num_envs or sweep.replicas or sweep.total_envs):
            return self
        counts = sweep.num_envs or (
            [self.env.num_envs] if isinstance(self.env.num_envs, int) else []
        )
        where = "sweep.num_envs" if sweep.num_envs else "env.num_envs"
        for count, group in sweep_grid(counts, sweep.replicas or [replicas], sweep.total_envs):
            check_batch(count, self.ppo.rollout_steps, self.ppo.batch_size, group, where=where)
        return self

    # ---- derived values -------------------------------------------------------------------
    def resolved_num_envs(self) -> int:
        """`env.num_envs`, with `auto` resolved to the CPUs this process may use."""
        if self.env.num_envs == "auto":
            return available_cpus()
        return int(self.env.num_envs)

    def with_num_envs(self, num_envs: int, replicas: int | None = None) -> JobSpec:
        """A copy for one sweep point: fixed env count (and replicas), no sweep of its own."""
        return self.updated(point_changes(self, num_envs, replicas))

    def updated(self, changes: Mapping[str, Any], origin: str | None = None) -> JobSpec:
        """A validated copy with `changes` applied (`{"dotted.key": value}`); `SpecError` naming
        `origin` (default: the spec's name) when the result is invalid."""
        from trainer.spec.loading import set_dotted, validate_spec

        data = self.model_dump(mode="json")
        for key, value in changes.items():
            set_dotted(data, key, value)
        return validate_spec(data, origin=origin or self.name)

    def requested_cpus(self) -> float:
        """CPU cores one pod (or local run) of this spec needs: its envs plus the learner."""
        return self.resolved_num_envs() * self.resources.cpu_per_env + self.resources.learner_cpu

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def check_env_counts(counts: Sequence[int], where: str | None = None) -> list[int]:
    """Environment counts for a sweep: integers ≥ 1, distinct. `ValueError` (or `SpecError`
    naming `where`, e.g. `--envs`) otherwise: the one rule for the spec, the CLI and the chart."""
    counts = list(counts)
    problem = None
    bad = [n for n in counts if isinstance(n, bool) or not isinstance(n, int) or n < 1]
    if bad:
        problem = f"every count must be an integer ≥ 1 (got {bad})"
    elif len(set(counts)) != len(counts):
        problem = f"counts must be distinct (got {counts})"
    if problem is None:
        return counts
    if where is None:
        raise ValueError(problem)
    raise SpecError([f"{where}: {problem}"])


def point_changes(spec: JobSpec, num_envs: int, replicas: int | None = None) -> dict[str, Any]:
    """The changes that make one sweep point of `spec` (`JobSpec.updated`)."""
    return {
        "env.num_envs": num_envs,
        "distributed.replicas": spec.distributed.replicas if replicas is None else replicas,
        "sweep.num_envs": [],
        "sweep.replicas": [],
        "sweep.total_envs": None,
    }


def sweep_grid(
    counts: Sequence[int], replicas: Sequence[int], total_envs: int | None = None
) -> list[tuple[int, int]]:
    """The (num_envs, replicas) points of a sweep: every pair, replicas outermost (`1×8, 2×4`),
    or with `total_envs` only the pairs whose product is it. `ValueError` naming the fields when
    `total_envs` leaves none (no counts yet, e.g. `auto`: no point to check, none returned)."""
    pairs = [(count, group) for group in replicas for count in counts]
    if total_envs is None or not counts:
        return pairs
    kept = [(count, group) for count, group in pairs if count * group == total_envs]
    if not kept:
        raise ValueError(
            f"sweep.total_envs: no pair of num_envs {list(counts)} and replicas "
            f"{list(replicas)} (sweep.num_envs or env.num_envs, sweep.replicas or "
            f"distributed.replicas) has replicas × num_envs = {total_envs}; change one of them"
        )
    return kept


def check_batch(
    num_envs: int,
    rollout_steps: int,
    batch_size: int,
    replicas: int = 1,
    where: str | None = "env.num_envs",
) -> None:
    """`ppo.batch_size` is the global minibatch: a multiple of the replicas, at most the
    rollout of all of them (`where=None`: the replica rule only)."""
    if batch_size % replicas:
        raise ValueError(
            f"ppo.batch_size must be a multiple of distributed.replicas (got "
            f"{batch_size} and {replicas}): it is the global minibatch, split evenly "
            "over the replicas"
        )
    rollout = replicas * num_envs * rollout_steps
    if where is not None and batch_size > rollout:
        group = f"{replicas} replicas × " if replicas > 1 else ""
        raise ValueError(
            f"ppo.batch_size must not exceed {group}{where} × ppo.rollout_steps "
            f"({group}{num_envs} × {rollout_steps} = {rollout}; got {batch_size}): "
            "lower ppo.batch_size or raise ppo.rollout_steps"
        )
