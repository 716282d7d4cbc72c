"""`trainer bench --quick`: a smoke run of every stage (figures are not asserted: no timing
thresholds in tests, the machines are shared and noisy)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_bench_quick_prints_tables_writes_json_and_logs_to_mlflow(tmp_path, mlflow_server):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer",
            "bench",
            "--quick",
            "--envs",
            "1,2",
            "--json",
            str(out),
            "--mlflow",
            "bench-tests",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for title in ("Scaling", "Each stage against its baseline", "End to end and resources"):
        assert title in proc.stdout
    report = json.loads(out.read_text())
    assert [row["num_envs"] for row in report["rows"]] == [1, 2]
    for row in report["rows"]:
        for key in ("raw_fps", "pool_sps", "rollout_sps", "train_sps"):
            assert row[key] > 0 and math.isfinite(row[key]), key
        assert row["pool_fps"] == pytest.approx(row["pool_sps"] * report["frame_skip"])
    assert report["learner_samples_per_second"] > 0
    assert 0 < report["memory_per_env_mb"] < 1024
    assert report["startup_seconds"] > 0

    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("bench-tests")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["pool_sps_e2"] == pytest.approx(report["rows"][1]["pool_sps"])
    assert run.data.metrics["memory_per_env_mb"] == pytest.approx(report["memory_per_env_mb"])
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["bench.json"]


def test_bench_rejects_bad_env_list():
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "bench", "--envs", "1,x"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Invalid value for '--envs'" in proc.stderr
