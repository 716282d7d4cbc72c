"""Checkpoints of one job on local disk (a PVC in a pod): atomic, fsynced, pruned, and read back
with the newest readable one winning.

Written atomically (`path.tmp`, fsync, `os.replace`; PufferLib does the same); a damaged
`latest.pt` falls back to the newest readable step file.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

LATEST = "latest.pt"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


class CheckpointStore:
    """Checkpoints of one job under `root/checkpoints/`: `step_<n>.pt` (newest `keep`) + `latest.pt`."""

    def __init__(self, root: str | os.PathLike[str], keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep: must be ≥ 1 (got {keep})")
        self.root = Path(root)
        self.dir = self.root / "checkpoints"
        self.keep = keep

    @property
    def latest_path(self) -> Path:
        return self.dir / LATEST

    def step_path(self, step: int) -> Path:
        return self.dir / f"step_{step}.pt"

    def steps(self) -> list[int]:
        """Steps with a checkpoint file on disk, oldest first."""
        if not self.dir.is_dir():
            return []
        found = (_STEP_FILE.match(p.name) for p in self.dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def save(self, state: Mapping[str, Any], step: int) -> Path:
        """Write `step_<step>.pt` and `latest.pt` atomically, prune old steps; returns the step file.

        `latest.pt` is replaced before the step file appears, so after a kill at any point
        `latest.pt` is never older than the newest step file.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.step_path(step)
        tmp = path.with_name(path.name + ".tmp")
        latest_tmp = self.latest_path.with_name(LATEST + ".tmp")
        with open(tmp, "wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        shutil.copyfile(tmp, latest_tmp)
        _fsync_file(latest_tmp)
        os.replace(latest_tmp, self.latest_path)
        os.replace(tmp, path)
        _fsync_dir(self.dir)
        self._prune()
        return path

    def _prune(self) -> None:
        for step in self.steps()[: -self.keep]:
            self.step_path(step).unlink(missing_ok=True)

    def load_latest(self) -> dict[str, Any] | None:
        """The newest readable checkpoint: `latest.pt`, else step files newest first; None if none."""
        candidates = [self.latest_path] + [self.step_path(s) for s in reversed(self.steps())]
        existing = [p for p in candidates if p.is_file()]
        for i, path in enumerate(existing):
            try:
                state = self.load(path)
            except Exception as exc:  # truncated copy, bad zip, foreign pickle: try the next one
                rest = (
                    "falling back to " + existing[i + 1].name
                    if i + 1 < len(existing)
                    else "no other checkpoint"
                )
                log.warning(
                    "checkpoint %s is unreadable (%s: %s); %s", path, type(exc).__name__, exc, rest
                )
                continue
            return state
        if existing:
            log.warning("no readable checkpoint in %s: starting from scratch", self.dir)
        return None

    @staticmethod
    def load(path: str | os.PathLike[str]) -> dict[str, Any]:
        """Load one checkpoint file with `weights_only=True` (tensors, containers, numbers, str)."""
        state = torch.load(path, weights_only=True, map_location="cpu")
        if not isinstance(state, dict):
            raise ValueError(f"expected a dict, found {type(state).__name__}")
        return state


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Persist renames in `path` (no-op where directories can't be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
