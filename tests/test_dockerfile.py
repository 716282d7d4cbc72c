"""The Dockerfile: hadolint-clean, and the properties the Jobs rely on. (No Docker engine here:
the image itself is not built by the tests.)"""

from __future__ import annotations

import json
import re

import pytest
from test_kube_tools import ROOT, require_tool, run_tool

from trainer.kube import manifests as kube

DOCKERFILE = (ROOT / "Dockerfile").read_text()
INSTRUCTIONS = [
    line.strip()
    for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


@pytest.mark.slow
def test_hadolint_is_clean() -> None:
    hadolint = require_tool("hadolint")
    result = run_tool([hadolint, "--failure-threshold", "info", str(ROOT / "Dockerfile")])
    assert result.returncode == 0, result.stdout + result.stderr


def final_stage() -> list[str]:
    starts = [i for i, line in enumerate(INSTRUCTIONS) if line.startswith("FROM ")]
    assert len(starts) >= 2, "multi-stage build expected"
    return INSTRUCTIONS[starts[-1] :]


def test_base_image_and_cpu_torch_by_default() -> None:
    assert all(
        line.split()[1].startswith("python:") for line in INSTRUCTIONS if line.startswith("FROM ")
    )
    assert "ARG PYTHON_VERSION=3.11" in INSTRUCTIONS
    assert any(line.startswith("FROM python:${PYTHON_VERSION}-slim") for line in INSTRUCTIONS)
    assert "ARG TORCH_VARIANT=cpu" in INSTRUCTIONS
    assert "ARG TORCH_VERSION=2.13.0" in INSTRUCTIONS
    assert "https://download.pytorch.org/whl/${TORCH_VARIANT}" in DOCKERFILE


def test_dependencies_install_before_the_source_is_copied() -> None:
    copy_all = INSTRUCTIONS.index("COPY . .")
    torch = next(i for i, line in enumerate(INSTRUCTIONS) if "torch==" in line)
    deps = next(i for i, line in enumerate(INSTRUCTIONS) if line.startswith("RUN mkdir trainer"))
    assert torch < deps < copy_all
    assert INSTRUCTIONS.index("COPY pyproject.toml ./") < deps


def test_runs_as_the_numeric_non_root_user_the_pods_expect() -> None:
    users = [line for line in final_stage() if line.startswith("USER ")]
    assert users == [f"USER {kube.RUN_AS_USER}:{kube.RUN_AS_USER}"]


def test_exec_form_entrypoint_so_sigterm_reaches_the_trainer() -> None:
    (entrypoint,) = [line for line in final_stage() if line.startswith("ENTRYPOINT ")]
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["trainer"]


def test_dockerignore_keeps_the_context_small_but_has_the_package() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:4] == ["*", "!pyproject.toml", "!README.md", "!trainer/"]
