"""The pass-through pod settings of `kubernetes.*` (`trainer.spec.pod`): what the API server
would refuse, or what would clash with the trainer's own pod, is refused by `trainer validate`
and `render` with the field named (exit 2). That they render as given, in `trainer render` and
the chart alike, and pass the official schemas: tests/test_kube_render.py (FULL),
tests/test_helm_chart.py, tests/test_kube_versions.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from trainer.cli import main
from trainer.spec import SpecError, validate_spec

PVC = {"name": "roms", "persistentVolumeClaim": {"claimName": "roms"}}

BAD = [
    # (case, kubernetes settings, what the error says)
    ("volume named like the pod's own", {"volumes": [{**PVC, "name": "tmp"}]}, "volumes.0.name"),
    ("volume without a source", {"volumes": [{"name": "roms"}]}, "exactly one source"),
    (
        "volume with two sources",
        {"volumes": [{**PVC, "emptyDir": {}}]},
        "got persistentVolumeClaim, emptyDir",
    ),
    (
        "hostPath (not under Pod Security restricted)",
        {"volumes": [{"name": "h", "hostPath": {"path": "/"}}]},
        "hostPath",
    ),
    ("volume name not a DNS label", {"volumes": [{**PVC, "name": "Roms"}]}, "DNS-1123 label"),
    (
        "claim name",
        {"volumes": [{"name": "r", "persistentVolumeClaim": {"claimName": "a_b"}}]},
        "claimName",
    ),
    ("duplicate volume", {"volumes": [PVC, PVC]}, "duplicate names: roms"),
    (
        "mount of an unknown volume",
        {"volume_mounts": [{"name": "roms", "mountPath": "/roms"}]},
        "not in kubernetes.volumes",
    ),
    (
        "mount over the spec",
        {"volumes": [PVC], "volume_mounts": [{"name": "roms", "mountPath": "/etc/trainer"}]},
        "volume_mounts.0.mountPath",
    ),
    (
        "mount under the shipped game",
        {
            "volumes": [PVC],
            "volume_mounts": [{"name": "roms", "mountPath": "/var/lib/trainer/game/x"}],
        },
        "volume_mounts.0.mountPath",
    ),
    (
        "relative mount",
        {"volumes": [PVC], "volume_mounts": [{"name": "roms", "mountPath": "roms"}]},
        "absolute path",
    ),
    (
        "subPath escaping",
        {
            "volumes": [PVC],
            "volume_mounts": [{"name": "roms", "mountPath": "/r", "subPath": "../x"}],
        },
        "subPath",
    ),
    (
        "same mountPath twice",
        {
            "volumes": [PVC, {**PVC, "name": "other"}],
            "volume_mounts": [
                {"name": "roms", "mountPath": "/r"},
                {"name": "other", "mountPath": "/r/"},
            ],
        },
        "duplicate mountPath",
    ),
    (
        "mount over the checkpoints",
        {
            "volumes": [PVC],
            "volume_mounts": [{"name": "roms", "mountPath": "/var/lib/trainer/checkpoints"}],
        },
        "overlaps the checkpoint mount",
    ),
    ("env name", {"env": [{"name": "1X", "value": "1"}]}, "env.0.name"),
    (
        "env the trainer sets",
        {"env": [{"name": "OMP_NUM_THREADS", "value": "8"}]},
        "set by the trainer",
    ),
    ("env override of the spec", {"env": [{"name": "TRAIN_ENVS", "value": "8"}]}, "TRAIN_*"),
    (
        "env twice",
        {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
        "duplicate names: A",
    ),
    (
        "env value and valueFrom",
        {
            "env": [
                {
                    "name": "A",
                    "value": "1",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                }
            ]
        },
        "not both",
    ),
    ("env valueFrom empty", {"env": [{"name": "A", "valueFrom": {}}]}, "exactly one of"),
    ("pull secret name", {"image_pull_secrets": ["Registry"]}, "image_pull_secrets"),
    ("priority class name", {"priority_class": "High_Priority"}, "priority_class"),
    ("queue name", {"queue": "Team_A"}, "kubernetes.queue"),
    ("pod annotation key", {"pod_annotations": {"bad key": "x"}}, "pod_annotations"),
    ("affinity typo", {"affinity": {"nodeAfinity": {}}}, "affinity.nodeAfinity"),
]


@pytest.mark.parametrize(("case", "kubernetes", "message"), BAD, ids=[c[0] for c in BAD])
def test_bad_pod_settings_are_refused_naming_the_field(
    tmp_path: Path, case: str, kubernetes: dict, message: str
) -> None:
    data = {"name": "x", "kubernetes": kubernetes}
    with pytest.raises(SpecError, match="kubernetes"):
        validate_spec(data)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["render", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "kubernetes." in result.output, result.output
    assert result.stdout == ""


def test_the_pass_throughs_reach_the_pod_and_the_job_name() -> None:
    base = validate_spec({"name": "x"})
    given = base.updated(
        {
            "kubernetes.volumes": [PVC],
            "kubernetes.volume_mounts": [{"name": "roms", "mountPath": "/roms", "readOnly": True}],
        }
    )
    from trainer.spec import job_name, run_id

    assert job_name(given) != job_name(base) and run_id(given) == run_id(base)
