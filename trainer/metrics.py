"""MLflow metric names, in one place: the loop logs them, `trainer compare` and `bench` read them.

Namespaces follow CleanRL: `charts/` for what the agent achieves, `losses/` for the update's
losses and diagnostics, `perf/` for throughput. Per-term and per-adapter episode numbers go under
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
#: CPU cores the run keeps busy: CPU seconds of the trainer and its worker processes per second.
CPU_CORES = "perf/cpu_cores"

EPISODE_PREFIX = "episode/"


def episode_stat(name: str) -> str:
    """`episode/<name>`: an adapter's number at the end of an episode (e.g. rooms visited)."""
    return EPISODE_PREFIX + name


def loss(name: str) -> str:
    return LOSS_PREFIX + name
