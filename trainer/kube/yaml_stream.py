"""Manifests as one YAML stream, the way `trainer render` prints them and k8s/examples hold them.

Imports nothing of ours (PyYAML only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (the ConfigMap's spec), plain YAML otherwise, and no
    anchors/aliases for repeated objects (kubectl reads them, but people should not have to)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_presenter)


def to_yaml_stream(manifests: Iterable[Mapping[str, Any]]) -> str:
    """Manifests as one YAML stream (`---` before each), ready for `kubectl apply -f -`."""
    return "".join(
        "---\n"
        + yaml.dump(dict(m), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
        for m in manifests
    )
