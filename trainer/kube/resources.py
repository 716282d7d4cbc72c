"""A pod's resources from the spec: requests = limits (Guaranteed QoS), as clean quantities.

Pure functions; imports `trainer.spec` only.
"""

from __future__ import annotations

import math

from trainer.spec import JobSpec, parse_quantity


def format_cpu(cores: float) -> str:
    """Cores → a clean quantity: "3", "2500m"."""
    millis = math.floor(cores * 1000 + 0.5)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def format_memory(num_bytes: float) -> str:
    """Bytes → the largest unit that divides them exactly: "1536Mi", "2Gi", "2G", "2024"."""
    value = math.floor(num_bytes + 0.5)
    for suffix, factor in (
        ("Ti", 2**40),
        ("T", 10**12),
        ("Gi", 2**30),
        ("G", 10**9),
        ("Mi", 2**20),
        ("M", 10**6),
        ("Ki", 2**10),
        ("k", 10**3),
    ):
        if value >= factor and value % factor == 0:
            return f"{value // factor}{suffix}"
    return str(value)


def pod_resources(point: JobSpec) -> dict[str, dict[str, str]]:
    """Requests = limits (Guaranteed QoS): envs × per-env + learner, and the GPUs if any."""
    res = point.resources
    cpu = format_cpu(point.requested_cpus())
    memory = format_memory(
        int(point.env.num_envs) * parse_quantity(res.memory_per_env)
        + parse_quantity(res.learner_memory)
    )
    limits = {"cpu": cpu, "memory": memory}
    if res.gpu > 0:
        limits["nvidia.com/gpu"] = str(res.gpu)
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": limits}
