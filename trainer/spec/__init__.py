"""The job spec: one Pydantic-validated YAML document is the single source of truth.

- `models`: the Pydantic models (every field described, unknown keys rejected);
- `base`: their base, `SpecModel` (unknown keys and booleans given for numbers are errors);
- `kube_settings`: the `resources` and `kubernetes` sections (the Job's pod);
- `loading`: YAML → `JobSpec` with overrides and errors that name file, line and key;
- `identity`: Job names, the canonical document and its digest (shared with the Helm chart),
  the training hash, the sweep id and the run id (the training settings' identity);
- `cpus`: how many CPUs this process may use;
- `reference`: the JSON Schema and the README's reference tables;
- `kube_rules`: the Kubernetes API server's rules for names, labels, tolerations, quantities
  and mount paths, which the models apply;
- `tracking_uri`: which MLflow tracking URIs can work (the spec's, $MLFLOW_TRACKING_URI's and
  the `--tracking-uri` options').

This package imports nothing of ours but `trainer.errors` (a leaf). Import from here.
"""

from trainer.spec.cpus import available_cpus
from trainer.spec.identity import (
    ENV_JOB_NAME,
    ENV_RDZV_ENDPOINT,
    ENV_RDZV_ID,
    ENV_RUN_ID,
    ENV_SWEEP_ID,
    job_name,
    run_id,
    run_identity,
    spec_document,
    spec_hash,
    sweep_id,
    training_hash,
)
from trainer.spec.kube_rules import parse_quantity
from trainer.spec.loading import ENV_OVERRIDES, load_spec, validate_spec
from trainer.spec.models import BUTTONS, JobSpec, SpecError, check_env_counts, sweep_grid
from trainer.spec.tracking_uri import environment_tracking_uri, tracking_uri_problem

__all__ = [
    "BUTTONS",
    "ENV_JOB_NAME",
    "ENV_RDZV_ENDPOINT",
    "ENV_RDZV_ID",
    "ENV_RUN_ID",
    "ENV_OVERRIDES",
    "ENV_SWEEP_ID",
    "JobSpec",
    "SpecError",
    "available_cpus",
    "check_env_counts",
    "environment_tracking_uri",
    "sweep_grid",
    "job_name",
    "load_spec",
    "parse_quantity",
    "run_id",
    "run_identity",
    "spec_document",
    "spec_hash",
    "sweep_id",
    "tracking_uri_problem",
    "training_hash",
    "validate_spec",
]
