"""Every object we ship against the official schemas of every Kubernetes version we support.

`trainer.kube.manifests.KUBERNETES_VERSIONS` is the one list: each minor's OpenAPI schemas (as
shipped by the pinned kubernetes-validate, `--strict`: unknown fields refused) must accept
`trainer render`'s output, the Helm chart's (default values, and a values file setting every
option) and everything in k8s/. The chart's `kubeVersion` and the docs state the same range.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from test_helm_chart import CHART
from test_kube_game import rom_bytes
from test_kube_render import FULL, GOLDEN_CASES
from test_kube_tools import K8S_FILES, ROOT, assert_valid_manifests, require_tool, run_tool

from trainer.kube import manifests as kube
from trainer.spec import validate_spec

VERSIONS = kube.KUBERNETES_VERSIONS

#: Chart values that set every option: the full spec, env counts, and the MLflow server.
FULL_VALUES = {
    "spec": FULL,
    "envs": [1, 2],
    "replicas": [1, 2],  # an Indexed Job and a headless Service per env count too
    "mlflow": {
        "defaultTrackingUri": "http://mlflow.elsewhere.svc:5000",
        "server": {
            "enabled": True,
            "image": "registry.example/mlflow:3",
            "port": 5001,
            "storage": "20Gi",
            "storageClassName": "fast-ssd",
            "allowedHosts": ["mlflow.example.com"],
            "resources": {
                "requests": {"cpu": "500m", "memory": "1Gi"},
                "limits": {"memory": "2Gi"},
            },
            "postgres": {
                "enabled": True,
                "existingSecret": "mlflow-db",
                "image": "postgres:17.6-bookworm",
                "storage": "50Gi",
                "storageClassName": "fast-ssd",
                "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
            },
        },
    },
}


def helm_output(tmp_path: Path, name: str, values: dict | None) -> Path:
    args = [require_tool("helm"), "template", "release", str(CHART), "--namespace", "ml"]
    if values is not None:
        (tmp_path / f"{name}.json").write_text(json.dumps(values))
        args += ["--values", str(tmp_path / f"{name}.json")]
    result = run_tool(args)
    assert result.returncode == 0, result.stderr
    path = tmp_path / f"chart-{name}.yaml"
    path.write_text(result.stdout)
    return path


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Everything we ship, rendered once: `trainer render` cases, the chart, k8s/."""
    tmp_path = tmp_path_factory.mktemp("shipped")
    paths = []
    for case, data, envs in GOLDEN_CASES:
        path = tmp_path / f"render-{case}.yaml"
        path.write_text(kube.to_yaml_stream(kube.render(validate_spec(data), envs)))
        paths.append(path)
    # configs/zelda.yaml with its ROM and save state shipped from this machine (binaryData,
    # a projected volume)
    (tmp_path / "zelda.gb").write_bytes(rom_bytes(b"\x00"))  # render checks the header
    (tmp_path / "zelda.gb.state").write_bytes(b"\x01" * 1024)
    zelda = yaml.safe_load((ROOT / "configs/zelda.yaml").read_text())
    zelda["game"].update(rom=str(tmp_path / "zelda.gb"), state=str(tmp_path / "zelda.gb.state"))
    path = tmp_path / "render-zelda-shipped.yaml"
    path.write_text(kube.to_yaml_stream(kube.render(validate_spec(zelda), [2])))
    paths.append(path)
    paths.append(helm_output(tmp_path, "defaults", None))
    paths.append(helm_output(tmp_path, "full", FULL_VALUES))
    kinds = {d["kind"] for d in yaml.safe_load_all(paths[-1].read_text()) if d}
    assert kinds == {
        "ConfigMap",
        "Job",
        "PersistentVolumeClaim",
        "Service",
        "Deployment",
        "StatefulSet",
    }
    return paths + K8S_FILES


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_everything_we_ship_passes_the_official_schemas(shipped: list[Path], version: str) -> None:
    assert_valid_manifests(shipped, version)


def test_the_pinned_validator_has_every_supported_version() -> None:
    """A version the validator lacks must not pass unnoticed: its schemas are package data."""
    tool = Path(require_tool("kubernetes-validate")).resolve()
    schemas = next(tool.parents[1].glob("lib/python*/site-packages/kubernetes_validate"))
    shipped = {p.name for p in (schemas / "kubernetes-json-schema").iterdir()}
    missing = [v for v in VERSIONS if f"v{v}.0-local-strict" not in shipped]
    assert not missing, f"kubernetes-validate has no schemas for {missing}: update its pin"


def test_chart_kube_version_is_the_oldest_supported() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == f">={VERSIONS[0]}.0-0"


@pytest.mark.parametrize("doc", ["README.md", "docs/kubernetes.md"])
def test_docs_state_the_supported_versions(doc: str) -> None:
    """The docs name the tested range as `KUBERNETES_VERSIONS` says, and no other 1.x claim."""
    text = (ROOT / doc).read_text()
    stated = f"**{', '.join(VERSIONS[:-1])} and {VERSIONS[-1]}**"
    assert stated in text, f"{doc} should state the supported Kubernetes versions as {stated}"
    claims = set(re.findall(r"Kubernetes \*\*(1\.\d+) and newer", text))
    assert not claims, f"{doc} claims 'Kubernetes {claims} and newer'"
