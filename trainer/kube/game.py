"""Your game in the pod: a ROM and save state on this machine → ConfigMaps the pod mounts.

When `game.rom` (or `game.state`) names a file here, `trainer render`/`launch` ship it: per Job
one ConfigMap `<job>-rom` (and `<job>-state`) holding the file as `binaryData`, projected into
the pod at `GAME_DIR`, and the pod's spec points at the mounted copy,
`GAME_DIR/<sha256[:10]>-<file name>` (the content's hash in the path: another ROM is another
Job and another run). A ConfigMap holds at most 1 MiB (`core.MaxSecretSize`), as a Game Boy ROM
does; a bigger file is an error that says what to do. A path that is no file here is left as
is when absolute (the pod finds it on a volume of `kubernetes.volumes` or in a derived image).

Imports `trainer.spec` only.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from trainer.errors import path_problem, read_input_file
from trainer.spec import JobSpec, SpecError
from trainer.spec.kube_rules import GAME_DIR
from trainer.spec.rom_header import ROM_FILE, STATE_FILE, rom_problem

#: A ConfigMap's data and binaryData together (k8s.io/kubernetes core.MaxSecretSize).
MAX_BYTES = 1024 * 1024
DIGEST_LENGTH = 10
#: spec field → the suffix of its ConfigMap's name.
FIELDS = {"game.rom": "rom", "game.state": "state"}
FILE_KINDS = {"game.rom": ROM_FILE, "game.state": STATE_FILE}
_KEY = re.compile(r"[^-._a-zA-Z0-9]")  # ConfigMap keys: IsConfigMapKey


@dataclass(frozen=True)
class GameFile:
    """One local file to ship: its spec field, where it was read, and its bytes."""

    field: str
    source: Path
    data: bytes

    @property
    def file_name(self) -> str:
        """The ConfigMap key and the file's name in the pod: `<sha256[:10]>-<name>`."""
        digest = hashlib.sha256(self.data).hexdigest()[:DIGEST_LENGTH]
        return f"{digest}-{_KEY.sub('_', self.source.name)}"

    @property
    def mounted(self) -> str:
        return f"{GAME_DIR}/{self.file_name}"

    def binary_data(self) -> dict[str, str]:
        return {self.file_name: base64.b64encode(self.data).decode()}


def _value(spec: JobSpec, field: str) -> str | None:
    return spec.game.rom if field == "game.rom" else spec.game.state


def local_game_files(spec: JobSpec) -> list[GameFile]:
    """The ROM and state of `spec` that are files on this machine (to ship), checked: at most
    `MAX_BYTES` each; a relative path must be such a file. `SpecError` naming the field else."""
    found = []
    for field in FIELDS:
        value = _value(spec, field)
        if not value or value.startswith("builtin:"):
            continue
        if is_shipped(value):
            raise SpecError(
                [
                    f"{field}: {GAME_DIR} is where the trainer mounts the files it ships; give "
                    "the path of your file on this machine"
                ]
            )
        path = Path(value).expanduser()
        problem = path_problem(path, *FILE_KINDS[field])
        if problem:
            raise SpecError([f"{field}: {problem}"])
        if path.is_file():
            size = path.stat().st_size
            if size > MAX_BYTES:
                raise SpecError(
                    [
                        f"{field}: {path} is {size:,} bytes, more than a ConfigMap holds "
                        f"({MAX_BYTES:,}); put it on a volume (kubernetes.volumes and "
                        "volume_mounts, e.g. a PersistentVolumeClaim) or in a derived image, "
                        "and give its path in the pod"
                    ]
                )
            data = read_input_file(path, field, SpecError)
            problem = rom_problem(data) if field == "game.rom" else None
            if problem:  # the pod would refuse it: say so before any Job is sent
                raise SpecError([f"{field}: {path} {problem}"])
            found.append(GameFile(field, path, data))
        elif not PurePosixPath(value).is_absolute():
            raise SpecError(
                [
                    f"{field}: {value} is not a file here; give the path of a local file (it "
                    "is shipped to the pod), or an absolute path where the pod finds it (a "
                    "volume of kubernetes.volumes, or a derived image)"
                ]
            )
    return found


def is_shipped(path: str | None) -> bool:
    return bool(path) and str(path).startswith(f"{GAME_DIR}/")


def configmap_name(job: str, field: str) -> str:
    return f"{job}-{FIELDS[field]}"


def shipped_fields(point: JobSpec) -> list[str]:
    """The fields of a pod's spec that point at shipped files (mounted from `<job>-rom`...)."""
    return [field for field in FIELDS if is_shipped(_value(point, field))]
