"""Logging the final policy as an MLflow PyTorch model (a task of the tracking queue).

Kept fast: pinned requirements (no inference in a subprocess), an input-only signature from an
observation (no forward pass, no input example to validate). Pickled, so any `nn.Module` works,
`forward` or not.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mlflow and torch are imported lazily
    import torch


def log_pytorch_model(
    model: torch.nn.Module,
    obs_example: torch.Tensor | None,
    name: str,
    run_id: str,
    tracking_uri: str,
    experiment_id: str,
) -> None:
    """Log `model` as the MLflow model `name` of run `run_id`; raises on failure (the queue
    retries what is transient)."""
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    signature = None
    if obs_example is not None:
        signature = infer_signature(obs_example.detach().cpu().numpy())
    requirements = [
        f"torch=={torch.__version__.split('+')[0]}",
        f"mlflow=={mlflow.__version__}",
    ]
    with contextlib.suppress(ImportError):
        import cloudpickle

        requirements.append(f"cloudpickle=={cloudpickle.__version__}")
    quiet = _DropMessage("Pickle or CloudPickle")  # pickle is our deliberate choice here
    logging.getLogger("mlflow.pytorch").addFilter(quiet)
    try:
        with _fluent_context(tracking_uri, experiment_id):
            mlflow.pytorch.log_model(
                model,
                name=name,
                run_id=run_id,
                signature=signature,
                pip_requirements=requirements,
                serialization_format="pickle",
            )
    finally:
        logging.getLogger("mlflow.pytorch").removeFilter(quiet)


@contextlib.contextmanager
def _fluent_context(tracking_uri: str, experiment_id: str) -> Iterator[None]:
    """Point MLflow's fluent API (used by `log_model`) at our server and experiment, then put
    everything back: the environment variables, and an explicit `set_tracking_uri` (which
    outranks the environment) only if one was in force."""
    import mlflow

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    os.environ["MLFLOW_EXPERIMENT_ID"] = experiment_id
    explicit = None
    if mlflow.get_tracking_uri() != tracking_uri:
        explicit = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        if explicit is not None:
            mlflow.set_tracking_uri(explicit)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str):
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()
