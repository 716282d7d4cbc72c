"""What the training loop logs to: the `Tracker` interface, and `NullTracker` for runs without
MLflow, so "no MLflow" is one object, not `if`s in the loop. `mlflow_run.MlflowTracker` is the
real one. Imports neither MLflow nor torch (type hints only).
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]

# MLflow's limits (mlflow/utils/validation.py).
MAX_PARAM_VALUE_LENGTH = 6000


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
    def flush(self) -> None:
        """Send buffered metrics now."""

    @abc.abstractmethod
    def last_step(self, key: str | None = None) -> int:
        """Largest step logged so far for `key` (any metric if None); -1 when none."""

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

    def flush(self) -> None:
        pass

    def last_step(self, key: str | None = None) -> int:
        return -1

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
