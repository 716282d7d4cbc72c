"""Specs a Kubernetes API server would refuse are refused before anything is sent.

One table of Kubernetes-invalid specs (`trainer.spec.kube_rules`, the API server's rules as
k8s.io/apimachinery and pkg/apis/core/validation write them): `trainer validate`, `render` and
`launch` exit 2 naming the key, and the fake API client records no call; the chart's values
schema refuses the same values. A table of valid edge cases passes everywhere.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from test_helm_chart import CHART
from test_kube_tools import require_tool, run_tool
from test_launcher import FakeCluster

from trainer import launcher
from trainer.cli import main
from trainer.kube import manifests as kube
from trainer.kube.client import KubeClient
from trainer.spec import JobSpec, kube_rules, validate_spec
from trainer.spec.kube_rules import IMAGE_REFERENCE, image_reference_problem

LONG = "a" * 64  # one more than a label, a label value or a name part may have


def tolerations(*items: dict[str, Any]) -> dict[str, Any]:
    return {"kubernetes": {"tolerations": list(items)}}


def kubernetes(**fields: Any) -> dict[str, Any]:
    return {"kubernetes": fields}


# (case, spec fragment, the key the error names, what it says, whether the chart's schema has it)
INVALID = [
    ("checkpoint.dir is /tmp (the issue's duplicate mountPath)", {"checkpoint": {"dir": "/tmp"}},
     "checkpoint.dir", "is /tmp", True),
    ("checkpoint.dir is /dev/shm", {"checkpoint": {"dir": "/dev/shm/"}}, "checkpoint.dir",
     "is /dev/shm", True),
    ("checkpoint.dir is the spec's mount", {"checkpoint": {"dir": "/etc/trainer"}},
     "checkpoint.dir", "is /etc/trainer", True),
    ("checkpoint.dir holds the spec's mount", {"checkpoint": {"dir": "/etc"}}, "checkpoint.dir",
     "holds /etc/trainer", True),
    ("checkpoint.dir is the root", {"checkpoint": {"dir": "/"}}, "checkpoint.dir", "holds", True),
    ("checkpoint.dir under the read-only spec", {"checkpoint": {"dir": "/etc/trainer/ckpt"}},
     "checkpoint.dir", "under /etc/trainer", True),
    ("checkpoint.dir under /proc", {"checkpoint": {"dir": "/proc/ckpt"}}, "checkpoint.dir",
     "under /proc", True),
    ("checkpoint.dir with ..", {"checkpoint": {"dir": "/data/../tmp"}}, "checkpoint.dir",
     "'..'", True),
    ("toleration without key, operator Equal", tolerations({"value": "x"}),
     "kubernetes.tolerations.0", "operator must be 'Exists' when key is empty", True),
    ("toleration without key, explicit Equal", tolerations({"key": "", "operator": "Equal"}),
     "kubernetes.tolerations.0", "operator must be 'Exists'", True),
    ("toleration Exists with a value",
     tolerations({"key": "gpu", "operator": "Exists", "value": "yes"}),
     "kubernetes.tolerations.0", "value must be empty when operator is 'Exists'", True),
    ("tolerationSeconds with NoSchedule",
     tolerations({"key": "a", "value": "b", "effect": "NoSchedule", "tolerationSeconds": 60}),
     "kubernetes.tolerations.0", "only allowed with effect 'NoExecute'", True),
    ("tolerationSeconds without effect",
     tolerations({"key": "a", "operator": "Exists"}, {"key": "b", "tolerationSeconds": 5}),
     "kubernetes.tolerations.1", "only allowed with effect 'NoExecute'", True),
    ("toleration key not a label key", tolerations({"key": "bad key!", "value": "x"}),
     "kubernetes.tolerations.0", "key 'bad key!'", True),
    ("toleration value too long", tolerations({"key": "k", "value": LONG}),
     "kubernetes.tolerations.0", "at most 63", True),
    ("toleration operator unknown", tolerations({"key": "k", "operator": "In"}),
     "kubernetes.tolerations.0.operator", "'Exists' or 'Equal'", True),
    ("label key with spaces", kubernetes(labels={"not a key": "x"}), "kubernetes.labels",
     "key 'not a key'", True),
    ("label key with an upper-case prefix", kubernetes(labels={"Example.com/team": "x"}),
     "kubernetes.labels", "prefix before '/'", True),
    ("label key with an empty name", kubernetes(labels={"example.com/": "x"}),
     "kubernetes.labels", "must be a name", True),
    ("label key of 64 characters", kubernetes(labels={LONG: "x"}), "kubernetes.labels",
     "at most 63", True),
    ("label key with a 254-character prefix", kubernetes(labels={"a." * 126 + "aa/x": "y"}),
     "kubernetes.labels", "prefix before '/'", False),
    ("label value with a space", kubernetes(labels={"team": "r l"}), "kubernetes.labels",
     "value 'r l' of 'team'", True),
    ("label value of 64 characters", kubernetes(labels={"team": LONG}), "kubernetes.labels",
     "at most 63", True),
    ("label value ending in '-'", kubernetes(labels={"team": "rl-"}), "kubernetes.labels",
     "starting and ending with a letter or digit", True),
    ("node selector key", kubernetes(node_selector={"pool type": "cpu"}),
     "kubernetes.node_selector", "key 'pool type'", True),
    ("node selector value", kubernetes(node_selector={"pool": "c/pu"}),
     "kubernetes.node_selector", "value 'c/pu'", True),
    ("annotation key with an empty prefix", kubernetes(annotations={"/nope": "x"}),
     "kubernetes.annotations", "prefix before '/'", True),
    ("annotations over 256 KiB", kubernetes(annotations={"big": "x" * (256 * 1024)}),
     "kubernetes.annotations", "at most 262144 bytes", False),
    ("ServiceAccount name", kubernetes(service_account="Not_DNS"), "kubernetes.service_account",
     "DNS-1123 subdomain", True),
    ("PVC name", kubernetes(checkpoint_pvc="my pvc"), "kubernetes.checkpoint_pvc",
     "DNS-1123 subdomain", True),
    ("Secret name", kubernetes(mlflow_secret="MLflow"), "kubernetes.mlflow_secret",
     "DNS-1123 subdomain", True),
    ("Secret name of 254 characters", kubernetes(mlflow_secret="a" * 254),
     "kubernetes.mlflow_secret", "at most 253", True),
    ("namespace with a dot (a subdomain, not a label)", kubernetes(namespace="ml.team"),
     "kubernetes.namespace", "DNS-1123 label", True),
    ("namespace of 64 characters", kubernetes(namespace=LONG), "kubernetes.namespace",
     "at most 63", True),
    ("image with a trailing space", kubernetes(image="registry.example/trainer:1 "),
     "kubernetes.image", "leading or trailing spaces", False),
    ("backoffLimit beyond int32", kubernetes(backoff_limit=2**31), "kubernetes.backoff_limit",
     "≤ 2147483647", True),
    ("memory quantity", {"resources": {"memory_per_env": "lots"}}, "resources.memory_per_env",
     "must be a Kubernetes quantity", True),
    ("shm size quantity", kubernetes(shm_size="1GB"), "kubernetes.shm_size",
     "must be a Kubernetes quantity", True),
    ("an image the kubelet cannot parse", kubernetes(image="Team/Trainer:1"), "kubernetes.image",
     "must be an image reference", True),
    # the chart's template refuses it (tests/test_helm_chart.py), not its schema
    ("a Service name starting with a digit (several replicas)",
     {"name": "9lives", "ppo": {"batch_size": 64}, "distributed": {"replicas": 2}}, "name",
     "must start with a letter", False),
    ("the same through sweep.replicas",
     {"name": "0x", "ppo": {"batch_size": 64}, "sweep": {"replicas": [1, 2]}}, "name",
     "must start with a letter", False),
]  # fmt: skip

VALID = [
    ("empty label value", kubernetes(labels={"example.com/team": "", "a_b.c-D": "x.Y_z"})),
    ("63-character label key and value", kubernetes(labels={"a" * 63: "b" * 63})),
    ("toleration of every taint", tolerations({"operator": "Exists"})),
    ("NoExecute with seconds",
     tolerations({"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30})),
    ("Equal with an empty value", tolerations({"key": "k", "effect": "PreferNoSchedule"})),
    ("subdomain names", kubernetes(service_account="ci.runner-1", mlflow_secret="mlflow.creds",
                                   checkpoint_pvc="a" * 253)),
    ("annotation key checked lower-cased", kubernetes(annotations={"Example.COM/Note": "any text"})),
    ("checkpoint.dir under /tmp (parents are mounted first)", {"checkpoint": {"dir": "/tmp/ckpt"}}),
    ("checkpoint.dir of its own", {"checkpoint": {"dir": "/var/lib/trainer/checkpoints"}}),
    ("relative checkpoint.dir (pods replace it)", {"checkpoint": {"dir": "../runs"}}),
    ("63-character namespace", kubernetes(namespace="n" * 63)),
    ("a digit first with one replica", {"name": "9lives", "sweep": {"replicas": [1]}}),
]  # fmt: skip


def spec_data(fragment: dict[str, Any]) -> dict[str, Any]:
    return {"name": "k8s", **copy.deepcopy(fragment)}


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()
    monkeypatch.setattr(launcher, "make_client", lambda context=None: KubeClient(fake, fake))
    return fake


@pytest.mark.parametrize(
    ("case", "fragment", "key", "says", "in_schema"), INVALID, ids=[c[0] for c in INVALID]
)
def test_kubernetes_invalid_spec_exits_2_naming_the_key_and_sends_nothing(
    tmp_path: Path, cluster: FakeCluster, case: str, fragment: dict, key: str, says: str,
    in_schema: bool,
) -> None:  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec_data(fragment)))
    runner = CliRunner()
    for command in (["validate"], ["render"], ["launch", "--backend", "kubernetes"]):
        result = runner.invoke(main, [*command, str(path)])
        assert result.exit_code == 2, (command, result.output)
        # The key, or the key inside it the reason is about ("….0.operator: must be …").
        named = re.search(re.escape(key) + r"[.:]", result.stderr)
        reason = says in result.stderr or says.replace(" ", ": ", 1) in result.stderr
        assert named and reason, (command, result.stderr)
        assert result.stdout == "" or command[0] == "launch", result.stdout  # nothing rendered
    assert cluster.calls == []


@pytest.mark.parametrize(("case", "fragment"), VALID, ids=[c[0] for c in VALID])
def test_kubernetes_valid_edge_cases_pass(case: str, fragment: dict) -> None:
    manifests = kube.render(validate_spec(spec_data(fragment)))
    assert [m["kind"] for m in manifests] == ["ConfigMap", "Job"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "fragment", "key", "says", "in_schema"),
    [c for c in INVALID if c[4]],
    ids=[c[0] for c in INVALID if c[4]],
)
def test_the_chart_refuses_the_same_values(
    tmp_path: Path, case: str, fragment: dict, key: str, says: str, in_schema: bool
) -> None:
    """values.schema.json carries the rules (patterns, if/then), so `helm install` refuses them
    too, at the same key."""
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"spec": spec_data(fragment)}))
    result = run_tool([require_tool("helm"), "template", "r", str(CHART), "--values", str(values)])
    assert result.returncode != 0, result.stdout[:500]
    where = "/spec/" + "/".join(key.split(".")[:2])
    assert "don't meet the specifications of the schema" in result.stderr, result.stderr
    assert where in result.stderr or "invalid propertyName" in result.stderr, result.stderr


PATHS = ["/", "//", "/tmp", "/tmp/", "/tmp/x", "/tmpx", "/etc", "/etc/trainer", "/etc/trainer/a",
         "/etcx", "/dev", "/dev/shm", "/dev/shm/x", "/devices", "/proc/1", "/sys", "/var/lib/t",
         "/a/../b", "/a/..b", "runs", "../runs"]  # fmt: skip
KEYS = ["a", "a/b", "A.b_c-D", "example.com/x", "Example.com/x", "/x", "x/", "a b", "-a", "a-",
        "a" * 63, "a" * 64, "a.b/c/d", "é"]  # fmt: skip


def schema_accepts(schema: dict[str, Any], value: str) -> bool:
    # JSON Schema patterns match anywhere unless anchored; ours are anchored.
    if "not" in schema:
        return not any(re.search(s["pattern"], value) for s in schema["not"]["anyOf"])
    return bool(re.search(schema["pattern"], value)) and len(value) <= schema.get(
        "maxLength", len(value)
    )


@pytest.mark.parametrize("path", PATHS)
def test_mount_path_rule_and_its_schema_agree(path: str) -> None:
    ok = kube_rules.mount_path_problem(path) is None
    assert schema_accepts(kube_rules.schema_mount_path(), path) == ok


@pytest.mark.parametrize("key", KEYS)
def test_label_rules_and_their_schema_agree(key: str) -> None:
    labels = kube_rules.schema_labels()
    key_ok = kube_rules.qualified_name_problem(key) is None
    assert schema_accepts(labels["propertyNames"], key) == key_ok
    value_ok = kube_rules.label_value_problem(key) is None
    assert schema_accepts(labels["additionalProperties"], key) == value_ok
    assert schema_accepts(kube_rules.schema_dns1123_label(), key) == (
        kube_rules.dns1123_label_problem(key) is None
    )


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/pyboy-trainer/trainer:0.1.0",
        "pyboy-trainer:0.1",
        "busybox",
        "library/busybox:1.36",
        "registry.example.com:5000/team/trainer@sha256:" + "0" * 64,
        "localhost:5000/a/b:c",
        "127.0.0.1:5000/x:y",
        "[::1]:5000/x",
        "gcr.io/a/b-c_d.e:v1@sha256:" + "a" * 64,
    ],
)
def test_image_references_the_kubelet_pulls_are_accepted(image):
    assert image_reference_problem(image) is None
    assert JobSpec.model_validate({"name": "x", "kubernetes": {"image": image}})


@pytest.mark.parametrize(
    "image",
    ["UPPER/case:tag", "Busybox", "ghcr.io/Org/x", "x:", "x@sha256:123", "-x", "a//b",
     "x:tag:tag", "http://ghcr.io/x", "x y", "ghcr.io/"],
)  # fmt: skip
def test_image_references_the_kubelet_refuses_are_refused_by_the_spec_and_the_schema(image):
    """Found by probing: `UPPER/case:tag` rendered a Job whose pod would never start
    (ErrInvalidImageName); the rule is distribution/reference's grammar."""
    assert image_reference_problem(image)
    with pytest.raises(ValueError, match="must be an image reference like"):
        JobSpec.model_validate({"name": "x", "kubernetes": {"image": image}})
    assert not re.match(IMAGE_REFERENCE.pattern, image)  # what values.schema.json carries


def test_render_refuses_an_image_option_the_kubelet_would_refuse():
    result = CliRunner().invoke(
        main, ["render", str(CHART.parents[1] / "configs/quickstart.yaml"), "--image", "A/B:1"]
    )
    assert result.exit_code == 2 and "Invalid value for '--image'" in result.output
