"""Fault injection: a trainer stopped by SIGTERM or killed by SIGKILL is restarted and finishes in
the same MLflow run, with continuous, unduplicated metric steps (a real MLflow server on loopback,
the real `trainer run` process)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

TOTAL_STEPS = 8000


def write_spec(tmp_path: Path, uri: str, name: str) -> Path:
    spec = {
        "name": name,
        "seed": 5,
        "env": {"num_envs": 2, "episode_length": 40},
        "ppo": {
            "total_steps": TOTAL_STEPS,
            "rollout_steps": 64,
            "update_epochs": 2,
            "batch_size": 64,
        },
        "checkpoint": {"dir": str(tmp_path / "runs"), "every_updates": 3},
        "mlflow": {"tracking_uri": uri, "experiment": "resume-tests", "log_model": False},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def start(spec: Path, log: Path, **extra_env: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAIN_", "TRAINER_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "trainer", "run", str(spec)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**env, "PYTHONUNBUFFERED": "1", **extra_env},
    )


def wait_for_checkpoint(root: Path, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    """Until the job has written at least two checkpoints (so it is mid-run, not starting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = list(root.glob("*/checkpoints/step_*.pt"))
        if len(steps) >= 2:
            return
        assert proc.poll() is None, "trainer exited before writing checkpoints"
        time.sleep(0.1)
    raise AssertionError("no checkpoint within the timeout")


def one_run(uri: str, name: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("resume-tests")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`trainer.job_id` LIKE '{name}-%'"
    )
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0]


def assert_continuous(client, run_id: str) -> None:
    # One point per update for these: a step seen twice would be a resume that logged again.
    for key in ("perf/sps", "losses/value_loss"):
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert steps, key
        assert len(steps) == len(set(steps)), f"{key}: duplicated steps {sorted(steps)}"
    # Episodes: both envs may end at the same step, never more than that.
    episode_steps = [m.step for m in client.get_metric_history(run_id, "charts/episodic_return")]
    assert episode_steps and max(episode_steps.count(s) for s in set(episode_steps)) <= 2
    updates = sorted(m.step for m in client.get_metric_history(run_id, "perf/sps"))
    assert updates[-1] == TOTAL_STEPS
    assert updates[0] <= 2 * 64 * 3, "the first updates' metrics were logged"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_killed_run_resumes_in_same_mlflow_run(tmp_path, mlflow_server, sig):
    name = f"resume-{sig.name.lower()}"
    spec = write_spec(tmp_path, mlflow_server, name)
    log = tmp_path / "trainer.log"
    proc = start(spec, log)
    wait_for_checkpoint(tmp_path / "runs", proc)
    proc.send_signal(sig)
    code = proc.wait(timeout=30)
    if sig == signal.SIGTERM:
        assert code == 143, log.read_text()[-2000:]
        assert "SIGTERM: checkpoint written" in log.read_text()
        _, run = one_run(mlflow_server, name)
        assert run.info.status == "KILLED"
    else:
        assert code == -signal.SIGKILL

    restarted = start(spec, log)
    assert restarted.wait(timeout=300) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "Resuming from step" in text
    assert f"Final step: {TOTAL_STEPS:,}" in text
    client, run = one_run(mlflow_server, name)
    assert run.info.status == "FINISHED"
    assert int(run.data.tags["trainer.starts"]) >= 2
    assert_continuous(client, run.info.run_id)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert "checkpoints/latest.pt" in artifacts
    logs = [a.path for a in client.list_artifacts(run.info.run_id) if a.path.startswith("console")]
    assert any(p.startswith("console-from-step-") for p in logs), logs
    # SIGKILL leaves no time to upload the first start's log; SIGTERM does.
    assert ("console.log" in logs) == (sig == signal.SIGTERM), logs


def test_pod_without_local_checkpoints_resumes_from_mlflow(tmp_path, mlflow_server):
    """A new pod has no PVC: the checkpoint comes back from the MLflow run found by its tag."""
    name = "resume-fetch"
    spec = write_spec(tmp_path, mlflow_server, name)
    log = tmp_path / "trainer.log"
    proc = start(spec, log)
    wait_for_checkpoint(tmp_path / "runs", proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    shutil.rmtree(tmp_path / "runs")
    assert start(spec, log).wait(timeout=300) == 0, log.read_text()[-3000:]
    text = log.read_text()
    resumed = [line for line in text.splitlines() if "Resuming from step" in line]
    assert resumed and not resumed[-1].startswith("↩️  Resuming from step 0 ")
    client, run = one_run(mlflow_server, name)
    assert run.info.status == "FINISHED"
    assert_continuous(client, run.info.run_id)


def test_new_job_with_larger_budget_and_other_image_continues_the_run(tmp_path, mlflow_server):
    """Issue 12: a new Job (another name: its spec changed) that only raises `ppo.total_steps`
    and changes Kubernetes-only fields continues the same checkpoints and MLflow run."""
    name = "resume-further"
    spec = write_spec(tmp_path, mlflow_server, name)
    data = yaml.safe_load(spec.read_text())
    data["ppo"]["total_steps"] = TOTAL_STEPS // 2
    spec.write_text(yaml.safe_dump(data))
    log = tmp_path / "trainer.log"
    assert start(spec, log, TRAINER_JOB_NAME="job-a").wait(timeout=300) == 0
    data["ppo"]["total_steps"] = TOTAL_STEPS
    data["kubernetes"] = {"image": "example.org/trainer:v2", "ttl_seconds_after_finished": 60}
    spec.write_text(yaml.safe_dump(data))
    assert start(spec, log, TRAINER_JOB_NAME="job-b").wait(timeout=300) == 0, log.read_text()[
        -3000:
    ]
    text = log.read_text()
    resumed = [line for line in text.splitlines() if "Resuming from step" in line]
    assert len(resumed) == 1 and f"{TOTAL_STEPS // 2:,}" in resumed[0], resumed
    assert f"Final step: {TOTAL_STEPS:,}" in text
    assert len(list((tmp_path / "runs").iterdir())) == 1  # one checkpoint folder
    client, run = one_run(mlflow_server, name)
    assert run.info.status == "FINISHED"
    assert run.data.tags["trainer.k8s_job"] == "job-b"
    assert run.data.params["ppo.total_steps"] == str(TOTAL_STEPS // 2)  # params are immutable
    assert_continuous(client, run.info.run_id)


def test_checkpoint_of_other_spec_is_refused_without_force(tmp_path, mlflow_server):
    spec = write_spec(tmp_path, mlflow_server, "resume-mismatch")
    log = tmp_path / "trainer.log"
    assert start(spec, log).wait(timeout=300) == 0
    data = yaml.safe_load(spec.read_text())
    data["ppo"]["learning_rate"] = 0.01
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(data))
    env = {**os.environ, "TRAINER_RUN_ID": next((tmp_path / "runs").iterdir()).name}
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "run", str(other)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "different spec" in proc.stderr and "--force" in proc.stderr


# ---- one trainer per job folder -----------------------------------------------------------------
def test_a_second_holder_of_a_job_folder_is_refused_naming_the_first_until_it_lets_go(tmp_path):
    import threading

    from trainer.tracking.checkpoints import CheckpointStore, RunInUse

    first, second = CheckpointStore(tmp_path / "job"), CheckpointStore(tmp_path / "job")
    first.lock()
    with pytest.raises(RunInUse, match=rf"another trainer \(pid {os.getpid()} on "):
        second.lock()
    said: list[str] = []
    threading.Timer(1.0, first.unlock).start()
    second.lock(wait_s=30, warn=said.append)  # the replacement pod waits for the old one
    assert len(said) == 1 and "waiting for it" in said[0]
    second.unlock()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    from trainer.tracking.checkpoints import CheckpointStore

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from trainer.tracking.checkpoints import "
         f"CheckpointStore; CheckpointStore({str(tmp_path / 'job')!r}).lock(); print('held', "
         "flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    CheckpointStore(tmp_path / "job").lock()  # the kernel released it with the process


def test_trainer_run_of_a_job_another_trainer_is_running_exits_1_before_anything_starts(tmp_path):
    """Found by probing: the same `trainer run` twice trained twice into one folder (and would
    into one MLflow run), interleaving checkpoints."""
    from trainer.spec import load_spec, run_identity
    from trainer.tracking.checkpoints import CheckpointStore

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {"name": "twice", "checkpoint": {"dir": str(tmp_path / "runs")},
             "mlflow": {"enabled": False}, "ppo": {"total_steps": 256}}
        )
    )  # fmt: skip
    running = CheckpointStore(tmp_path / "runs" / run_identity(load_spec(spec_path)))
    running.lock()
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "run", str(spec_path)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "TRAINER_JOB_NAME": ""},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert (
        "checkpoint.dir: another trainer (pid" in proc.stderr and "Initializing" not in proc.stdout
    )
    assert not (running.root / "checkpoints").exists()
    running.unlock()


def test_a_pod_waits_for_its_predecessor_a_terminal_does_not(monkeypatch):
    from trainer.rl.train import lock_wait_s
    from trainer.spec import validate_spec

    spec = validate_spec({"name": "x", "kubernetes": {"termination_grace_period_seconds": 60}})
    monkeypatch.delenv("TRAINER_JOB_NAME", raising=False)
    assert lock_wait_s(spec) == 0
    monkeypatch.setenv("TRAINER_JOB_NAME", "x-e2-1234abcd")
    assert lock_wait_s(spec) == 60 + 90


def test_a_run_that_fails_at_start_leaves_no_job_folder(tmp_path):
    """The lock makes the job's folder before MLflow starts; a run refused there (mlflow.required
    and no server) must not leave it behind."""
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {"name": "nothing", "checkpoint": {"dir": str(tmp_path / "runs")},
             "mlflow": {"tracking_uri": "http://127.0.0.1:9", "required": True},
             "ppo": {"total_steps": 256}}
        )
    )  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "run", str(spec_path)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 1 and "mlflow.required is true" in proc.stderr, proc.stderr
    assert not list((tmp_path / "runs").iterdir()) if (tmp_path / "runs").exists() else True
