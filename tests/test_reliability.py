"""Issue 13's faults, each injected for real and its cost asserted: tracking outages (the queue,
and a real MLflow server killed mid-run), corrupt checkpoints and a full disk, bad input
(property-based), secrets in what a run logs, and load on an MLflow server backed by PostgreSQL.

The send queue's own tests drive it with a send function that fails like `requests` does while
a flag says "down": the thinnest boundary (one HTTP call). Everything else uses real servers.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from trainer import metrics
from trainer.bench.servers import free_port
from trainer.errors import InvalidInput
from trainer.tracking import checkpoints
from trainer.tracking.checkpoints import CheckpointStore, CheckpointWriteError
from trainer.tracking.client import describe_failure, is_transient
from trainer.tracking.queue import SendQueue, Task

ROOT = Path(__file__).resolve().parents[1]


# ---- the send queue ------------------------------------------------------------------------
class FlakyServer:
    """What the queue sends to: records batches and tasks; raises ConnectionError while down."""

    def __init__(self) -> None:
        self.down = False
        self.points: list[tuple[str, float, int, int]] = []
        self.tasks: list[str] = []
        self.lines: list[str] = []
        self.attempts = 0

    def send_points(self, points) -> None:
        self.attempts += 1
        if self.down:
            raise requests.ConnectionError("Connection refused")
        self.points.extend(points)

    def task(self, name: str) -> Task:
        def send() -> None:
            self.attempts += 1
            if self.down:
                raise requests.ConnectionError("Connection refused")
            self.tasks.append(name)

        return Task(name, send, key="checkpoint" if name.startswith("checkpoint") else None)

    def queue(self, **kwargs) -> SendQueue:
        return SendQueue(
            self.send_points,
            is_transient=is_transient,
            notify=self.lines.append,
            target="http://mlflow:5000",
            describe=describe_failure,
            interval_s=0.01,
            backoff_max_s=0.05,
            **kwargs,
        )


def points(steps: range, key: str = "perf/sps") -> list[tuple[str, float, int, int]]:
    return [(key, float(step), 0, step) for step in steps]


def test_outage_keeps_every_point_in_order_and_says_so_twice():
    server = FlakyServer()
    queue = server.queue()
    queue.put_points(points(range(0, 10)))
    assert queue.flush(timeout=30)
    server.down = True
    for start in range(10, 60, 10):  # the training thread goes on logging during the outage
        queue.put_points(points(range(start, start + 10)))
    queue.put(server.task("checkpoint at step 59"))
    while server.attempts < 5:  # several failed tries, with backoff
        threading.Event().wait(0.01)
    assert queue.outage and queue.pending().points == 50
    server.down = False
    assert queue.flush(timeout=30)
    queue.close(timeout=5)
    assert [p[3] for p in server.points] == list(range(60))  # nothing lost, nothing twice
    assert server.tasks == ["checkpoint at step 59"]  # the upload was retried until it went
    unreachable = [line for line in server.lines if "unreachable" in line]
    back = [line for line in server.lines if "reachable again" in line]
    assert len(unreachable) == 1 and "connection refused" in unreachable[0]
    assert len(back) == 1 and "50 queued metric points and 1 queued uploads" in back[0]


def test_overflow_drops_the_oldest_points_and_logs_the_count_once_back():
    server = FlakyServer()
    queue = server.queue(max_points=1000)
    server.down = True
    queue.put(server.task("checkpoint at step 0"))
    while not queue.outage:
        threading.Event().wait(0.01)
    queue.put_points(points(range(0, 1500)))
    assert queue.dropped_points == 500
    server.down = False
    assert queue.flush(timeout=30)
    queue.close(timeout=5)
    sent = [p for p in server.points if p[0] == "perf/sps"]
    assert [p[3] for p in sent] == list(range(500, 1500))  # the oldest 500 went
    dropped = [p for p in server.points if p[0] == metrics.DROPPED_POINTS]
    assert [(p[1], p[3]) for p in dropped] == [(500.0, 1499)]
    assert any("500 oldest points were dropped" in line for line in server.lines)


def test_a_newer_checkpoint_replaces_the_waiting_one_and_a_refusal_is_not_retried():
    server = FlakyServer()
    queue = server.queue()
    server.down = True
    queue.put(server.task("checkpoint at step 1"))
    queue.put(server.task("checkpoint at step 2"))
    server.down = False
    assert queue.flush(timeout=30)
    assert server.tasks[-1] == "checkpoint at step 2" and len(server.tasks) <= 2

    def refused() -> None:
        response = requests.Response()
        response.status_code = 400
        raise requests.HTTPError("400 Bad Request", response=response)

    queue.put(Task("params", refused))
    queue.put_points(points(range(3)))
    assert queue.flush(timeout=30)
    queue.close(timeout=5)
    assert queue.rejected == ["params"] and [p[3] for p in server.points] == [0, 1, 2]


def test_logging_never_waits_on_a_hung_server():
    """A request that hangs (a half-open connection) blocks the queue's thread, not the caller."""
    release = threading.Event()
    queue = SendQueue(
        lambda batch: release.wait(),
        is_transient=is_transient,
        notify=lambda line: None,
        target="x",
        interval_s=0.0,
    )
    logged = threading.Event()

    def training_thread() -> None:
        for step in range(2000):
            queue.put_points(points(range(step, step + 1)))
        queue.put(Task("checkpoint", lambda: None))
        logged.set()

    threading.Thread(target=training_thread, daemon=True).start()
    assert logged.wait(timeout=60)  # it finished while the send was still hanging
    assert not release.is_set()
    release.set()
    queue.close(timeout=5)


# ---- checkpoints ---------------------------------------------------------------------------
def state(step: int) -> dict:
    import torch

    return {"global_step": step, "weights": torch.arange(1000, dtype=torch.float32) * step}


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "empty"])
def test_corrupt_latest_falls_back_to_the_previous_good_checkpoint_and_says_so(tmp_path, damage):
    store = CheckpointStore(tmp_path, keep=3)
    store.save(state(100), 100)
    store.save(state(200), 200)
    for path in (store.latest_path, store.step_path(200)):  # the newest, both copies
        data = path.read_bytes()
        if damage == "truncated":
            data = data[: len(data) // 2]
        elif damage == "flipped byte":
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        else:
            data = b""
        path.write_bytes(data)
    warnings: list[str] = []
    loaded = store.load_latest(warn=warnings.append)
    assert loaded is not None and loaded["global_step"] == 100
    assert len(warnings) == 2  # latest.pt and step_200.pt, each named
    assert "latest.pt is unusable" in warnings[0] and "step_200.pt" in warnings[0]
    assert "using the previous one, step_100.pt" in warnings[1]
    with pytest.raises(Exception, match="checksum mismatch|truncated|corrupt|Ran out|EOF|zip"):
        CheckpointStore.load(store.latest_path)


def test_checkpoints_without_checksum_still_load(tmp_path):
    import torch

    path = tmp_path / "old.pt"
    torch.save(state(7), path)
    assert CheckpointStore.load(path)["global_step"] == 7


def test_full_disk_while_writing_keeps_the_previous_checkpoint_and_fails_clearly(
    tmp_path, monkeypatch
):
    store = CheckpointStore(tmp_path, keep=3)
    store.save(state(100), 100)
    before = {p.name: p.read_bytes() for p in store.dir.iterdir()}
    real_write = checkpoints._write_synced

    def disk_fills_up(path: Path, data: bytes) -> None:
        with open(path, "wb") as f:  # half the file reaches the disk, then ENOSPC
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(checkpoints, "_write_synced", disk_fills_up)
    with pytest.raises(CheckpointWriteError) as raised:
        store.save(state(200), 200)
    message = str(raised.value)
    assert "step 200" in message and "disk is full" in message
    assert "previous checkpoint (step 100) is intact" in message
    assert {p.name: p.read_bytes() for p in store.dir.iterdir()} == before  # no .tmp left
    assert store.load_latest()["global_step"] == 100
    monkeypatch.setattr(checkpoints, "_write_synced", real_write)
    store.save(state(300), 300)  # space again: saving works
    assert store.load_latest()["global_step"] == 300


def test_a_checkpoint_folder_that_cannot_be_made_fails_clearly(tmp_path):
    """Found by probing: a name too long for a file name was OSError's traceback (the check
    whether the folder existed raised before the creation's own error handling)."""
    (tmp_path / "afile").write_text("")
    for root, why in ((tmp_path / ("d" * 300), "File name too long"), (tmp_path / "afile", "")):
        with pytest.raises(CheckpointWriteError, match=f"checkpoint.dir: cannot create .*{why}"):
            CheckpointStore(root / "job").lock()


# ---- bad input, property-based ---------------------------------------------------------------
BASE = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())

#: Leaves of the spec a user sets, each with values of the wrong kind or out of range.
WRONG = st.one_of(
    st.text(alphabet="xyz!? ", min_size=1, max_size=8),
    st.integers(max_value=-1),
    st.lists(st.integers(), min_size=1, max_size=2),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), min_size=1, max_size=2),
    st.just(float("nan")),
)
NUMERIC_KEYS = [
    "env.num_envs", "env.frame_skip", "env.episode_length", "ppo.total_steps",
    "ppo.rollout_steps", "ppo.update_epochs", "ppo.batch_size", "ppo.learning_rate",
    "ppo.clip_coef", "checkpoint.every_updates", "checkpoint.keep", "seed",
    "mlflow.max_buffered_points", "env.max_worker_restarts",
]  # fmt: skip
SECTIONS = ["", "env", "ppo", "checkpoint", "mlflow", "game", "env.obs", "resources"]
KEY_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)


@st.composite
def mutation(draw) -> tuple[str, object]:
    """(dotted key, value): a wrong value for a known key, or any value for an unknown key."""
    if draw(st.booleans()):
        return draw(st.sampled_from(NUMERIC_KEYS)), draw(WRONG)
    section = draw(st.sampled_from(SECTIONS))
    name = draw(KEY_NAME.filter(lambda k: k not in _keys_of(section)))
    return (f"{section}.{name}" if section else name), draw(st.integers() | st.text(max_size=5))


def _keys_of(section: str) -> set[str]:
    from trainer.spec import JobSpec

    model = JobSpec
    for part in filter(None, section.split(".")):
        model = model.model_fields[part].annotation
    return set(model.model_fields)


def set_path(doc: dict, dotted: str, value: object) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[leaf] = value


def override(key: str, value: object) -> str:
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return f"{key}={text.removesuffix('...').strip()}"


@pytest.fixture
def nothing_starts(monkeypatch):
    """Fails the test if an emulator pool or an MLflow tracker is created."""
    started: list[str] = []
    import trainer.rl.train as train_module

    monkeypatch.setattr(train_module, "start_envs", lambda *a, **k: started.append("envs"))
    monkeypatch.setattr(train_module, "make_tracker", lambda *a, **k: started.append("tracker"))
    for name in list(os.environ):
        if name.startswith("TRAIN_"):
            monkeypatch.delenv(name)
    return started


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(in_file=st.lists(mutation(), max_size=3), on_command_line=st.lists(mutation(), max_size=2))
def test_invalid_specs_and_overrides_exit_2_naming_a_key(nothing_starts, in_file, on_command_line):
    from trainer.cli import main

    doc = yaml.safe_load(yaml.safe_dump(BASE))
    doc["mlflow"]["tracking_uri"] = "http://127.0.0.1:9"  # nothing listens: nothing can be sent
    for key, value in in_file:
        set_path(doc, key, value)
    overrides = [override(key, value) for key, value in on_command_line]
    expected: InvalidInput | None = None
    try:
        load_doc(doc, overrides)
    except InvalidInput as exc:
        expected = exc
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"load_spec raised {type(exc).__name__} instead of InvalidInput: {exc}")
    event("valid" if expected is None else "invalid")
    if expected is None:
        return  # every mutation happened to be valid: nothing to check here
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(doc))
        args = ["run", str(spec_path), *[a for o in overrides for a in ("--set", o)]]
        result = CliRunner().invoke(main, args)
    err = result.stderr if hasattr(result, "stderr") else result.output
    assert result.exit_code == 2, (args, err)
    assert "Traceback" not in result.output and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), err
    named = (key.rsplit(".", 1)[-1] for key, _ in [*in_file, *on_command_line])
    assert any(name in err for name in named), err  # names a key it was given
    assert nothing_starts == []


def load_doc(doc: dict, overrides: list[str]):
    """The CLI's own loading, in-process: the oracle of what is invalid."""
    from trainer.spec import load_spec

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(yaml.safe_dump(doc))
        return load_spec(str(path), tuple(overrides))


# ---- real servers, real training (slow) ------------------------------------------------------
def small_spec(tmp_path: Path, uri: str | None, name: str, **sections) -> Path:
    spec = {
        "name": name,
        "seed": 3,
        "env": {"num_envs": 1, "episode_length": 40},
        "ppo": {"total_steps": 2048, "rollout_steps": 64, "update_epochs": 1, "batch_size": 64},
        "checkpoint": {"dir": str(tmp_path / "runs"), "every_updates": 8, "video": False},
        "mlflow": {"tracking_uri": uri, "experiment": f"reliability-{name}", "log_model": False},
    }
    for section, values in sections.items():
        spec.setdefault(section, {}).update(values)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def trainer_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAIN_", "TRAINER_"))}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def start_trainer(spec: Path, log: Path) -> subprocess.Popen[bytes]:
    """`trainer run SPEC` in the background, its console (stdout and stderr) into `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "trainer", "run", str(spec)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=trainer_env(),
    )


def run_trainer(spec: Path, env: dict[str, str], timeout: float = 600) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "trainer", "run", str(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.slow
def test_required_mlflow_unreachable_at_start_exits_1_before_any_emulator(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    spec = small_spec(tmp_path, uri, "required", mlflow={"required": True})
    code, output = run_trainer(spec, trainer_env(), timeout=300)
    assert code == 1, output
    assert "unreachable" in output and "mlflow.required is true" in output
    assert "Traceback" not in output and "Initializing" not in output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))


@pytest.mark.slow
def test_mlflow_outage_mid_run_loses_no_metric_step_and_prints_two_lines():
    """`trainer bench --reliability --quick`: the server SIGKILLed 4 s into training and
    started again on its database 6 s later. Throughput is a benchmark figure, not asserted."""
    from trainer.bench.reliability import QUICKSTART_LONG, bench_mlflow_outage

    data = {**QUICKSTART_LONG, "ppo": {**QUICKSTART_LONG["ppo"], "total_steps": 60000}}
    figures = bench_mlflow_outage(data, kill_after_s=4.0, outage_s=6.0)
    assert (figures.run_status, figures.exit_code) == ("FINISHED", 0)
    assert figures.update_steps_logged > 100 and figures.update_steps_lost == 0
    assert figures.episodes_logged > 100 and figures.episodes_lost == 0
    lines = figures.tracking_lines
    assert sum("MLflow unreachable" in line for line in lines) == 1, lines
    assert sum("MLflow reachable again" in line for line in lines) == 1, lines


SECRETS = {
    "MLFLOW_TRACKING_PASSWORD": "hunter2-mlflow-password",
    "MLFLOW_TRACKING_USERNAME": "alice-the-user",
    "MLFLOW_TRACKING_TOKEN": "tok-4f9c2a7e1b",
    "SOME_TOKEN": "some-token-value-8841",
    "DB_PASSWORD": "db-pass-5517",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-9d0f3b",
}


@pytest.mark.slow
def test_secrets_never_appear_in_params_tags_console_or_artifacts(tmp_path, mlflow_server):
    from mlflow.tracking import MlflowClient

    # The URI carries credentials too, as some deployments do (`$MLFLOW_TRACKING_URI`).
    host = mlflow_server.removeprefix("http://")
    env = trainer_env(
        **SECRETS,
        MLFLOW_TRACKING_URI=f"http://alice-the-user:hunter2-mlflow-password@{host}",
    )
    spec = small_spec(tmp_path, mlflow_server, "secrets", checkpoint={"video": True})
    data = yaml.safe_load(spec.read_text())
    del data["mlflow"]["tracking_uri"]  # from the environment, with its user-info
    spec.write_text(yaml.safe_dump(data))
    code, output = run_trainer(spec, env)
    assert code == 0, output[-3000:]
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("reliability-secrets")
    (run,) = client.search_runs([experiment.experiment_id])
    logged = {"console": output}
    logged["params"] = "\n".join(f"{k}={v}" for k, v in run.data.params.items())
    logged["tags"] = "\n".join(f"{k}={v}" for k, v in run.data.tags.items())
    downloaded = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "artifacts")))
    files = [p for p in downloaded.rglob("*") if p.is_file()]
    assert any(p.name == "latest.pt" for p in files) and any(p.suffix == ".gif" for p in files)
    assert any(p.name.startswith("console") for p in files) and len(run.data.params) > 20
    for path in files:
        logged[str(path.relative_to(downloaded))] = path.read_bytes().decode("latin-1")
    for where, text in logged.items():
        for name, secret in SECRETS.items():
            assert secret not in text, f"{name} leaked into {where}"


@pytest.mark.slow
def test_four_runs_at_once_on_postgresql_store_every_metric_step(tmp_path, mlflow_postgres_server):
    """Load: four `trainer run` processes against one MLflow server on PostgreSQL (two uvicorn
    workers, as k8s/mlflow.yaml deploys it). Every update step and every episode each console
    reports is in MLflow."""
    from mlflow.tracking import MlflowClient

    names = [f"load-{i}" for i in range(4)]
    specs = [
        small_spec(tmp_path, mlflow_postgres_server, name, ppo={"total_steps": 4096})
        for name in names
    ]
    logs = [tmp_path / f"{name}.log" for name in names]
    started = time.monotonic()
    procs = [start_trainer(spec, log) for spec, log in zip(specs, logs, strict=True)]
    codes = [proc.wait(timeout=900) for proc in procs]
    seconds = time.monotonic() - started  # a figure for the report, never asserted
    client = MlflowClient(mlflow_postgres_server)
    totals = []
    for name, code, log in zip(names, codes, logs, strict=True):
        text = log.read_text()
        assert code == 0, text[-3000:]
        updates = logged_steps(text)["updates"]
        episodes = logged_steps(text)["episodes"]
        experiment = client.get_experiment_by_name(f"reliability-{name}")
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.info.status == "FINISHED"
        stored = {m.step for m in client.get_metric_history(run.info.run_id, "perf/sps")}
        returns = client.get_metric_history(run.info.run_id, "charts/episodic_return")
        assert updates and updates == stored, (name, sorted(updates - stored))
        assert episodes == {m.step for m in returns}, name
        totals.append((len(updates), len(episodes)))
    sys.stderr.write(
        f"\n[load] 4 runs at once on PostgreSQL in {seconds:.1f} s: (update steps, episodes) "
        f"stored of each, all of those logged: {totals}\n"
    )


@pytest.mark.slow
def test_server_down_at_start_trains_anyway_and_the_run_follows_when_it_answers(tmp_path):
    """`mlflow.required: false` (the default): one line, training starts, and the run is
    created once the server is up, with every step logged meanwhile."""
    from mlflow.tracking import MlflowClient

    from trainer.bench.servers import MlflowServer

    server = MlflowServer(tmp_path / "mlflow")  # its port is chosen, nothing listens yet
    spec = small_spec(tmp_path, server.uri, "late", ppo={"total_steps": 8192})
    log = tmp_path / "trainer.log"
    proc = start_trainer(spec, log)
    try:
        while "at start" not in log.read_text() and proc.poll() is None:
            threading.Event().wait(0.1)
        server.start()
        code = proc.wait(timeout=600)
        text = log.read_text()
        assert code == 0, text[-3000:]
        assert "MLflow unreachable at" in text and "reachable again" in text
        client = MlflowClient(server.uri)
        (run,) = client.search_runs(
            [client.get_experiment_by_name("reliability-late").experiment_id]
        )
        assert run.info.status == "FINISHED"
        updates = logged_steps(text)["updates"]
        stored = {m.step for m in client.get_metric_history(run.info.run_id, "perf/sps")}
        assert updates and updates == stored
    finally:
        proc.kill()
        server.stop()


@pytest.mark.slow
def test_emulator_that_keeps_crashing_fails_the_run_naming_the_envs_and_the_rom(tmp_path):
    """A real `trainer run` whose emulator worker dies by SIGSEGV (as a ROM that crashes PyBoy)
    each time it is started: restarted `env.max_worker_restarts` times, then exit 1 naming the
    environment and the ROM, not an endless loop."""
    import signal

    import psutil

    spec = small_spec(
        tmp_path,
        None,
        "crash",
        env={"num_envs": 2, "backend": "process", "envs_per_worker": 1, "max_worker_restarts": 1},
        ppo={"total_steps": 200000},
        mlflow={"enabled": False},
    )
    log = tmp_path / "trainer.log"
    proc = start_trainer(spec, log)
    try:
        while "Update" not in log.read_text() and proc.poll() is None:
            threading.Event().wait(0.1)
        crashes = 0
        while proc.poll() is None and crashes < 10:
            workers = pool_workers(proc.pid)
            # The newest: after the first crash, that worker's replacement.
            victim = max(workers, key=lambda w: w.create_time(), default=None)
            if victim is not None and victim.create_time() + 0.5 < time.time():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim.pid, signal.SIGSEGV)  # a crash of the emulator
                    crashes += 1
                psutil.wait_procs([victim], timeout=30)
            threading.Event().wait(0.5)
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
    text = log.read_text()
    assert code == 1, text[-3000:]
    assert "SIGSEGV" in text and "max_restarts=1" in text, text[-3000:]
    assert "game.rom builtin:dungeon" in text and "Traceback" not in text
    assert crashes == 2  # the first crash is restarted, the second fails the run


def pool_workers(trainer_pid: int) -> list:
    """The emulator workers of a trainer: forked by its pool's forkserver (a child of it)."""
    import psutil

    workers = []
    for child in psutil.Process(trainer_pid).children(recursive=True):
        try:
            parent = child.parent()
            alive = child.status() != psutil.STATUS_ZOMBIE
            if alive and parent is not None and "forkserver" in " ".join(parent.cmdline()):
                workers.append(child)
        except psutil.Error:  # gone meanwhile
            continue
    return workers


def test_the_outage_benchmark_trains_the_quickstart_configuration():
    from trainer.bench.reliability import QUICKSTART_LONG
    from trainer.spec import validate_spec

    long, quick = validate_spec(QUICKSTART_LONG), validate_spec(BASE)
    assert long.ppo.total_steps > quick.ppo.total_steps
    long.ppo.total_steps = quick.ppo.total_steps
    for section in ("seed", "game", "env", "ppo"):
        assert getattr(long, section) == getattr(quick, section), section


def logged_steps(console: str) -> dict[str, set[int]]:
    """The steps a trainer's console says it logged: updates (`perf/sps`) and episodes."""
    from trainer.bench.reliability import _EPISODE, _UPDATE

    lines = console.splitlines()
    return {
        "updates": {int(m.group(1).replace(",", "")) for m in map(_UPDATE.search, lines) if m},
        "episodes": {int(m.group(1)) for m in map(_EPISODE.search, lines) if m},
    }
