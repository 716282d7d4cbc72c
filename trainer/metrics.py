"""MLflow metric names, in one place: the loop logs them, `trainer compare` and `bench` read them.

Namespaces follow CleanRL: `charts/` for what the agent achieves, `losses/` for the update's
losses and diagnostics, `perf/` for throughput; `tracking/` for the tracking itself. Per-term and per-adapter episode numbers go under
`episode/<name>`. Renaming one here renames it everywhere.
"""

from __future__ import annotations

EPISODIC_RETURN = "charts/episodic_return"
EPISODIC_LENGTH = "charts/episodic_length"
LEARNING_RATE = "charts/learning_rate"
UPDATE_EPOCHS = "charts/update_epochs"  # epochs run in the last update (target_kl may stop early)

LOSS_PREFIX = "losses/"
#: Statistics of `rl.ppo.ppo_update` logged as `losses/<name>`.
LOSS_STATS = (
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clipfrac",
    "explained_variance",
)

STEPS_PER_SECOND = "perf/sps"
FRAMES_PER_SECOND = "perf/fps"
LEARNER_SECONDS = "perf/learner_seconds"
WORKER_RESTARTS = "perf/worker_restarts"
#: Metric points the tracking queue dropped (oldest first) while the server was unreachable.
DROPPED_POINTS = "tracking/dropped_points"
#: CPU cores the run keeps busy: CPU seconds of the trainer and its worker processes per second.
CPU_CORES = "perf/cpu_cores"

EPISODE_PREFIX = "episode/"
#: Per replica of a multi-replica run: `replica/<rank>/<name>` (the perf/* figures are global).
REPLICA_PREFIX = "replica/"
REPLICA_COLLECT_SPS = "collect_sps"  # env steps/s of its own emulators while collecting
REPLICA_LEARNER_FRACTION = "learner_fraction"  # share of its time in the update (with all-reduce)


def episode_stat(name: str) -> str:
    """`episode/<name>`: an adapter's number at the end of an episode (e.g. rooms visited)."""
    return EPISODE_PREFIX + name


def loss(name: str) -> str:
    return LOSS_PREFIX + name


def replica(rank: int, name: str) -> str:
    """`replica/<rank>/<name>`: one replica's own figure."""
    return f"{REPLICA_PREFIX}{rank}/{name}"
