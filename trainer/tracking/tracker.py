"""What the training loop logs to: the `Tracker` interface, and `NullTracker` for runs without
MLflow, so "no MLflow" is one object, not `if`s in the loop. `mlflow_run.MlflowTracker` is the
real one. Imports neither MLflow nor torch (type hints only).

The contract the loop relies on: after `start()`, no call waits on the network (they queue),
except the start-up reads `logged_steps` and `fetch_latest_checkpoint`. Metric points the
server has not confirmed yet go into each checkpoint (`unsent_metrics`) and are logged again on
resume (`restore_unsent`), so a SIGKILL loses no metric step, even in the middle of an outage.
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]

#: Where a checkpoint keeps `Tracker.unsent_metrics()`.
UNSENT_METRICS = "unsent_metrics"

# MLflow's limits (mlflow/utils/validation.py).
MAX_PARAM_VALUE_LENGTH = 6000


@dataclass(frozen=True)
class LoggedSteps:
    """The last step a run holds, per metric key: on resume, a point at or below its own key's
    step is in the run already and is not sent again.

    Per key, not one step for the whole run: the points of one step are not sent atomically (a
    kill can land between an update's episode points and its `perf/sps`), so a single floor taken
    from the newest key would drop the keys still missing at that step."""

    by_key: Mapping[str, int] = field(default_factory=dict)

    def holds(self, key: str, step: int) -> bool:
        return step <= self.by_key.get(key, -1)

    def new(self, metrics: Mapping[str, float], step: int) -> dict[str, float]:
        """The points of `metrics` at `step` the run does not hold yet."""
        return {k: v for k, v in metrics.items() if not self.holds(k, step)}

    def last(self, key: str | None = None) -> int:
        """The last step held for `key` (any key if None); -1 when none."""
        if key is not None:
            return self.by_key.get(key, -1)
        return max(self.by_key.values(), default=-1)


class Tracker(abc.ABC):
    """What the training loop logs to. Usable as a context manager (closes FAILED on an error)."""

    run_id: str | None = None
    #: Where a person looks at the run (its page in the MLflow UI), when there is one.
    run_url: str | None = None
    resumed: bool = False

    @abc.abstractmethod
    def start(self) -> None:
        """Find or create the run (idempotent per job identity)."""

    @abc.abstractmethod
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params; nested mappings are flattened to dotted keys (`ppo.learning_rate`)."""

    @abc.abstractmethod
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer metric values at `step`; cheap, never blocks on the network."""

    @abc.abstractmethod
    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged so far is sent (at most `timeout` s); True if it is.
        The loop never calls this; tests and tools do."""

    @abc.abstractmethod
    def logged_steps(self) -> LoggedSteps:
        """The last step the run holds for each metric key (empty when none or unknown)."""

    def last_step(self, key: str | None = None) -> int:
        """Largest step the run holds for `key` (any metric if None); -1 when none or unknown."""
        return self.logged_steps().last(key)

    def unsent_metrics(self) -> dict[str, list[Any]]:
        """Metric points logged but not yet confirmed by the server, packed for a checkpoint
        (plain lists: `torch.load(weights_only=True)` reads them)."""
        return pack_points([])

    def restore_unsent(self, packed: Mapping[str, list[Any]] | None) -> LoggedSteps:
        """On resume: log again the points a checkpoint kept as unsent that the run does not
        hold; returns what the run holds, which the loop does not log again."""
        held = self.logged_steps()
        for key, value, step in unpack_points(packed):
            if not held.holds(key, step):
                self.log_metrics({key: value}, step)
        return held

    @abc.abstractmethod
    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Upload a local file (into the folder `artifact_path` of the run's artifacts)."""

    @abc.abstractmethod
    def log_text(self, text: str, artifact_file: str) -> None:
        """Store `text` as the artifact `artifact_file` (e.g. `spec.yaml`)."""

    @abc.abstractmethod
    def log_checkpoint(self, path: str | os.PathLike[str], step: int) -> None:
        """Upload a checkpoint as `checkpoints/step_<step>.pt` and `checkpoints/latest.pt`."""

    @abc.abstractmethod
    def fetch_latest_checkpoint(self, dest_dir: str | os.PathLike[str]) -> Path | None:
        """Download the run's `checkpoints/latest.pt` into `dest_dir`; None when there is none."""

    @abc.abstractmethod
    def log_model(
        self, model: torch.nn.Module, obs_example: torch.Tensor | None = None, name: str = "policy"
    ) -> None:
        """Log the final policy as an MLflow PyTorch model."""

    @abc.abstractmethod
    def close(self, status: RunStatus = "FINISHED") -> None:
        """Flush and mark the run FINISHED, FAILED or KILLED (idempotent)."""

    def __enter__(self) -> Tracker:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close("KILLED")
        else:
            self.close("FAILED")


class NullTracker(Tracker):
    """Tracks nothing (`mlflow.enabled: false`); never imports MLflow."""

    def start(self) -> None:
        pass

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def logged_steps(self) -> LoggedSteps:
        return LoggedSteps()

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def log_checkpoint(self, path: str | os.PathLike[str], step: int) -> None:
        pass

    def fetch_latest_checkpoint(self, dest_dir: str | os.PathLike[str]) -> Path | None:
        return None

    def log_model(
        self, model: torch.nn.Module, obs_example: torch.Tensor | None = None, name: str = "policy"
    ) -> None:
        pass

    def close(self, status: RunStatus = "FINISHED") -> None:
        pass


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping → `{"ppo.learning_rate": "0.00025", ...}` with MLflow-sized string values.

    Lists and empty mappings are JSON-encoded; values longer than MLflow's 6000-character limit
    are cut (with a marker) rather than rejected.
    """
    out: dict[str, str] = {}
    for key, value in params.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_params(value, dotted + "."))
            continue
        text = json.dumps(value) if isinstance(value, list | tuple | Mapping) else str(value)
        if len(text) > MAX_PARAM_VALUE_LENGTH:
            text = text[: MAX_PARAM_VALUE_LENGTH - 15] + "…[truncated]"
        out[dotted] = text
    return out


def pack_points(points: Iterable[tuple[str, float, int, int]]) -> dict[str, list[Any]]:
    """(key, value, timestamp, step) points → columns (`keys` once, then one index per point)."""
    keys: dict[str, int] = {}
    packed: dict[str, list[Any]] = {"keys": [], "key": [], "value": [], "step": []}
    for key, value, _, step in points:
        packed["key"].append(keys.setdefault(key, len(keys)))
        packed["value"].append(float(value))
        packed["step"].append(int(step))
    packed["keys"] = list(keys)
    return packed


def unpack_points(packed: Mapping[str, list[Any]] | None) -> list[tuple[str, float, int]]:
    """`pack_points`' columns → (key, value, step); none for None (an older checkpoint)."""
    if not packed:
        return []
    keys = packed["keys"]
    return [
        (keys[k], float(v), int(s))
        for k, v, s in zip(packed["key"], packed["value"], packed["step"], strict=True)
    ]
