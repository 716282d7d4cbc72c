"""The Helm chart with real helm: lint, schema, and the same objects as `trainer render`.

`helm template` must give, for the same spec and env counts, exactly the ConfigMaps and Jobs
that `trainer.kube.render` gives — names (spec digests) included. The one difference is the
label app.kubernetes.io/managed-by: "Helm" from the chart, "trainer" from the launcher.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_kube_render import FULL, FULL_PYTORCHJOB, FULL_REPLICAS
from test_kube_tools import ROOT, assert_checkov_passes, require_tool, run_tool

from trainer.kube import chart
from trainer.kube import manifests as kube
from trainer.spec import JobSpec, validate_spec

CHART = ROOT / "helm" / "pyboy-trainer"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def helm_template(
    tmp_path: Path, values: dict[str, Any] | None, namespace: str, *extra: str
) -> list[dict[str, Any]]:
    helm = require_tool("helm")
    args = [helm, "template", "release", str(CHART), "--namespace", namespace, *extra]
    if values is not None:
        path = tmp_path / "values.json"
        path.write_text(json.dumps(values))
        args += ["--values", str(path)]
    result = run_tool(args)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def comparable(manifests: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for manifest in manifests:
        manifest = copy.deepcopy(manifest)
        spec = manifest.get("spec", {})
        templates = [spec.get("template", {})] + [
            replica["template"] for replica in spec.get("pytorchReplicaSpecs", {}).values()
        ]
        for labels in [manifest["metadata"].get("labels")] + [
            t.get("metadata", {}).get("labels") for t in templates
        ]:
            if labels and labels.get(kube.LABEL_MANAGED_BY) in ("Helm", kube.MANAGED_BY):
                labels[kube.LABEL_MANAGED_BY] = "<managed-by>"
        out[(manifest["kind"], manifest["metadata"]["name"])] = manifest
    return out


QUICKSTART = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
SWEEP = yaml.safe_load((ROOT / "configs" / "sweep.yaml").read_text())
TRICKY = {
    "name": "tricky",
    "seed": 7,
    "game": {"reward": {"coin": 2, "step": -0.01}},
    "env": {
        "num_envs": 3,
        "press_frames": 1,
        "actions": ["noop", "a"],
        "obs": {"type": "pixels", "downsample": 4},
    },
    "ppo": {"learning_rate": 0.0003, "gamma": 1, "total_steps": 1000000, "target_kl": 1.5e-8},
    "resources": {
        "cpu_per_env": 0.25,
        "learner_cpu": 2,
        "memory_per_env": "0.5Gi",
        "learner_memory": "1500M",
    },
    "mlflow": {"tags": {"note": 'quote " backslash \\ tab\t<&> é'}, "run_name": "r1"},
    "kubernetes": {"ttl_seconds_after_finished": 1000000, "tolerations": [{"operator": "Exists"}]},
}

DISTRIBUTED = yaml.safe_load((ROOT / "configs" / "distributed.yaml").read_text())
DUNGEON_RAM = yaml.safe_load((ROOT / "configs" / "dungeon-ram.yaml").read_text())
ZELDA_RAM = yaml.safe_load((ROOT / "configs" / "zelda-ram.yaml").read_text())
RAM_FORMS = {  # game.ram written every way the spec accepts: the chart must write it as we do
    "name": "ram-forms",
    "game": {
        "adapter": "ram",
        "reward": {"gold": 0.5},
        "ram": {
            "rewards": [
                {"name": "gold", "address": 49158, "kind": "delta", "decrease_scale": 0},
                {"name": "seen", "addresses": ["$c004", " 0XC005 "], "kind": "distinct"},
                {"name": "flags", "address": "0xc008", "kind": "bits", "length": 2,
                 "mask": "0x0F", "when": [{"address": "49154", "kind": "equals", "value": "0x01"}]},
                {"name": "step", "kind": "step", "scale": -0.01},
            ],
            "done": [{"name": "won", "address": "0xC00A", "kind": "not_equals", "value": 0,
                      "truncate": True}],
            "start": {"buttons": [{"wait": 10}, "start", {"press": "a", "frames": 9}],
                      "until": [{"address": "0xC002", "kind": "equals", "value": 1}]},
        },
    },
}  # fmt: skip

CASES = [
    # (id, spec values or None for the chart's defaults, envs, namespace)
    ("dungeon-ram config", DUNGEON_RAM, None, "default"),
    ("zelda-ram config", ZELDA_RAM, None, "pyboy-trainer"),
    ("game.ram in every accepted form", RAM_FORMS, None, "default"),
    ("chart defaults", None, None, "default"),
    ("quickstart config", QUICKSTART, None, "pyboy-trainer"),
    ("sweep config", SWEEP, None, "pyboy-trainer"),
    ("full spec", FULL, None, "ml"),
    ("envs override", {"name": "envs", "mlflow": {"enabled": False}}, [4, 1, 2], "batch"),
    ("tricky values", TRICKY, None, "default"),
    ("distributed config: replicas × envs = total_envs", DISTRIBUTED, None, "pyboy-trainer"),
    ("several replicas with every option", FULL_REPLICAS, None, "ml"),
    ("PyTorchJobs with every option", FULL_PYTORCHJOB, None, "ml"),
    (
        "a PyTorchJob of one replica",
        {"name": "pj", "kubernetes": {"distributed_backend": "pytorchjob"}},
        [2],
        "batch",
    ),
    (
        "replicas from the spec, envs override",
        {"name": "two", "ppo": {"batch_size": 30}, "distributed": {"replicas": 3}},
        [1, 2],
        "batch",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "spec_values", "envs", "namespace"), CASES, ids=[c[0] for c in CASES]
)
def test_chart_renders_the_same_objects_as_trainer_render(
    tmp_path: Path, case: str, spec_values: dict | None, envs: list[int] | None, namespace: str
) -> None:
    values = None if spec_values is None else {"spec": spec_values, "envs": envs or []}
    chart = comparable(helm_template(tmp_path, values, namespace))
    data = copy.deepcopy(spec_values) if spec_values else {"name": "pyboy"}
    data.setdefault("kubernetes", {})["namespace"] = (
        namespace  # the chart uses the release namespace
    )
    ours = comparable(kube.render(validate_spec(data), envs))
    assert sorted(chart) == sorted(ours), "the chart and trainer render name different objects"
    for key, manifest in ours.items():
        assert chart[key] == manifest, f"{key} differs between the chart and trainer render"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("defaults", []),
        ("with MLflow server", ["--set", "mlflow.server.enabled=true"]),
        (
            "with MLflow on PostgreSQL",
            ["--set", "mlflow.server.enabled=true", "--set", "mlflow.server.postgres.enabled=true"],
        ),
    ],
)
def test_helm_lint_strict(name: str, args: list[str]) -> None:
    helm = require_tool("helm")
    result = run_tool([helm, "lint", "--strict", str(CHART), *args])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        (
            "typo in a spec key",
            ["--set", "spec.ppo.totl_steps=5"],
            "additional properties 'totl_steps' not allowed",
        ),
        (
            "unknown top-level value",
            ["--set", "replica=2"],
            "additional properties 'replica' not allowed",
        ),
        ("out of range", ["--set", "spec.ppo.update_epochs=0"], "/spec/ppo/update_epochs"),
        ("not a number", ["--set", "spec.ppo.learning_rate=fast"], "/spec/ppo/learning_rate"),
        (
            "bad quantity",
            ["--set", "spec.resources.memory_per_env=lots"],
            "/spec/resources/memory_per_env",
        ),
        ("auto cannot size a pod", ["--set", "spec.env.num_envs=auto"], "'auto' cannot size a pod"),
        (
            "workers of unequal size",
            ["--set", "spec.env.envs_per_worker=2", "--set", "envs={2,3}"],
            "env.envs_per_worker: 2 does not divide num_envs 3",
        ),
        (
            "no environments (the spec's ≥ 1 rule, in the schema)",
            ["--set", "spec.env.num_envs=0"],
            "/spec/env/num_envs': minimum: got 0, want 1",
        ),
        (
            "batch larger than rollout",
            ["--set", "spec.ppo.batch_size=512"],
            "ppo.batch_size must not exceed",
        ),
        (
            "env the trainer sets",
            ["--set-json", 'spec.kubernetes.env=[{"name":"HOME","value":"/x"}]'],
            "/spec/kubernetes/env/0/name",
        ),
        (
            "volume mount over the spec",
            [
                "--set-json",
                'spec.kubernetes.volume_mounts=[{"name":"v","mountPath":"/etc/trainer"}]',
            ],
            "/spec/kubernetes/volume_mounts/0/mountPath",
        ),
        (
            "pull secret name",
            ["--set-json", 'spec.kubernetes.image_pull_secrets=["Bad_Name"]'],
            "/spec/kubernetes/image_pull_secrets/0",
        ),
    ],
)
def test_chart_rejects_bad_values(name: str, args: list[str], message: str) -> None:
    helm = require_tool("helm")
    result = run_tool([helm, "template", "release", str(CHART), *args])
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_values_yaml_spec_is_the_job_spec_defaults() -> None:
    """The chart computes names from the full spec, so its defaults must be the model's."""
    path = CHART / "values.yaml"
    if UPDATE:
        path.write_text(chart.chart_values_yaml())
    assert path.read_text() == chart.chart_values_yaml(), (
        "values.yaml is out of date: UPDATE_GOLDEN=1 pytest tests/test_helm_chart.py"
    )
    values = yaml.safe_load(path.read_text())
    assert values["spec"] == JobSpec(name=values["spec"]["name"]).model_dump(mode="json")
    assert values["envs"] == []
    assert values["mlflow"]["defaultTrackingUri"] == kube.DEFAULT_TRACKING_URI


def test_ram_defaults_template_is_generated_from_the_models() -> None:
    path = CHART / "templates" / "_ram_defaults.tpl"
    if UPDATE:
        path.write_text(chart.ram_defaults_template())
    assert path.read_text() == chart.ram_defaults_template(), (
        "_ram_defaults.tpl is out of date: UPDATE_GOLDEN=1 pytest tests/test_helm_chart.py"
    )


def test_numbers_template_is_generated_from_the_models() -> None:
    path = CHART / "templates" / "_numbers.tpl"
    if UPDATE:
        path.write_text(chart.numbers_template())
    assert path.read_text() == chart.numbers_template(), (
        "_numbers.tpl is out of date: UPDATE_GOLDEN=1 pytest tests/test_helm_chart.py"
    )
    paths = chart.number_paths()
    assert ["ppo", "learning_rate"] in paths and ["game", "reward", "*"] in paths
    assert ["game", "ram", "rewards", "[]", "scale"] in paths
    assert ["ppo", "total_steps"] not in paths  # integers: --set makes them numbers already


def test_floats_from_set_are_numbers_with_the_names_of_trainer_render(tmp_path: Path) -> None:
    """Issue 12: `--set` leaves floats strings (Helm's strvals); the schema takes them and the
    chart converts them, so the objects and names are `trainer render`'s for those numbers."""
    helm = require_tool("helm")
    sets = {
        "spec.ppo.learning_rate": "0.0001",
        "spec.ppo.gamma": "0.995",
        "spec.ppo.target_kl": "1e-2",
        "spec.resources.cpu_per_env": "0.5",
        "spec.mlflow.drain_timeout_s": "12.5",
        "spec.game.reward.step": "-0.01",
    }
    args = [x for key, value in sets.items() for x in ("--set", f"{key}={value}")]
    result = run_tool([helm, "template", "release", str(CHART), "--namespace", "ml", *args])
    assert result.returncode == 0, result.stderr
    chart_objects = comparable([d for d in yaml.safe_load_all(result.stdout) if d])
    data: dict = {"name": "pyboy", "kubernetes": {"namespace": "ml"}}
    for key, value in sets.items():
        node = data
        *parents, last = key.removeprefix("spec.").split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = float(value)
    ours = comparable(kube.render(validate_spec(data)))
    assert sorted(chart_objects) == sorted(ours)
    assert chart_objects == ours
    job = next(d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "2"


def test_values_schema_is_generated_from_the_job_spec() -> None:
    path = CHART / "values.schema.json"
    text = json.dumps(chart.chart_values_schema(), indent=2, ensure_ascii=False) + "\n"
    if UPDATE:
        path.write_text(text)
    assert path.read_text() == text, (
        "values.schema.json is out of date: UPDATE_GOLDEN=1 pytest tests/test_helm_chart.py"
    )
    schema = json.loads(text)
    assert schema["additionalProperties"] is False
    assert all(d.get("additionalProperties") is False for d in schema["$defs"].values())


@pytest.mark.slow
def test_chart_output_passes_checkov(tmp_path: Path) -> None:
    """(The schemas of every supported version: tests/test_kube_versions.py.)"""
    out = tmp_path / "rendered"
    out.mkdir()
    for name, args in [
        ("defaults", []),
        ("server", ["--set", "mlflow.server.enabled=true", "--set", "envs={1,2}"]),
        ("replicas", ["--set", "replicas={1,3}", "--set", "spec.ppo.batch_size=96"]),
        (
            "postgres",
            ["--set", "mlflow.server.enabled=true", "--set", "mlflow.server.postgres.enabled=true"],
        ),
    ]:
        helm = require_tool("helm")
        result = run_tool(
            [helm, "template", "release", str(CHART), "--namespace", "pyboy-trainer", *args]
        )
        assert result.returncode == 0, result.stderr
        (out / f"{name}.yaml").write_text(result.stdout)
    assert_checkov_passes(out, CHART / ".checkov.yaml")


@pytest.mark.slow
def test_chart_mlflow_server_is_the_jobs_tracking_uri(tmp_path: Path) -> None:
    docs = helm_template(tmp_path, None, "ml", "--set", "mlflow.server.enabled=true")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "Deployment", "Job", "PersistentVolumeClaim", "Service"]
    job = next(d for d in docs if d["kind"] == "Job")
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://release-mlflow.ml.svc:5000"
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--serve-artifacts" in args and any(
        a.startswith("--allowed-hosts=") and "release-mlflow.ml.svc:*" in a for a in args
    )
    claim = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


@pytest.mark.slow
def test_install_notes_name_the_sweep_with_commands_the_cli_accepts() -> None:
    """The NOTES after `helm install` are the user's next steps: each `trainer` line must parse
    with the real CLI, and name the sweep id the Jobs carry."""
    import shlex

    import click

    from trainer.cli import main

    helm = require_tool("helm")
    args = [helm, "install", "sweep", str(CHART), "-n", "pyboy-trainer", "--dry-run=client"]
    result = run_tool([*args, "--set", "mlflow.server.enabled=true", "--set", "envs={1,2}"])
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    rendered = [d for d in yaml.safe_load_all(result.stdout.split("NOTES:", 1)[0]) if d]
    sweep_ids = {
        d["metadata"]["labels"]["pyboy-trainer/sweep-id"]
        for d in rendered
        if isinstance(d, dict) and d.get("kind") == "Job"
    }
    (sweep_id,) = sweep_ids
    commands = [shlex.split(line.strip()) for line in notes.splitlines()
                if line.strip().startswith("trainer ")]  # fmt: skip
    assert {c[1] for c in commands} >= {"status", "logs", "compare"}
    for argv in commands:
        assert sweep_id in argv, argv
        command = main.get_command(click.Context(main), argv[1])
        assert command is not None, argv
        command.make_context(argv[1], argv[2:])  # raises on an unknown option or argument


@pytest.mark.slow
@pytest.mark.parametrize(("secret", "expected"), [(None, "release-mlflow-postgres"), ("pw", "pw")])
def test_chart_mlflow_on_postgresql_like_k8s(tmp_path: Path, secret: str | None, expected: str):
    """`mlflow.server.postgres.enabled`: a PostgreSQL StatefulSet and Service of the release; the
    server's store URI is built from the password Secret's mounted file, never a literal."""
    extra = ["--set", "mlflow.server.enabled=true", "--set", "mlflow.server.postgres.enabled=true"]
    if secret:
        extra += ["--set", f"mlflow.server.postgres.existingSecret={secret}"]
    docs = helm_template(tmp_path, None, "ml", *extra)
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    database = by_kind[("StatefulSet", "release-mlflow-postgres")]
    assert ("Service", "release-mlflow-postgres") in by_kind
    pod = database["spec"]["template"]["spec"]
    secrets = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
    assert secrets == [expected]
    server = by_kind[("Deployment", "release-mlflow")]["spec"]["template"]["spec"]
    (script,) = server["containers"][0]["args"]
    assert (
        "postgresql://mlflow:$(cat /etc/mlflow-postgres/password)@release-mlflow-postgres:5432"
        in script
    )
    assert "sqlite" not in script and "--serve-artifacts" in script
    assert [v["secret"]["secretName"] for v in server["volumes"] if "secret" in v] == [expected]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sweep", "envs", "replicas"),
    [
        ({"num_envs": [2, 4], "total_envs": 4}, [], [2, 1]),
        ({}, [2], [4]),
        ({"total_envs": 2}, [4, 2, 1], [1, 2, 4]),
    ],
    ids=str,
)
def test_chart_replicas_value_is_trainer_render_replicas_option(
    tmp_path: Path, sweep: dict, envs: list[int], replicas: list[int]
) -> None:
    """`replicas` in the values is `--replicas`: the same points, objects and sweep id; with
    `sweep.total_envs` both keep the same pairs."""
    spec = {"name": "opt", "ppo": {"batch_size": 32}, "sweep": sweep}
    values = {"spec": spec, "envs": envs, "replicas": replicas}
    chart_objects = comparable(helm_template(tmp_path, values, "ml"))
    data = {**copy.deepcopy(spec), "kubernetes": {"namespace": "ml"}}
    ours = comparable(kube.render(validate_spec(data), envs or None, replicas_list=replicas))
    assert sorted(chart_objects) == sorted(ours)
    assert chart_objects == ours


@pytest.mark.slow
@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {
                "spec": {"name": "t", "sweep": {"num_envs": [2, 4], "total_envs": 7}},
                "replicas": [1, 2],
            },
            "sweep.total_envs: no pair of num_envs [2,4] and replicas [1,2]",
        ),
        (
            {"spec": {"name": "b", "ppo": {"batch_size": 30}}, "replicas": [4]},
            "ppo.batch_size must be a multiple of distributed.replicas (got 30 and 4)",
        ),
        (
            {"spec": {"name": "b", "ppo": {"batch_size": 256}}, "envs": [1], "replicas": [1]},
            "ppo.batch_size must not exceed",
        ),
        (
            {"spec": {"name": "9lives"}, "replicas": [2]},
            "must start with a letter for more than one replica",
        ),
        (
            {
                "spec": {"name": "n" * 40, "ppo": {"batch_size": 100}},
                "envs": [123456],
                "replicas": [100],
            },
            "with its pods' suffix (-99)",
        ),
        (
            {"spec": {"name": "9lives", "kubernetes": {"distributed_backend": "pytorchjob"}}},
            "must start with a letter for a PyTorchJob",
        ),
        (
            {
                "spec": {
                    "name": "p" * 40,
                    "ppo": {"batch_size": 96},
                    "kubernetes": {"distributed_backend": "pytorchjob"},
                },
                "envs": [12345],
                "replicas": [3],
            },
            "with its pods' suffix (-worker-1)",
        ),
    ],
    ids=[
        "empty total_envs",
        "batch not divisible",
        "batch over rollout",
        "digit",
        "hostname",
        "pytorchjob digit",
        "pytorchjob worker name",
    ],
)
def test_chart_refuses_what_trainer_render_refuses_for_replicas(
    tmp_path: Path, values: dict, message: str
) -> None:
    helm = require_tool("helm")
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    result = run_tool([helm, "template", "release", str(CHART), "--values", str(path)])
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
