"""Tracking: the only code that talks to MLflow, and the checkpoints on disk.

- `tracker`: the interface the loop logs to, and `NullTracker` (no MLflow);
- `mlflow_run`: `MlflowTracker`, one MLflow run per job, found again after a restart;
- `checkpoints`: atomic checkpoint files of one job;
- `queries`: reading a sweep back (`trainer compare`) and logging summary runs;
- `client`: helpers over `MlflowClient` the others share.

Nothing is imported here, so `trainer compare` (queries) never imports torch (checkpoints).
"""
