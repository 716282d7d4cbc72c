"""The rendered pod, run on this machine as the kubelet would (tests/pod_harness.py: bubblewrap,
the package installed from a wheel, the Job's user, read-only root, volumes, env and signals),
against a real MLflow server on loopback in place of the Service.

What a real cluster adds (scheduling, image pull, admission, cgroup limits) is in
docs/kubernetes.md; what is proved here is the contract between the manifests and the program.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pod_harness import CACHE, Image, Pod, PodResult, build_image, pod_failure_action
from test_helm_chart import helm_template

from trainer.cli import main
from trainer.kube import manifests as kube

pytestmark = pytest.mark.slow

EXPERIMENT = "pod-tests"
TOTAL_STEPS = 3072  # 24 updates of 2 envs × 64 steps: a few seconds of training


def spec_values(name: str, **kubernetes: Any) -> dict[str, Any]:
    return {
        "name": name,
        "seed": 3,
        "env": {"num_envs": 2, "episode_length": 40},
        "ppo": {"total_steps": TOTAL_STEPS, "rollout_steps": 64, "update_epochs": 2,
                "batch_size": 64},
        "checkpoint": {"every_updates": 2},
        "mlflow": {"experiment": EXPERIMENT},
        "kubernetes": {"termination_grace_period_seconds": 30, **kubernetes},
    }  # fmt: skip


def rendered(tmp_path: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    """`trainer render SPEC`: the ConfigMap and the Job."""
    path = tmp_path / f"{values['name']}.yaml"
    path.write_text(yaml.safe_dump(values))
    result = CliRunner().invoke(main, ["render", str(path)])
    assert result.exit_code == 0, result.output
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="module")
def image() -> Image:
    return build_image()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Path]:
    """Host folders for the pods (volumes, PVCs): the pod's user must reach them, and pytest's
    own temporary folders are private to root."""
    (CACHE / "pods").mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{tmp_path.name}-", dir=CACHE / "pods"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def job_of(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return next(m for m in manifests if m["kind"] in ("Job", "PyTorchJob"))


def one_run(uri: str, run_key: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`trainer.job_id` = '{run_key}'"
    )
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0]


def stopped(pod: Pod) -> tuple[PodResult, int]:
    """SIGTERM mid-training, as the kubelet sends it; the exit and the checkpoint's step."""
    pod.wait_for(r"🧠 Update +3 ")
    result = pod.terminate()
    assert result.exit_code == 143, pod.log()[-3000:]
    assert not result.killed and result.seconds < pod.grace  # the contract: before SIGKILL
    match = re.search(r"SIGTERM: checkpoint written at step ([\d,]+)(.*); exiting", pod.log())
    assert match, pod.log()[-3000:]
    sys.stderr.write(f"\n[pod] SIGTERM → exit {result.seconds:.2f} s{match.group(2)}\n")
    return result, int(match.group(1).replace(",", ""))


PROBE = r"""
import json, os, sys
def writable(path):
    try:
        with open(os.path.join(path, ".probe"), "w"):
            pass
        os.unlink(os.path.join(path, ".probe"))
        return True
    except OSError:
        return False
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines())
shm = os.statvfs("/dev/shm")
print(json.dumps({
    "ids": [os.getuid(), os.getgid(), sorted(os.getgroups())], "pid": os.getpid(),
    "caps": [status["CapEff"].strip(), status["CapBnd"].strip()],
    "no_new_privs": status["NoNewPrivs"].strip(), "cwd": os.getcwd(),
    "writable": {p: writable(p) for p in sys.argv[1:]},
    "shm_bytes": shm.f_blocks * shm.f_frsize, "spec": open("/etc/trainer/spec.yaml").read(),
    "env": dict(os.environ), "user": __import__("getpass").getuser(),
}))
"""


def test_the_sandbox_is_the_pods_contract(tmp_path: Path, host: Path, image: Image) -> None:
    """The harness itself, probed from inside: the Job's user, PID, capabilities, mounts and
    environment, and nothing writable but the volumes."""
    manifests = rendered(tmp_path, spec_values("probe", shm_size="96Mi"))
    job = job_of(manifests)
    container = job["spec"]["template"]["spec"]["containers"][0]
    paths = ["/", "/etc", "/etc/trainer", "/var/lib", "/var/lib/trainer", "/usr", "/dev",
             str(image.venv), kube.CHECKPOINT_DIR, "/tmp", "/dev/shm"]  # fmt: skip
    probe = copy.deepcopy(manifests)
    probed = job_of(probe)["spec"]["template"]["spec"]["containers"][0]
    probed["command"], probed["args"] = ["python", "-c", PROBE], paths
    pod = Pod(probe, host, "http://127.0.0.1:1", image=image).start()
    assert pod.wait(timeout=60).exit_code == 0, pod.log()
    seen = json.loads(pod.log())
    uid = job["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert seen["ids"] == [uid, uid, [uid]] and seen["user"] == "trainer"
    assert seen["pid"] == 2  # PID 1 is the reaper (shareProcessNamespace: the pause container)
    assert seen["caps"] == ["0000000000000000"] * 2 and seen["no_new_privs"] == "1"
    assert seen["cwd"] == "/tmp" and seen["shm_bytes"] == 96 * 2**20
    assert seen["writable"] == {p: p in (kube.CHECKPOINT_DIR, "/tmp", "/dev/shm") for p in paths}
    assert seen["spec"] == manifests[0]["data"]["spec.yaml"]
    for variable in container["env"]:
        if variable["name"] != "MLFLOW_TRACKING_URI":
            assert seen["env"][variable["name"]] == variable["value"]
    assert seen["env"]["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:1"


def test_helm_pod_with_a_pvc_stops_on_sigterm_and_its_retry_finishes_in_the_same_run(
    tmp_path: Path, host: Path, image: Image, mlflow_server: str
) -> None:
    """The chart's Job with a PVC: SIGTERM mid-training exits 143 before the grace period; the
    Job's next pod (same PVC) resumes from the checkpoint on it and trains to the end, in the
    same MLflow run, which then holds params, metrics, checkpoints, the policy's video (written
    beside the checkpoints: the root is read-only) and the model."""
    values = spec_values("helm-pod", checkpoint_pvc="checkpoints")
    manifests = helm_template(tmp_path, {"spec": values, "envs": [2]}, "default")
    run_key = job_of(manifests)["metadata"]["labels"]["pyboy-trainer/run-id"]
    pvcs = {"checkpoints": host / "pvc"}
    pvcs["checkpoints"].mkdir()
    first = Pod(manifests, host, mlflow_server, pvcs, image).start()
    _, step = stopped(first)
    assert (pvcs["checkpoints"] / run_key / "checkpoints" / f"step_{step}.pt").exists()

    retry = Pod(manifests, host, mlflow_server, pvcs, image).start()
    result = retry.wait(timeout=300)
    log = retry.log()
    assert result.exit_code == 0, log[-3000:]
    assert f"Resuming from step {step:,} " in log and f"Final step: {TOTAL_STEPS:,}" in log
    # Nothing tried to write outside the volumes (the root is read-only: it would have failed).
    assert not re.search(r"Read-only file system|Errno 30|Permission denied", first.log() + log)

    client, run = one_run(mlflow_server, run_key)
    assert run.info.status == "FINISHED" and int(run.data.tags["trainer.starts"]) == 2
    assert run.data.params["ppo.total_steps"] == str(TOTAL_STEPS)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "perf/sps")]
    assert max(steps) == TOTAL_STEPS and len(steps) == len(set(steps))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoints", "spec.yaml", "console.log", "videos"} <= artifacts, artifacts
    saved = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert {f"checkpoints/step_{step}.pt", "checkpoints/latest.pt"} <= saved
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert [m.name for m in models if m.source_run_id == run.info.run_id] == ["policy"]

    # `helm upgrade` after the TTL deleted the finished Job creates it again (Helm's kube client
    # re-creates release resources missing from the cluster: pkg/kube/client.go, Update). Its pod
    # finds the run trained to the end and exits 0 without training or logging again.
    again = Pod(manifests, host, mlflow_server, pvcs, image).start()
    result = again.wait(timeout=300)
    assert result.exit_code == 0 and "already trained" in again.log(), again.log()[-3000:]
    sys.stderr.write(f"\n[pod] re-created finished Job: exit 0 after {result.seconds:.2f} s\n")
    client, run = one_run(mlflow_server, run_key)
    assert run.info.status == "FINISHED" and int(run.data.tags["trainer.starts"]) == 3
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "perf/sps")) == sorted(
        steps
    )


def test_pod_without_pvc_resumes_from_the_checkpoint_in_mlflow(
    tmp_path: Path, host: Path, image: Image, mlflow_server: str
) -> None:
    """No PVC: checkpoints live in an emptyDir that dies with the pod. The checkpoint written on
    SIGTERM must be in MLflow before the pod exits; the retry (a fresh emptyDir) resumes it."""
    manifests = rendered(tmp_path, spec_values("emptydir-pod"))
    run_key = job_of(manifests)["metadata"]["labels"]["pyboy-trainer/run-id"]
    first = Pod(manifests, host, mlflow_server, image=image).start()
    _, step = stopped(first)
    client, run = one_run(mlflow_server, run_key)
    saved = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert f"checkpoints/step_{step}.pt" in saved and "checkpoints/latest.pt" in saved
    assert run.info.status == "KILLED"

    retry = Pod(manifests, host, mlflow_server, image=image).start()
    assert not any(retry.volumes["checkpoints"].iterdir())  # nothing on disk to resume from
    retry.wait_for(rf"Resuming from step {step:,} ")
    assert retry.terminate().exit_code == 143
    assert one_run(mlflow_server, run_key)[1].info.run_id == run.info.run_id


START_UP = [
    # (name, when SIGTERM comes: seconds after the entrypoint's process exists, or what the pod
    # has printed). At 0 s Python has no handler yet: only the default action (the trainer is
    # not PID 1: shareProcessNamespace) ends it; at 0.5 s trainer.entrypoint's handler does.
    ("exec", 0.0),
    ("importing", 0.5),
    ("emulators-starting", "Initializing"),
    ("emulators-ready", "Environment 2/2 initialized"),
]
#: The last case plays the second built-in game: its ROM must be in the installed wheel.
GAME_OF = {"emulators-ready": {"rom": "builtin:cavern", "adapter": "generic"}}


@pytest.mark.parametrize(("name", "when"), START_UP, ids=[m[0] for m in START_UP])
def test_sigterm_during_start_up_exits_143_before_the_grace_period(
    tmp_path: Path, host: Path, image: Image, mlflow_server: str, name: str, when: float | str
) -> None:
    values = {**spec_values(f"start-{name}"), "game": GAME_OF.get(name, {})}
    manifests = rendered(tmp_path, values)
    pod = Pod(manifests, host, mlflow_server, image=image).start()
    if isinstance(when, str):
        pod.wait_for(when)
    else:
        time.sleep(when)
    result = pod.terminate()
    assert result.exit_code == 143, pod.log()[-3000:]
    assert not result.killed and result.seconds < pod.grace
    sys.stderr.write(f"\n[pod] SIGTERM while {name} → exit {result.seconds:.2f} s\n")
    assert pod_failure_action(job_of(manifests), 143) is None  # retried, counted in backoffLimit


BAD_GAMES = [
    # game.* values the spec accepts (`trainer render` exits 0) that only the pod can refuse:
    # files in the image or a volume. (An unknown adapter or reward term is refused earlier, by
    # `trainer validate` and `render`: tests/test_ram_spec.py.)
    ({"rom": "/roms/missing.gb"}, "game.rom"),
    ({"rom": "builtin:nosuch"}, "game.rom"),
    ({"state": "/roms/missing.state"}, "game.state"),
]


@pytest.mark.parametrize(("game", "key"), BAD_GAMES, ids=[json.dumps(g) for g, _ in BAD_GAMES])
def test_bad_game_value_exits_2_which_the_job_turns_into_failjob(
    tmp_path: Path, host: Path, image: Image, mlflow_server: str, game: dict[str, Any], key: str
) -> None:
    values = {**spec_values("bad-game"), "game": game}
    manifests = rendered(tmp_path, values)
    pod = Pod(manifests, host, mlflow_server, image=image).start()
    result = pod.wait(timeout=120)
    assert result.exit_code == 2, pod.log()[-3000:]
    assert f"error: {key}:" in pod.log()
    assert pod_failure_action(job_of(manifests), result.exit_code) == "FailJob"
    assert pod_failure_action(job_of(manifests), 1) is None  # a crash is retried, not fatal


def test_a_rom_of_this_machine_is_shipped_mounted_and_played(
    tmp_path: Path, host: Path, image: Image, mlflow_server: str
) -> None:
    """Issue 12: `game.rom` naming a file here → a `<job>-rom` ConfigMap (binaryData) projected
    at the pod's game folder, the spec pointing there; the pod trains on it to the end."""
    from trainer.games import BUILTIN_ROMS
    from trainer.games.base import rom_sha1
    from trainer.spec.kube_rules import GAME_DIR

    rom = tmp_path / "my game.gb"  # a space: the ConfigMap key and file name are made safe
    shutil.copy(BUILTIN_ROMS["dungeon"], rom)
    values = {**spec_values("shipped-rom"), "game": {"rom": str(rom), "adapter": "dungeon"}}
    manifests = rendered(tmp_path, values)
    assert [m["kind"] for m in manifests] == ["ConfigMap", "ConfigMap", "Job"]
    point = yaml.safe_load(manifests[1]["data"]["spec.yaml"])
    assert point["game"]["rom"].startswith(f"{GAME_DIR}/") and point["game"]["rom"].endswith(
        "-my_game.gb"
    )
    pod = Pod(manifests, host, mlflow_server, image=image).start()
    result = pod.wait(timeout=300)
    assert result.exit_code == 0, pod.log()[-3000:]
    assert f"Final step: {TOTAL_STEPS:,}" in pod.log()
    run_key = job_of(manifests)["metadata"]["labels"]["pyboy-trainer/run-id"]
    _, run = one_run(mlflow_server, run_key)
    assert run.data.tags["rom"] == point["game"]["rom"]
    assert run.data.tags["rom_sha1"] == rom_sha1(rom.read_bytes())


@pytest.mark.parametrize("workload", ["job", "pytorchjob"])
@pytest.mark.parametrize("lose_pod_1", [False, True], ids=["both-run", "pod-1-lost-and-replaced"])
def test_two_pods_of_a_two_replica_job_train_one_run_on_loopback(
    tmp_path: Path, host: Path, image: Image, mlflow_server: str, lose_pod_1: bool, workload: str
) -> None:
    """`distributed.replicas: 2` renders an Indexed Job of 2 pods in a headless Service's
    subdomain (or, `pytorchjob`, a PyTorchJob's Master and Worker, with the variables the
    training operator adds: its WORLD_SIZE must not keep `trainer run` from starting its agent).
    Both pods run here side by side: each `trainer run` starts a torchrun agent that joins the
    c10d rendezvous at rank 0's DNS name (`<job>-0.<service>`, or the Master's Service
    `<job>-master-0`, from the pods' hosts file on loopback); they train one run, end with the
    same weights, and MLflow holds every update step once. Lost: pod 1 is SIGKILLed mid-run (a
    node lost) and replaced, as the Job controller (or the operator) replaces it; pod 0's agent
    restarts its replica, the two meet again and resume from the last checkpoint."""
    from trainer.bench.servers import free_port

    values = spec_values(f"pair-{workload}-{int(lose_pod_1)}", distributed_backend=workload)
    values["env"]["num_envs"] = 1
    values["distributed"] = {"replicas": 2, "port": free_port(), "timeout_s": 120}
    manifests = rendered(tmp_path, values)
    job = job_of(manifests)
    if workload == "job":
        assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2
    else:
        assert [r["replicas"] for r in job["spec"]["pytorchReplicaSpecs"].values()] == [1, 1]
    run_key = job["metadata"]["labels"]["pyboy-trainer/run-id"]
    started = time.monotonic()
    pods = [Pod(manifests, host, mlflow_server, image=image, index=i).start() for i in (0, 1)]
    try:
        if lose_pod_1:
            pods[0].wait_for(r"🧠 Update +6 ")  # after the checkpoints of updates 2 and 4
            pods[1].kill()
            pods[1] = Pod(manifests, host, mlflow_server, image=image, index=1).start()
        results = [pod.wait(timeout=600) for pod in pods]
    finally:
        for pod in pods:
            pod.kill()
    seconds = time.monotonic() - started
    logs = "\n".join(f"== pod {p.index}:\n{p.log()[-4000:]}" for p in pods)
    assert [r.exit_code for r in results] == [0, 0], logs
    if lose_pod_1:
        assert "Resuming from step" in pods[0].log() + pods[1].log(), logs
    found = [re.findall(r"replica (\d)/2: policy sha256 ([0-9a-f]{64})", p.log()) for p in pods]
    assert sorted(rank for ((rank, _),) in found) == ["0", "1"], found  # one replica per pod
    assert len({digest for ((_, digest),) in found}) == 1
    client, run = one_run(mlflow_server, run_key)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "perf/sps")]
    assert sorted(steps) == list(range(128, TOTAL_STEPS + 1, 128))
    sys.stderr.write(
        f"\n[pods] 2 replicas as 2 pods of a {workload}"
        f"{', pod 1 lost and replaced' * lose_pod_1}: "
        f"{seconds:.1f} s from start to both exits\n"
    )
