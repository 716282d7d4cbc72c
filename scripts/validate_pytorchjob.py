"""Check the PyTorchJobs in YAML files against the Kubeflow training operator's published types.

    .tools/venv/bin/python scripts/validate_pytorchjob.py --kubernetes-version 1.31 FILE...

The schema is the operator's own Python SDK (`kubeflow-training`, generated from its OpenAPI
document; `scripts/fetch_tools.sh` installs it into .tools/venv): every field must be one the
SDK's models name, with the type they give (unknown fields refused, like `kubernetes-validate
--strict`), and required ones present (the SDK's deserializer refuses a missing one). Each
replica's pod template is checked against the official Kubernetes schema of the given minor by
kubernetes-validate. Documents of other kinds are skipped (kubernetes-validate checks those).
Exit 0 when every PyTorchJob passes, 1 with one line per problem otherwise, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from kubeflow.training import models
from kubeflow.training.api_client import ApiClient

PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (int, float),
    "object": (object,),
}

#: The Kubernetes types a PyTorchJob embeds, as a document kubernetes-validate can check.
K8S_WRAPPERS = {
    "V1PodTemplateSpec": lambda v: {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "check"},
        "template": v,
    },
    "V1ObjectMeta": lambda v: {"apiVersion": "v1", "kind": "ConfigMap", "metadata": v},
}


def check(value: Any, type_name: str, where: str, version: str) -> list[str]:
    """Problems of `value` as the SDK type `type_name` at `where` (a dotted path)."""
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        inner = type_name[5:-1]
        return [
            e for i, item in enumerate(value) for e in check(item, inner, f"{where}[{i}]", version)
        ]
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping, got {type(value).__name__}"]
        inner = type_name[5:-1].split(", ", 1)[1]
        return [e for k, v in value.items() for e in check(v, inner, f"{where}.{k}", version)]
    if type_name in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[type_name])
        if type_name in ("int", "float") and isinstance(value, bool):
            ok = False
        return [] if ok else [f"{where}: expected {type_name}, got {value!r}"]
    if type_name in K8S_WRAPPERS:
        try:
            kubernetes_validate.validate(K8S_WRAPPERS[type_name](value), version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            return [f"{where}: {exc.message} (Kubernetes {version}, {type_name})"]
        return []
    model = getattr(models, type_name, None)
    if model is None:
        return [f"{where}: the SDK has no type {type_name}"]
    if not isinstance(value, dict):
        return [f"{where}: expected a {type_name} mapping, got {type(value).__name__}"]
    fields = {json_key: attr for attr, json_key in model.attribute_map.items()}
    problems = []
    for key, item in value.items():
        if key not in fields:
            problems.append(f"{where}.{key}: unknown field of {type_name}")
        else:
            problems += check(item, model.openapi_types[fields[key]], f"{where}.{key}", version)
    return problems


def check_pytorchjob(doc: dict[str, Any], version: str) -> list[str]:
    name = doc.get("metadata", {}).get("name", "?")
    problems = check(doc, "KubeflowOrgV1PyTorchJob", f"PyTorchJob {name}", version)
    if doc.get("apiVersion") != "kubeflow.org/v1":
        problems.append(f"PyTorchJob {name}.apiVersion: expected kubeflow.org/v1")
    try:  # required fields: the SDK's models refuse a missing one
        ApiClient()._ApiClient__deserialize(doc, "KubeflowOrgV1PyTorchJob")  # type: ignore[attr-defined]
    except ValueError as exc:
        problems.append(f"PyTorchJob {name}: {exc}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kubernetes-version", required=True, help="a minor, e.g. 1.31")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    problems, checked = [], 0
    for path in args.files:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "PyTorchJob":
                checked += 1
                problems += [
                    f"{path}: {p}" for p in check_pytorchjob(doc, f"{args.kubernetes_version}.0")
                ]
    for line in problems:
        print(line)
    if not checked:
        print("no PyTorchJob in " + ", ".join(map(str, args.files)))
        return 1
    print(f"{checked} PyTorchJob(s) checked: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
