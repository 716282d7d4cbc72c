"""Tracking and checkpoints: CheckpointStore and RNG state on disk (fast), MlflowTracker against
a real MLflow server (slow, the `mlflow_server` fixture in conftest.py)."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from trainer.rl.seeding import generator, restore_generator, rng_state, set_rng_state
from trainer.spec import JobSpec, job_name, run_id, run_identity, spec_hash, training_hash
from trainer.tracking.checkpoints import CheckpointStore
from trainer.tracking.client import TAG_JOB_ID
from trainer.tracking.mlflow_run import MlflowTracker, resolve_tracking_uri
from trainer.tracking.tracker import flatten_params


def make_spec(**mlflow: object) -> JobSpec:
    return JobSpec.model_validate({"name": "track-test", "mlflow": mlflow})


def make_state(step: int, spec: JobSpec | None = None) -> dict:
    spec = spec or make_spec()
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.Adam(model.parameters())
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "global_step": step,
        "update": step // 10,
        "episodes": 3,
        "rng": rng_state(),
        "training_hash": training_hash(spec),
        "spec_yaml": spec.to_yaml(),
    }


# ---- identity and params --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, environ, expected",
    [
        ("pod or local: the training settings' run id", {}, None),
        ("the Job name does not choose the run", {"TRAINER_JOB_NAME": "zelda-e8-abc123"}, None),
        ("an explicit run id wins", {"TRAINER_RUN_ID": "zelda-e8-rforced"}, "zelda-e8-rforced"),
        ("blank env var is ignored", {"TRAINER_RUN_ID": " "}, None),
    ],
)
def test_run_identity(name, environ, expected):
    spec = make_spec()
    expected = expected or run_id(spec)
    assert run_identity(spec, environ) == expected
    assert job_name(spec) == f"track-test-e2-{spec_hash(spec, 8)}"


@pytest.mark.parametrize(
    "change, same_run",
    [
        ({"ppo.total_steps": 999_999}, True),  # train further: the same run continues
        ({"kubernetes.image": "example.org/trainer:v2"}, True),
        ({"kubernetes.ttl_seconds_after_finished": 60, "kubernetes.namespace": "other"}, True),
        ({"mlflow.tags": {"note": "x"}, "resources.cpu_per_env": 2.0}, True),
        ({"checkpoint.every_updates": 3, "env.backend": "serial"}, True),
        ({"ppo.learning_rate": 0.001}, False),
        ({"seed": 7}, False),
        ({"env.num_envs": 4}, False),
        ({"game.reward": {"step": -0.5}}, False),
    ],
)
def test_run_id_follows_training_settings_and_job_name_the_whole_spec(change, same_run):
    spec = make_spec()
    other = spec.updated(change)
    assert job_name(other) != job_name(spec)  # Jobs are immutable: any change is a new Job
    assert (run_id(other) == run_id(spec)) is same_run
    assert (training_hash(other) == training_hash(spec)) is same_run
    assert run_id(spec).startswith("track-test-e2-r")


def test_flatten_params():
    flat = flatten_params(
        {
            "ppo": {"learning_rate": 0.00025, "target_kl": None},
            "env": {"actions": ["a", "b"]},
            "game": {"reward": {}},
            "x": "y" * 7000,
        }
    )
    assert flat["ppo.learning_rate"] == "0.00025"
    assert flat["ppo.target_kl"] == "None"
    assert flat["env.actions"] == '["a", "b"]'
    assert flat["game.reward"] == "{}"
    assert len(flat["x"]) <= 6000 and flat["x"].endswith("[truncated]")
    spec_flat = flatten_params(make_spec().model_dump(mode="json"))
    assert spec_flat["ppo.total_steps"] == "20000" and spec_flat["mlflow.experiment"] == "pyboy-ppo"


def test_default_tracking_uri_is_mlflow_local_default(tmp_path, monkeypatch):
    """No URI anywhere: MLflow 3's default, a SQLite file in the working directory (what `mlflow ui`
    opens by default)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(make_spec(), environ={}) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert (
        resolve_tracking_uri(make_spec(), environ={"MLFLOW_TRACKING_URI": "http://env:5000"})
        == "http://env:5000"
    )
    spec = make_spec(tracking_uri="http://spec:5000")
    assert (
        resolve_tracking_uri(spec, environ={"MLFLOW_TRACKING_URI": "http://env:5000"})
        == "http://spec:5000"
    )


# ---- checkpoints ------------------------------------------------------------------------------


def test_save_writes_step_and_latest_atomically(tmp_path):
    store = CheckpointStore(tmp_path / "job", keep=3)
    path = store.save(make_state(100), 100)
    assert path == tmp_path / "job" / "checkpoints" / "step_100.pt"
    assert sorted(p.name for p in store.dir.iterdir()) == [
        "latest.pt",
        "step_100.pt",
    ]  # no *.tmp left
    assert path.read_bytes() == store.latest_path.read_bytes()
    assert store.load_latest()["global_step"] == 100


def test_save_interrupted_mid_write_keeps_previous_latest(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path, keep=3)
    store.save(make_state(10), 10)
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # as if SIGKILLed mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        store.save(make_state(20), 20)
    monkeypatch.setattr(torch, "save", real_save)
    assert store.steps() == [10]
    assert store.load_latest()["global_step"] == 10
    store.save(make_state(30), 30)  # the stale .tmp is simply overwritten
    assert store.load_latest()["global_step"] == 30


def test_keep_prunes_all_but_newest_steps(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for step in (8, 16, 24, 32, 40):
        store.save(make_state(step), step)
    assert store.steps() == [32, 40]
    assert store.load_latest()["global_step"] == 40
    with pytest.raises(ValueError, match="keep"):
        CheckpointStore(tmp_path, keep=0)


def test_corrupt_latest_falls_back_to_newest_readable_step(tmp_path, caplog):
    store = CheckpointStore(tmp_path, keep=3)
    for step in (1, 2, 3):
        store.save(make_state(step), step)
    data = store.latest_path.read_bytes()
    store.latest_path.write_bytes(data[: len(data) // 2])  # a partial copy
    store.step_path(3).write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="trainer.tracking.checkpoints"):
        state = store.load_latest()
    assert state["global_step"] == 2
    assert "latest.pt is unusable (CorruptCheckpoint: checksum mismatch" in caplog.text
    assert "using the previous one, step_3.pt" in caplog.text


def test_load_latest_none_when_empty_or_all_unreadable(tmp_path, caplog):
    store = CheckpointStore(tmp_path, keep=3)
    assert store.load_latest() is None
    store.dir.mkdir(parents=True)
    store.latest_path.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="trainer.tracking.checkpoints"):
        assert store.load_latest() is None
    assert "no intact checkpoint" in caplog.text


def test_rng_state_round_trips_through_weights_only_load(tmp_path):
    sampler = generator(7)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached Gaussian in the legacy state
    store = CheckpointStore(tmp_path, keep=1)
    store.save({"rng": rng_state(), "sampler": sampler.get_state()}, 1)
    expected = (
        random.random(),
        np.random.normal(),
        np.random.rand(3).tolist(),
        torch.rand(3).tolist(),
        torch.rand(3, generator=sampler).tolist(),
    )
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    sampler = generator(99)
    state = CheckpointStore.load(store.latest_path)  # what the trainer does
    set_rng_state(state["rng"])
    assert restore_generator(sampler, state["sampler"])
    assert (
        random.random(),
        np.random.normal(),
        np.random.rand(3).tolist(),
        torch.rand(3).tolist(),
        torch.rand(3, generator=sampler).tolist(),
    ) == expected
    assert not restore_generator(sampler, None)


def test_checkpoint_keeps_training_hash_for_the_trainer_to_check(tmp_path):
    store = CheckpointStore(tmp_path, keep=1)
    store.save(make_state(5, make_spec()), 5)
    other = JobSpec.model_validate({"name": "track-test", "ppo": {"hidden_size": 64}})
    state = store.load_latest()
    assert state["training_hash"] == training_hash(make_spec()) != training_hash(other)
    assert JobSpec.model_validate(yaml.safe_load(state["spec_yaml"])) == make_spec()


# ---- NullTracker ---------------------------------------------------------------------------------


def test_null_tracker_does_nothing_and_never_imports_mlflow(tmp_path):
    code = f"""
import sys, torch
from pathlib import Path
from trainer.tracking.tracker import NullTracker
with NullTracker() as t:
    t.log_params({{"a": {{"b": 1}}}}); t.log_metrics({{"x": 1.0}}, 1); t.flush()
    t.log_text("hi", "a.txt"); t.log_artifact(__file__ if "__file__" in dir() else "x"); t.log_checkpoint("x", 1)
    t.log_model(torch.nn.Linear(1, 1))
    assert t.fetch_latest_checkpoint(Path({str(tmp_path)!r})) is None
    assert t.last_step() == -1 and t.run_id is None and t.resumed is False
assert "mlflow" not in sys.modules, "NullTracker imported mlflow"
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert list(tmp_path.iterdir()) == []


# ---- MlflowTracker against a real server ------------------------------------------------------------


@pytest.fixture
def server_spec(mlflow_server):
    """A spec pointing at the test server, in an experiment of its own."""
    return make_spec(
        tracking_uri=mlflow_server, experiment=f"test-{uuid.uuid4().hex[:8]}", tags={"team": "rl"}
    )


@pytest.fixture
def client(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server)


def start_tracker(spec: JobSpec, identity: str, **kwargs) -> MlflowTracker:
    tracker = MlflowTracker(
        spec,
        identity,
        {"rom_sha1": "f" * 40, "num_envs": "2"},
        environ={"TRAINER_SWEEP_ID": "sweep-1"},
        **kwargs,
    )
    tracker.start()
    return tracker


@pytest.mark.slow
def test_new_run_has_params_tags_and_spec(server_spec, client, tmp_path):
    tracker = start_tracker(server_spec, "job-a")
    try:
        assert tracker.flush(timeout=60)  # params and the spec are queued
        assert tracker.run_id and tracker.resumed is False
        run = client.get_run(tracker.run_id)
        assert run.info.run_name == "job-a" and run.info.status == "RUNNING"
        tags = run.data.tags
        assert tags[TAG_JOB_ID] == "job-a"
        assert tags["trainer.spec_hash"] == spec_hash(server_spec)
        assert tags["trainer.training_hash"] == training_hash(server_spec)
        assert (tags["game"], tags["rom"], tags["rom_sha1"], tags["num_envs"]) == (
            "dungeon",
            "builtin:dungeon",
            "f" * 40,
            "2",
        )
        assert (tags["sweep_id"], tags["team"], tags["trainer.starts"]) == ("sweep-1", "rl", "1")
        params = run.data.params
        assert params == flatten_params(server_spec.model_dump(mode="json"))
        assert params["ppo.learning_rate"] == "0.00025" and params["env.actions"].startswith(
            '["noop"'
        )
        spec_text = Path(
            client.download_artifacts(tracker.run_id, "spec.yaml", str(tmp_path))
        ).read_text()
        assert JobSpec.model_validate(yaml.safe_load(spec_text)) == server_spec
    finally:
        tracker.close("FINISHED")
    assert client.get_run(tracker.run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_metrics_are_batched_and_arrive_in_order(server_spec, client):
    tracker = start_tracker(server_spec, "job-metrics", flush_interval_s=3600)
    try:
        for step in range(1, 1201):
            tracker.log_metrics({"charts/a": step * 0.5, "losses/b": -step}, step=step * 8)
        tracker.flush()
        a = client.get_metric_history(tracker.run_id, "charts/a")
        b = client.get_metric_history(tracker.run_id, "losses/b")
        assert [m.step for m in a] == [s * 8 for s in range(1, 1201)]
        assert [m.value for m in a] == [s * 0.5 for s in range(1, 1201)]
        assert [m.value for m in b] == [-s for s in range(1, 1201)]
        assert tracker.last_step() == 9600 and tracker.last_step("charts/a") == 9600
    finally:
        tracker.close()


@pytest.mark.slow
def test_metrics_flush_in_background_without_a_flush_call(server_spec, client):
    tracker = start_tracker(server_spec, "job-bg", flush_interval_s=0.2)
    try:
        tracker.log_metrics({"x": 1.0}, step=1)
        deadline = time.monotonic() + 10
        while not client.get_metric_history(tracker.run_id, "x") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [m.value for m in client.get_metric_history(tracker.run_id, "x")] == [1.0]
        tracker.log_metrics({"x": 2.0}, step=2)
    finally:
        tracker.close("KILLED")  # close flushes what is left
    assert [m.step for m in client.get_metric_history(tracker.run_id, "x")] == [1, 2]
    assert client.get_run(tracker.run_id).info.status == "KILLED"


@pytest.mark.slow
def test_a_step_half_sent_before_a_kill_is_completed_on_resume_and_nothing_doubled(
    server_spec, client
):
    """The points of one step are not sent atomically: a kill after an update's episode point
    reached the server but before its `perf/sps` did. The resumed run logs the missing key at that
    step and none of those the run holds (found by CI: a single floor from the newest key lost
    `perf/sps` at the step an episode also ended)."""
    from trainer.tracking.tracker import pack_points

    first = start_tracker(server_spec, "job-half-sent")
    first.log_metrics({"perf/sps": 100.0, "charts/episodic_return": 1.0}, step=512)
    first.log_metrics({"charts/episodic_return": 2.0}, step=640)
    first.close("KILLED")
    second = start_tracker(server_spec, "job-half-sent")
    try:
        # The checkpoint at 512 kept its points as unsent (the server confirmed them later).
        held = second.restore_unsent(
            pack_points([("perf/sps", 100.0, 1, 512), ("charts/episodic_return", 1.0, 1, 512)])
        )
        assert held.last("perf/sps") == 512 and held.last("charts/episodic_return") == 640
        # The resumed loop replays step 640: only what the run lacks goes out.
        replay = {"perf/sps": 120.0, "charts/episodic_return": 3.0}
        assert held.new(replay, 640) == {"perf/sps": 120.0}
        second.log_metrics(held.new(replay, 640), 640)
        second.log_metrics({"perf/sps": 130.0, "charts/episodic_return": 4.0}, step=768)
        assert second.flush(timeout=60)
        sps = client.get_metric_history(second.run_id, "perf/sps")
        returns = client.get_metric_history(second.run_id, "charts/episodic_return")
        assert sorted(m.step for m in sps) == [512, 640, 768]
        assert sorted((m.step, m.value) for m in returns) == [(512, 1.0), (640, 2.0), (768, 4.0)]
    finally:
        second.close()


@pytest.mark.slow
def test_same_identity_resumes_the_run_other_identity_gets_a_new_one(server_spec, client, caplog):
    first = start_tracker(server_spec, "job-resume")
    first.log_metrics({"x": 1.0}, step=64)
    first.close("KILLED")
    raised = server_spec.model_copy(deep=True)
    raised.ppo.total_steps = 50000
    second = start_tracker(raised, "job-resume")
    try:
        assert second.flush(timeout=60)
        assert second.run_id == first.run_id and second.resumed is True
        run = client.get_run(second.run_id)
        assert run.info.status == "RUNNING"
        assert run.data.tags["trainer.starts"] == "2"
        assert run.data.params["ppo.total_steps"] == "20000"  # MLflow params are immutable
        assert run.data.tags["trainer.total_steps"] == "50000"
        assert second.last_step() == 64
    finally:
        second.close()
    other = start_tracker(server_spec, "job-other")
    try:
        assert other.run_id != first.run_id and other.resumed is False and other.last_step() == -1
    finally:
        other.close()
    runs = client.search_runs([second.experiment_id], f"tags.`{TAG_JOB_ID}` = 'job-resume'")
    assert len(runs) == 1


@pytest.mark.slow
def test_checkpoint_upload_and_fetch_round_trip(server_spec, client, tmp_path):
    store = CheckpointStore(tmp_path / "pod-1", keep=2)
    tracker = start_tracker(server_spec, "job-ckpt")
    assert tracker.fetch_latest_checkpoint(tmp_path / "dl") is None  # a new run has none
    for step in (128, 256):
        tracker.log_checkpoint(store.save(make_state(step), step), step)
        assert tracker.flush(timeout=60)  # else the newer upload replaces the waiting one
    tracker.close("KILLED")
    names = sorted(a.path for a in client.list_artifacts(tracker.run_id, "checkpoints"))
    assert names == ["checkpoints/latest.pt", "checkpoints/step_128.pt", "checkpoints/step_256.pt"]
    assert not list(store.dir.glob(".upload-*"))

    # A second pod without the first one's disk.
    resumed = start_tracker(server_spec, "job-ckpt")
    try:
        fetched = resumed.fetch_latest_checkpoint(tmp_path / "pod-2" / "downloaded")
        assert fetched == tmp_path / "pod-2" / "downloaded" / "latest.pt"
        state = CheckpointStore.load(fetched)
        assert state["global_step"] == 256
        assert torch.equal(
            state["model"]["weight"],
            CheckpointStore.load(store.latest_path)["model"]["weight"],
        )
    finally:
        resumed.close()


@pytest.mark.slow
def test_log_model_is_loadable(server_spec, client, monkeypatch):
    import mlflow.pytorch

    tracker = start_tracker(server_spec, "job-model")
    model = torch.nn.Linear(4, 3)
    tracker.log_model(model, obs_example=torch.zeros(1, 4))
    tracker.close()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server_spec.mlflow.tracking_uri)
    loaded = mlflow.pytorch.load_model(f"runs:/{tracker.run_id}/policy")
    x = torch.randn(2, 4)
    assert torch.equal(loaded(x), model(x))
    models = client.search_logged_models(experiment_ids=[tracker.experiment_id])
    assert [m.name for m in models] == ["policy"] and models[0].source_run_id == tracker.run_id


@pytest.mark.slow
def test_two_pods_creating_the_experiment_at_once(mlflow_server):
    spec = make_spec(tracking_uri=mlflow_server, experiment=f"race-{uuid.uuid4().hex[:8]}")
    trackers = [MlflowTracker(spec, f"job-race-{i}") for i in range(4)]
    errors: list[BaseException] = []

    def start(tracker: MlflowTracker) -> None:
        try:
            tracker.start()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(t,)) for t in trackers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len({t.experiment_id for t in trackers}) == 1
    for tracker in trackers:
        tracker.close()
