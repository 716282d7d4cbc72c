"""The MLflow side of a sweep, as a user sees it: a local sweep against a real `mlflow server`
on loopback, then what the UI would show, read through the MLflow client: the experiment marked
as model training, one parent run per sweep with the Job runs as its children, the comparison
and a video of the agent as artifacts, system metrics beside the training metrics."""

from __future__ import annotations

import threading

import pytest
from PIL import Image

from trainer import launcher, metrics
from trainer.spec import validate_spec
from trainer.sweep import plan
from trainer.tracking.client import EXPERIMENT_KIND, TAG_EXPERIMENT_KIND
from trainer.tracking.sweeps import (
    TAG_PARENT_RUN,
    TAG_SWEEP_PARENT,
    sweep_lock_name,
    sweep_run,
)

pytestmark = pytest.mark.slow

EXPERIMENT = "ui-tests"


def sweep_spec(tmp_path, **mlflow) -> dict:
    return {
        "name": "ui",
        "seed": 2,
        "env": {"episode_length": 64},
        "ppo": {"total_steps": 1024, "rollout_steps": 64, "update_epochs": 1, "batch_size": 64},
        "checkpoint": {"dir": str(tmp_path / "runs"), "every_updates": 4, "video_every": 1},
        "mlflow": {"experiment": EXPERIMENT, "system_metrics_interval_s": 1, **mlflow},
        "sweep": {"num_envs": [1, 2]},
    }


@pytest.fixture(scope="module")
def finished_sweep(mlflow_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui-sweep")
    spec = validate_spec(sweep_spec(tmp, tracking_uri=mlflow_server))
    lines: list[str] = []
    code = launcher.run_local(spec, max_cpus=8, echo=lines.append)
    assert code == 0, "\n".join(lines[-40:])
    sweep, _ = plan(spec)
    return sweep, lines


def test_experiment_opens_on_training_runs(finished_sweep, mlflow_server):
    from mlflow import MlflowClient

    experiment = MlflowClient(mlflow_server).get_experiment_by_name(EXPERIMENT)
    assert experiment.tags[TAG_EXPERIMENT_KIND] == EXPERIMENT_KIND


def test_sweep_is_one_parent_with_the_job_runs_as_children(finished_sweep, mlflow_server):
    from mlflow import MlflowClient

    sweep, lines = finished_sweep
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    parents = client.search_runs([experiment], f"tags.`{TAG_SWEEP_PARENT}` = '{sweep}'")
    assert len(parents) == 1, [p.info.run_id for p in parents]
    parent = parents[0]
    children = client.search_runs([experiment], f"tags.`{TAG_PARENT_RUN}` = '{parent.info.run_id}'")
    assert sorted(int(c.data.tags["num_envs"]) for c in children) == [1, 2]
    for child in children:
        assert child.info.status == "FINISHED"
        assert metrics.EPISODIC_RETURN in child.data.metrics
        assert metrics.CPU_CORES in child.data.metrics and child.data.metrics[metrics.CPU_CORES] > 0
        assert any(key.startswith("system/cpu_utilization") for key in child.data.metrics)
    # The comparison (run by the launcher at the end of the local sweep) is on the parent.
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")}
    assert {"comparison/comparison.png", "comparison/comparison.md"} <= names
    assert any("logged to the sweep's MLflow run" in line for line in lines)


def test_every_run_has_the_agent_on_video(finished_sweep, mlflow_server, tmp_path):
    from mlflow import MlflowClient

    sweep, _ = finished_sweep
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    for child in client.search_runs([experiment], f"tags.sweep_id = '{sweep}'"):
        if child.data.tags.get("trainer.kind") != "train":
            continue
        videos = [a.path for a in client.list_artifacts(child.info.run_id, "videos")]
        # Every checkpoint (video_every: 1; 4 updates each) and the end of training.
        assert len(videos) >= 2, videos
        assert all("_return_" in v and v.endswith(".gif") for v in videos)
        local = client.download_artifacts(child.info.run_id, videos[-1], str(tmp_path))
        with Image.open(local) as gif:
            assert gif.n_frames > 10 and gif.size == (320, 288)


@pytest.mark.parametrize("round_", range(3))
def test_parent_creation_elects_one_when_runs_start_together(mlflow_server, round_):
    """Eight starters at once (a Job's pods): one parent exists and all of them use it."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    experiment = client.create_experiment(f"ui-race-{round_}")
    found: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        found.append(sweep_run(MlflowClient(mlflow_server), experiment, "race-1234abcd"))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    alive = client.search_runs([experiment], f"tags.`{TAG_SWEEP_PARENT}` = 'race-1234abcd'")
    assert len(alive) == 1 and found == [alive[0].info.run_id] * 8


def test_a_dead_lock_holder_does_not_block_the_sweep(mlflow_server):
    """The lock's holder died before creating the parent: a waiter creates it after wait_s."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    experiment = client.create_experiment("ui-dead-lock")
    client.create_experiment(sweep_lock_name(experiment, "dead-1234abcd"))
    parent = sweep_run(client, experiment, "dead-1234abcd", wait_s=0.2)
    assert sweep_run(client, experiment, "dead-1234abcd") == parent
    alive = client.search_runs([experiment], f"tags.`{TAG_SWEEP_PARENT}` = 'dead-1234abcd'")
    assert [run.info.run_id for run in alive] == [parent]


def test_play_writes_a_gif_of_a_checkpoint_and_fetches_a_run(
    finished_sweep, mlflow_server, tmp_path
):
    from click.testing import CliRunner
    from mlflow import MlflowClient

    from trainer.cli import main

    sweep, _ = finished_sweep
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    run = client.search_runs([experiment], f"tags.sweep_id = '{sweep}' and tags.num_envs = '2'")[0]
    out = tmp_path / "agent.gif"
    result = CliRunner().invoke(
        main,
        [
            "play",
            run.info.run_id,
            "--tracking-uri",
            mlflow_server,
            "--out",
            str(out),
            "--steps",
            "40",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "return" in result.output and out.read_bytes()[:6] == b"GIF89a"
    missing = CliRunner().invoke(main, ["play", "0" * 32, "--tracking-uri", mlflow_server])
    assert missing.exit_code == 2 and "RUN_ID" in missing.output


def test_browser_shows_the_sweep_nested_with_comparison_and_video(
    finished_sweep, mlflow_server, tmp_path
):
    """Headless Chromium on the real UI: the pages load and name the sweep's runs (the
    screenshots are what the README shows; look at them when the UI changes)."""
    import importlib.util
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "mlflow_screenshots.py"
    spec = importlib.util.spec_from_file_location("mlflow_screenshots", script)
    shots = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = shots  # dataclasses look their module up there
    spec.loader.exec_module(shots)
    sweep, _ = finished_sweep
    assert Path(shots.CHROMIUM).exists(), "Chromium is missing: run `make tools`"
    found = shots.find(mlflow_server, sweep, EXPERIMENT)
    texts = shots.capture(found, tmp_path)
    assert sweep in texts["runs"] and all(
        name[:10] in texts["runs"] for name in found.child_names
    ), texts["runs"][:2000]
    assert "Training runs" not in texts["runs"] and "Traces" in texts["runs"]  # model-training mode
    assert "charts/episodic_return" in texts["charts"]
    assert "comparison.png" in texts["comparison"]
    assert ".gif" in texts["video"] and "_return_" in texts["video"]
    for name in ("runs", "charts", "comparison", "video"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
