"""`kubernetes.distributed_backend: pytorchjob`: a sweep point as a Kubeflow PyTorchJob.

No cluster and no training operator run here. What is tested up to that boundary: the rendered
object (a Master and Workers of the Indexed Job's own pod template, with the operator's container
and port names), the spec and launcher refusals, the chart's parity (tests/test_helm_chart.py),
and the objects against the operator's published types (`kubeflow-training`, its SDK) with the
pod templates against every supported Kubernetes version's official schema
(scripts/validate_pytorchjob.py, run with the tools' venv)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from test_helm_chart import CHART
from test_kube_render import FULL_PYTORCHJOB
from test_kube_tools import ROOT, require_tool, run_tool

from trainer.cli import main
from trainer.kube import manifests as kube
from trainer.rl.distributed import under_torchrun
from trainer.spec import ENV_RDZV_ENDPOINT, ENV_RDZV_ID, SpecError, validate_spec

PJ = {"name": "pj", "ppo": {"batch_size": 96}, "kubernetes": {"distributed_backend": "pytorchjob"}}


def render(data: dict, envs: list[int] | None = None, replicas: list[int] | None = None):
    return kube.render(validate_spec(data), envs, replicas_list=replicas)


def env_of(pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}


def test_a_point_of_three_replicas_is_a_master_and_two_workers_of_the_jobs_pod() -> None:
    data = {**PJ, "kubernetes": {**PJ["kubernetes"], "queue": "team-a", "backoff_limit": 2}}
    docs = render(data, [2], [3])
    assert [d["kind"] for d in docs] == ["ConfigMap", "PyTorchJob"]  # no Service of ours
    job = docs[1]
    name = job["metadata"]["name"]
    assert job["apiVersion"] == "kubeflow.org/v1"
    assert job["metadata"]["labels"][kube.LABEL_QUEUE] == "team-a"
    # The Indexed Job's retry budget, and Kueue's suspension, in the runPolicy.
    assert job["spec"]["runPolicy"] == {
        "backoffLimit": 6,
        "suspend": True,
        "ttlSecondsAfterFinished": 86400,
    }
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert {k: (v["replicas"], v["restartPolicy"]) for k, v in replicas.items()} == {
        "Master": (1, "OnFailure"),
        "Worker": (2, "OnFailure"),
    }
    assert replicas["Master"]["template"] == replicas["Worker"]["template"]
    pod = replicas["Master"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["name"] == "pytorch"  # the operator finds its port on this container
    assert container["ports"] == [
        {"name": "pytorchjob-port", "containerPort": 29400, "protocol": "TCP"}
    ]
    env = env_of(pod)
    assert env[ENV_RDZV_ENDPOINT] == f"{name}-master-0:29400"  # the Master's Service
    assert env[ENV_RDZV_ID] == name
    assert "subdomain" not in pod["spec"] and pod["spec"]["restartPolicy"] == "OnFailure"

    # Otherwise the very pod the Indexed Job runs: same volumes, security, resources, labels
    # (under its own Job name and sweep id: the spec differs).
    indexed = copy.deepcopy(data)
    del indexed["kubernetes"]["distributed_backend"]
    other = render(indexed, [2], [3])[-1]
    text = json.dumps(other["spec"]["template"])
    for theirs, ours in (
        (other["metadata"]["name"], name),
        (
            other["metadata"]["labels"][kube.LABEL_SWEEP],
            job["metadata"]["labels"][kube.LABEL_SWEEP],
        ),
    ):
        text = text.replace(theirs, ours)
    job_pod = json.loads(text)
    assert job_pod["metadata"] == pod["metadata"]
    ours, theirs = copy.deepcopy(pod["spec"]), job_pod["spec"]
    for spec in (ours, theirs):
        spec.pop("restartPolicy"), spec.pop("subdomain", None)
        spec["containers"][0].pop("name"), spec["containers"][0].pop("ports", None)
        spec["containers"][0]["env"] = [
            e for e in spec["containers"][0]["env"] if e["name"] != ENV_RDZV_ENDPOINT
        ]
    assert ours == theirs


def test_one_replica_is_a_master_alone_without_a_rendezvous() -> None:
    (_, job) = render(PJ, [2], [1])
    assert list(job["spec"]["pytorchReplicaSpecs"]) == ["Master"]
    assert ENV_RDZV_ENDPOINT not in env_of(job["spec"]["pytorchReplicaSpecs"]["Master"]["template"])


def test_a_sweep_is_one_pytorchjob_per_point() -> None:
    docs = render(PJ, [1, 2], [1, 3])
    jobs = [d for d in docs if d["kind"] == "PyTorchJob"]
    assert len(jobs) == 4 and not [d for d in docs if d["kind"] in ("Job", "Service")]
    assert len({j["metadata"]["name"] for j in jobs}) == 4


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # `<job>-worker-<i>` is the longest pod and Service name the operator makes.
        ({**PJ, "name": "p" * 40, "distributed": {"replicas": 3}}, r"pods' suffix \(-worker-1\)"),
        # The operator names a Service after every pod, even a Master alone: DNS-1035.
        ({**PJ, "name": "1pj"}, "must start with a letter for a PyTorchJob"),
    ],
)
def test_names_the_operator_derives_must_be_valid(data: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        render(data, [12345])


def test_launch_refuses_a_pytorchjob_before_sending_anything(tmp_path: Path, monkeypatch) -> None:
    spec = tmp_path / "pj.yaml"
    spec.write_text(yaml.safe_dump(PJ))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))  # nothing could be sent anyway
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = CliRunner().invoke(main, ["launch", str(spec), "--backend", "kubernetes"])
    assert result.exit_code == 2, result.output
    assert "kubernetes.distributed_backend: pytorchjob" in result.output
    assert "kubectl apply" in result.output


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"TORCHELASTIC_RUN_ID": "r", "WORLD_SIZE": "2", ENV_RDZV_ENDPOINT: "x:1"}, True),
        ({"WORLD_SIZE": "2", "RANK": "0"}, True),  # another launcher's process
        # A PyTorchJob pod: the operator's variables, and ours: our torchrun agent must run.
        (
            {"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "j-master-0", ENV_RDZV_ENDPOINT: "x:1"},
            False,
        ),
        ({}, False),
    ],
)
def test_the_operators_world_size_does_not_skip_our_torchrun_agent(environ, expected) -> None:
    assert under_torchrun(environ) is expected


def tools_python() -> str:
    """The tools' venv, where scripts/fetch_tools.sh installs kubeflow-training."""
    python = Path(require_tool("kubernetes-validate")).resolve().parent / "python"
    assert python.exists(), f"{python}: run `make tools`"
    return str(python)


@pytest.mark.slow
@pytest.mark.parametrize("version", kube.KUBERNETES_VERSIONS)
def test_rendered_and_charted_pytorchjobs_pass_the_operators_types(tmp_path, version) -> None:
    rendered = tmp_path / "render.yaml"
    rendered.write_text(kube.to_yaml_stream(render(FULL_PYTORCHJOB) + render(PJ, [1, 2], [1, 3])))
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"spec": FULL_PYTORCHJOB}))
    helm = run_tool([require_tool("helm"), "template", "r", str(CHART), "--values", str(values)])
    assert helm.returncode == 0, helm.stderr
    charted = tmp_path / "chart.yaml"
    charted.write_text(helm.stdout)
    script = str(ROOT / "scripts" / "validate_pytorchjob.py")
    result = run_tool(
        [tools_python(), script, "--kubernetes-version", version, str(rendered), str(charted)]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PyTorchJob(s) checked: 0 problem(s)" in result.stdout


@pytest.mark.slow
def test_the_validator_refuses_unknown_fields_wrong_types_and_missing_replicas(tmp_path) -> None:
    (_, job) = render(PJ, [2], [3])
    bad = copy.deepcopy(job)
    bad["spec"]["runPolicy"]["bogus"] = 1
    bad["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = "2"
    container = bad["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    container["ports"][0]["containerPort"] = "29400"
    missing = copy.deepcopy(job)
    del missing["spec"]["pytorchReplicaSpecs"]
    path = tmp_path / "bad.yaml"
    path.write_text(kube.to_yaml_stream([bad, missing]))
    script = str(ROOT / "scripts" / "validate_pytorchjob.py")
    result = run_tool([tools_python(), script, "--kubernetes-version", "1.31", str(path)])
    assert result.returncode == 1, result.stdout + result.stderr
    for expected in (
        "spec.runPolicy.bogus: unknown field of KubeflowOrgV1RunPolicy",
        "spec.pytorchReplicaSpecs.Worker.replicas: expected int, got '2'",
        "spec.pytorchReplicaSpecs.Master.template: '29400' is not of type 'integer'",
        "`pytorch_replica_specs`, must not be `None`",
    ):
        assert expected in result.stdout, result.stdout
