"""`trainer.kube`: JobSpec → manifests. Golden files, tables of cases, and the pure helpers.

Regenerate the golden files (and k8s/examples) after a deliberate change with
`UPDATE_GOLDEN=1 pytest tests/test_kube_render.py`, then review the diff.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from test_kube_tools import ROOT

from trainer.cli import main
from trainer.kube import manifests as kube
from trainer.spec import JobSpec, SpecError, validate_spec
from trainer.spec import identity as spec_mod

GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

FULL = {
    "name": "full",
    "ppo": {"batch_size": 64, "learning_rate": 1e-7, "target_kl": 0.015},
    "resources": {
        "cpu_per_env": 0.5,
        "learner_cpu": 1.5,
        "memory_per_env": "300Mi",
        "learner_memory": "2Gi",
        "gpu": 1,
    },
    "checkpoint": {"dir": "/data/checkpoints"},
    "mlflow": {"tracking_uri": "http://mlflow.example:5000", "tags": {"team": "a<b&c>"}},
    "kubernetes": {
        "namespace": "ml",
        "image": "registry.example/trainer:v9",
        "image_pull_policy": "Always",
        "backoff_limit": 1,
        "ttl_seconds_after_finished": None,
        "active_deadline_seconds": 7200,
        "termination_grace_period_seconds": 120,
        "service_account": "trainer",
        "node_selector": {"pool": "cpu", "topology.kubernetes.io/zone": "eu-west-1a"},
        "tolerations": [
            {"key": "dedicated", "value": "training", "effect": "NoSchedule"},
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
        ],
        "checkpoint_pvc": "checkpoints",
        "mlflow_secret": "mlflow-credentials",
        "shm_size": "2Gi",
        "labels": {"team": "rl", "example.com/cost-center": "ml_42"},
        "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
        "pod_annotations": {"example.com/scrape": "true"},
        "volumes": [
            {"name": "roms", "persistentVolumeClaim": {"claimName": "roms", "readOnly": True}},
            {"name": "keys", "secret": {"secretName": "keys", "defaultMode": 0o440}},
            {
                "name": "extra",
                "configMap": {"name": "extra", "items": [{"key": "a", "path": "b/a.txt"}]},
            },
            {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
            {
                "name": "info",
                "downwardAPI": {
                    "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
                },
            },
        ],
        "volume_mounts": [
            {"name": "roms", "mountPath": "/roms", "readOnly": True},
            {"name": "keys", "mountPath": "/var/run/keys", "readOnly": True},
            {"name": "extra", "mountPath": "/opt/extra", "subPath": "b"},
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "info", "mountPath": "/etc/podinfo"},
        ],
        "env": [
            {"name": "TEAM", "value": "rl"},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "token"}}},
        ],
        "image_pull_secrets": ["registry-credentials"],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                            ]
                        }
                    ]
                }
            },
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 50,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {
                                "matchLabels": {"app.kubernetes.io/name": "pyboy-trainer"}
                            },
                        },
                    }
                ]
            },
        },
        "priority_class": "batch-low",
        "queue": "team-a",
    },
    "sweep": {"num_envs": [1, 3]},
}

#: Several replicas with every Kubernetes option: an Indexed Job and its headless Service each.
FULL_REPLICAS = {
    **FULL,
    "name": "fullx",
    "distributed": {"replicas": 2, "port": 29500},
    "sweep": {"num_envs": [1, 3], "replicas": [1, 2, 4]},
}

FULL_PYTORCHJOB = {
    **FULL_REPLICAS,
    "name": "fullpj",
    "kubernetes": {**FULL["kubernetes"], "distributed_backend": "pytorchjob"},
}

GOLDEN_CASES = [
    ("minimal", {"name": "golden"}, None),
    ("full", FULL, None),
    ("no-mlflow-envs", {"name": "nomlflow", "mlflow": {"enabled": False}}, [4, 1]),
    ("replicas", FULL_REPLICAS, None),
]


@pytest.mark.parametrize(("case", "data", "envs"), GOLDEN_CASES, ids=[c[0] for c in GOLDEN_CASES])
def test_render_matches_golden(case: str, data: dict, envs: list[int] | None) -> None:
    text = kube.to_yaml_stream(kube.render(validate_spec(data), envs))
    path = GOLDEN / f"{case}.yaml"
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run UPDATE_GOLDEN=1 pytest {__file__}"
    assert text == path.read_text(), (
        f"render output differs from {path} (UPDATE_GOLDEN=1 regenerates it)"
    )


EXAMPLES = [
    ("quickstart", "configs/quickstart.yaml"),
    ("sweep", "configs/sweep.yaml"),
    ("distributed", "configs/distributed.yaml"),
]


@pytest.mark.parametrize(("example", "config"), EXAMPLES)
def test_k8s_examples_are_trainer_render_output(example: str, config: str) -> None:
    """k8s/examples/*.yaml == `python -m trainer render <config> -n pyboy-trainer`."""
    result = CliRunner().invoke(
        main, ["render", str(ROOT / config), "-n", "pyboy-trainer"], env={"TRAIN_STEPS": ""}
    )
    assert result.exit_code == 0, result.output
    path = ROOT / "k8s" / "examples" / f"{example}.yaml"
    if UPDATE:
        path.write_text(result.output)
    assert result.output == path.read_text(), (
        f"{path} is out of date: python -m trainer render {config} -n pyboy-trainer > {path.relative_to(ROOT)}"
    )


@pytest.mark.parametrize(("example", "config"), EXAMPLES)
def test_render_json_is_one_list_of_the_same_objects(example: str, config: str) -> None:
    """`trainer render -o json`: the YAML stream's objects as one v1 List (kubectl's form)."""
    args = ["render", str(ROOT / config), "-n", "pyboy-trainer"]
    as_yaml = CliRunner().invoke(main, args, env={"TRAIN_STEPS": ""})
    as_json = CliRunner().invoke(main, [*args, "-o", "json"], env={"TRAIN_STEPS": ""})
    assert as_json.exit_code == 0, as_json.output
    listed = json.loads(as_json.output)
    assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
    assert listed["items"] == list(yaml.safe_load_all(as_yaml.output))


def objects(manifests: list[dict]) -> dict[tuple[str, str], dict]:
    return {(m["kind"], m["metadata"]["name"]): m for m in manifests}


def test_full_job_fields() -> None:
    manifests = kube.render(validate_spec(FULL))
    assert [m["kind"] for m in manifests] == ["ConfigMap", "Job", "ConfigMap", "Job"]
    job = manifests[3]
    name = job["metadata"]["name"]
    assert name.startswith("full-e3-") and len(name) == len("full-e3-") + 8
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["TRAINER_JOB_NAME"] == name
    assert env["TRAINER_SWEEP_ID"] == job["metadata"]["labels"][kube.LABEL_SWEEP]
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.example:5000"
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-credentials"}}]
    assert container["resources"] == {
        "requests": {"cpu": "3", "memory": "2948Mi"},
        "limits": {"cpu": "3", "memory": "2948Mi", "nvidia.com/gpu": "1"},
    }
    assert container["image"] == "registry.example/trainer:v9"
    assert container["args"] == ["run", "/etc/trainer/spec.yaml"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {
        "spec": "/etc/trainer",
        "checkpoints": "/data/checkpoints",
        "dshm": "/dev/shm",
        "tmp": "/tmp",
        # kubernetes.volume_mounts, after the pod's own
        "roms": "/roms",
        "keys": "/var/run/keys",
        "extra": "/opt/extra",
        "scratch": "/scratch",
        "info": "/etc/podinfo",
    }
    assert container["volumeMounts"][-3] == {
        "name": "extra",
        "mountPath": "/opt/extra",
        "subPath": "b",
    }
    # kubernetes.env, after the trainer's own variables
    assert [e["name"] for e in container["env"]][-3:] == ["TEAM", "NODE", "TOKEN"]
    assert env["NODE"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["TOKEN"] == {"secretKeyRef": {"name": "keys", "key": "token"}}
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["priorityClassName"] == "batch-low"
    assert pod["affinity"] == FULL["kubernetes"]["affinity"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["checkpoints"]["persistentVolumeClaim"] == {"claimName": "checkpoints"}
    assert volumes["roms"] == FULL["kubernetes"]["volumes"][0]
    assert volumes["keys"]["secret"] == {"secretName": "keys", "defaultMode": 0o440}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "training", "effect": "NoSchedule"},
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        },
    ]
    assert pod["serviceAccountName"] == "trainer" and pod["automountServiceAccountToken"] is False
    assert (
        "ttlSecondsAfterFinished" not in job["spec"]
        and job["spec"]["activeDeadlineSeconds"] == 7200
    )
    assert job["metadata"]["labels"]["team"] == "rl"
    # Kueue: the queue label on the Job (not the pod), created suspended
    assert job["metadata"]["labels"][kube.LABEL_QUEUE] == "team-a"
    assert kube.LABEL_QUEUE not in job["spec"]["template"]["metadata"]["labels"]
    assert job["spec"]["suspend"] is True
    safe_to_evict = {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    assert job["metadata"]["annotations"] == safe_to_evict
    # the pod: kubernetes.annotations and kubernetes.pod_annotations
    assert job["spec"]["template"]["metadata"]["annotations"] == {
        **safe_to_evict,
        "example.com/scrape": "true",
    }
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [2]},
    }
    assert rules[1] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    # The ConfigMap holds the spec the pod runs; its digest names the Job.
    point = yaml.safe_load(manifests[2]["data"]["spec.yaml"])
    assert point["env"]["num_envs"] == 3 and point["sweep"] == {"num_envs": [], "replicas": []}
    assert validate_spec(point).kubernetes.image == "registry.example/trainer:v9"


def test_defaults_pod_hardening_and_paths() -> None:
    cm, job = kube.render(validate_spec({"name": "plain"}))
    point = validate_spec(yaml.safe_load(cm["data"]["spec.yaml"]))
    assert point.checkpoint.dir == kube.CHECKPOINT_DIR  # relative dirs move to the volume
    assert point.kubernetes.image == kube.DEFAULT_IMAGE
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip
    sc = pod["containers"][0]["securityContext"]
    assert (
        sc["readOnlyRootFilesystem"]
        and not sc["allowPrivilegeEscalation"]
        and sc["capabilities"] == {"drop": ["ALL"]}
    )
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_URI"] == kube.DEFAULT_TRACKING_URI
    assert env["HOME"] == "/tmp"
    assert {v["name"] for v in pod["volumes"]} == {"spec", "checkpoints", "dshm", "tmp"}
    assert (
        job["spec"]["ttlSecondsAfterFinished"] == 86400
        and "activeDeadlineSeconds" not in job["spec"]
        and "suspend" not in job["spec"]  # no queue: the Job starts at once
        and kube.LABEL_QUEUE not in job["metadata"]["labels"]
    )


@pytest.mark.parametrize(
    ("name", "resources", "num_envs", "cpu", "memory", "threads"),
    [
        ("defaults", {}, 2, "3", "1536Mi", "1"),
        ("fractional cpu", {"cpu_per_env": 0.5, "learner_cpu": 1.0}, 3, "2500m", "1792Mi", "1"),
        ("whole Gi", {"memory_per_env": "512Mi", "learner_memory": "1Gi"}, 2, "3", "2Gi", "1"),
        ("decimal units", {"memory_per_env": "500M", "learner_memory": "1G"}, 2, "3", "2G", "1"),
        (
            "mixed units fall to bytes",
            {"memory_per_env": "1k", "learner_memory": "1Ki"},
            1,
            "2",
            "2024",
            "1",
        ),
        ("learner threads floor", {"learner_cpu": 2.5}, 1, "3500m", "1280Mi", "2"),
        (
            "millicores learner",
            {"learner_cpu": 0.25, "cpu_per_env": 0.25},
            1,
            "500m",
            "1280Mi",
            "1",
        ),
    ],
)
def test_resources_table(
    name: str, resources: dict, num_envs: int, cpu: str, memory: str, threads: str
) -> None:
    spec = validate_spec({"name": "res", "resources": resources})
    _, job = kube.render(spec, [num_envs])
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"] == {"cpu": cpu, "memory": memory}
    assert container["resources"]["limits"] == {"cpu": cpu, "memory": memory}
    assert {e["name"]: e["value"] for e in container["env"]}["OMP_NUM_THREADS"] == threads


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"), (0.5, "0.5"), (0.00025, "0.00025"), (1e-5, "0.00001"), (1e-6, "0.000001"),
        (1e-7, "1e-7"), (1.5e-10, "1.5e-10"), (1e-100, "1e-100"), (123456.789, "123456.789"),
        (1e20, "100000000000000000000"), (1e21, "1e+21"), (1.5e300, "1.5e+300"), (-2.5, "-2.5"),
        (0.1 + 0.2, "0.30000000000000004"),
    ],
)  # fmt: skip
def test_go_float_matches_go_encoding_json(value: float, expected: str) -> None:
    """Go writes float64 with strconv 'f' (or 'e' outside [1e-6, 1e21)), shortest digits."""
    assert spec_mod.go_float(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", '"plain"'), ('q"b\\', '"q\\"b\\\\"'), ("a<b>&c", '"a\\u003cb\\u003e\\u0026c"'),
        ("tab\tnl\n", '"tab\\tnl\\n"'), ("\x01", '"\\u0001"'), ("é✓", '"é✓"'), ("\u2028", '"\\u2028"'),
    ],
)  # fmt: skip
def test_go_string_matches_go_encoding_json(value: str, expected: str) -> None:
    assert spec_mod.go_string(value) == expected


def test_spec_document_is_sorted_indented_json_without_nulls() -> None:
    point = kube.pod_spec(validate_spec({"name": "doc"}), 2)
    text = spec_mod.spec_document(point)
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)  # Go's layout
    assert '"cpu_per_env": 1,' in text  # Go writes the float64 1.0 as 1
    assert "null" not in text and "state" not in data["game"]
    assert validate_spec(yaml.safe_load(text)) == point  # JSON is YAML: the trainer reads it back


def test_names_are_stable_idempotent_and_track_the_spec() -> None:
    spec = validate_spec({"name": "stable", "sweep": {"num_envs": [1, 2, 4]}})
    first, again = kube.plan_pods(spec), kube.plan_pods(validate_spec(spec.model_dump(mode="json")))
    assert first == again
    sweep, points = first
    assert [p.job_name.rsplit("-", 1)[0] for p in points] == ["stable-e1", "stable-e2", "stable-e4"]
    assert len({p.job_name for p in points}) == 3
    assert sweep.startswith("stable-") and len(sweep) == len("stable-") + 8
    assert kube.plan_pods(spec, [4, 2, 1])[0] == sweep  # the order of the env list does not matter
    changed = validate_spec({**spec.model_dump(mode="json"), "seed": 2})
    assert {p.job_name for p in kube.plan_pods(changed)[1]}.isdisjoint({p.job_name for p in points})
    assert kube.plan_pods(spec, image="other:1")[1][0].job_name != points[0].job_name


@pytest.mark.parametrize(
    ("name", "data", "envs", "match"),
    [
        ("auto envs", {"name": "a", "env": {"num_envs": "auto"}}, None, "'auto' cannot size a pod"),
        (
            "batch too big for 1 env",
            {"name": "b", "ppo": {"batch_size": 256}},
            [1, 2],
            "ppo.batch_size: must not exceed",
        ),
        ("bad count", {"name": "c"}, [0], "integer ≥ 1"),
        ("duplicate counts", {"name": "d"}, [2, 2], "distinct"),
        ("name too long", {"name": "n" * 40}, [123456789012345], "longer than 63"),
        (
            "pod hostname too long",
            {"name": "n" * 40, "ppo": {"batch_size": 100}, "distributed": {"replicas": 100}},
            [123456],
            r"with its pods. suffix \(-99\)",
        ),
        (
            "a Service name must start with a letter",
            {"name": "9lives", "ppo": {"batch_size": 64}, "distributed": {"replicas": 2}},
            None,
            "must start with a letter for more than one replica",
        ),
        (
            "no pair reaches total_envs",
            {"name": "t", "ppo": {"batch_size": 64}, "sweep": {"total_envs": 4, "num_envs": [4]}},
            [3],
            r"sweep.total_envs: .*\(with --envs\)",
        ),
    ],
)
def test_render_errors(name: str, data: dict, envs: list[int] | None, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        kube.render(validate_spec(data), envs)


def test_one_replica_keeps_a_plain_job_and_its_names() -> None:
    """`distributed.replicas: 1` (the default) and `sweep.replicas: [1]` render a plain Job and
    no Service, named as before the replicas dimension; more than one changes the name, the run
    id and the object set."""
    plain = kube.render(validate_spec({"name": "one"}))
    assert [m["kind"] for m in plain] == ["ConfigMap", "Job"]
    assert kube.render(validate_spec({"name": "one", "sweep": {"replicas": [1]}})) == plain
    job = plain[1]
    assert job["metadata"]["labels"][kube.LABEL_REPLICAS] == "1"
    assert "x" not in job["metadata"]["labels"][kube.LABEL_RUN_ID].split("-")[1]
    group = kube.render(validate_spec({"name": "one", "distributed": {"replicas": 2}}))
    assert [m["kind"] for m in group] == ["ConfigMap", "Service", "Job"]
    assert group[2]["metadata"]["name"].startswith("one-e2x2-")
    assert group[2]["metadata"]["labels"][kube.LABEL_RUN_ID].startswith("one-e2x2-r")
    assert group[1]["spec"]["ports"] == [
        {"name": "rendezvous", "port": 29400, "targetPort": 29400, "protocol": "TCP"}
    ]
    # resources are per replica: the pod of a group asks what a single pod of that many envs does
    assert (
        group[2]["spec"]["template"]["spec"]["containers"][0]["resources"]
        == job["spec"]["template"]["spec"]["containers"][0]["resources"]
    )


def test_render_cli_invalid_input_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nppo:\n  update_epochs: -1\n")
    result = CliRunner().invoke(main, ["render", str(bad)])
    assert result.exit_code == 2
    assert "ppo.update_epochs" in result.output
    result = CliRunner().invoke(
        main, ["render", str(ROOT / "configs/quickstart.yaml"), "--envs", "1,x"]
    )
    assert result.exit_code == 2 and "comma-separated integers" in result.output


def test_kube_and_launcher_import_neither_torch_nor_pyboy() -> None:
    code = (
        "import sys, trainer.launcher, trainer.kube.manifests, trainer.kube.client, trainer.cli\n"
        "heavy = sorted(m for m in ('torch', 'pyboy', 'numpy', 'mlflow', 'kubernetes') if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "", f"imported at start-up: {result.stdout.strip()}"


def test_chart_default_image_tracks_package_version() -> None:
    chart = yaml.safe_load((ROOT / "helm" / "pyboy-trainer" / "Chart.yaml").read_text())
    from trainer import __version__

    assert chart["appVersion"] == __version__
    assert kube.DEFAULT_IMAGE == f"ghcr.io/pyboy-trainer/trainer:{__version__}"


def test_job_spec_round_trip_through_yaml_stream() -> None:
    manifests = kube.render(JobSpec(name="roundtrip"))
    assert list(yaml.safe_load_all(kube.to_yaml_stream(manifests))) == manifests
