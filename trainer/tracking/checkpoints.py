"""Checkpoints of one job on local disk (a PVC in a pod): atomic, fsynced, checksummed, pruned,
and read back with the newest intact one winning.

Written atomically (`path.tmp`, fsync, `os.replace`; PufferLib does the same). Each file starts
with `MAGIC` and the SHA-256 of the `torch.save` payload after it, so a truncated or corrupt
file is detected before unpickling (a bad disk, a copy cut short) and `load_latest` falls back
to the newest intact step file, saying so. A failed write (a full disk: ENOSPC) removes its
temporary files and raises `CheckpointWriteError`: the previous checkpoint is never touched
before the new one is complete. Files without `MAGIC` (older checkpoints) load as plain
`torch.save` files.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch

from trainer.errors import TrainerError

log = logging.getLogger(__name__)

LATEST = "latest.pt"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")
MAGIC = b"TRAINER-CHECKPOINT-SHA256\n"
_DIGEST_BYTES = 32


class CorruptCheckpoint(ValueError):
    """A checkpoint file whose checksum does not match its contents (truncated or damaged)."""


class CheckpointWriteError(TrainerError):
    """Writing a checkpoint failed (full disk, I/O error); the previous one is intact."""


class RunInUse(TrainerError):
    """Another live process trains this job in the same folder (it holds the folder's lock)."""


class CheckpointStore:
    """Checkpoints of one job under `root/checkpoints/`: `step_<n>.pt` (newest `keep`) + `latest.pt`."""

    def __init__(self, root: str | os.PathLike[str], keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep: must be ≥ 1 (got {keep})")
        self.root = Path(root)
        self.dir = self.root / "checkpoints"
        self.keep = keep
        self._lock_handle: IO[str] | None = None  # open while this process holds root/.lock
        self._created_root = False

    def lock(self, wait_s: float = 0.0, warn: Callable[[str], None] = log.warning) -> None:
        """Hold `root/.lock` until `unlock()`, waiting up to `wait_s` for another holder to end;
        then `RunInUse` naming the holder.

        Two trainers of one job (the same command run twice; a pod and its replacement, which a
        Job starts while the old pod still writes its last checkpoint) would interleave their
        checkpoints and their MLflow run. `flock` is released by the kernel when its holder
        dies, so a killed run leaves no stale lock (on NFS, after its lease); a filesystem
        without locks is said and not enforced."""
        self._created_root = not os.path.exists(self.root)  # False, not OSError, for a long name
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / ".lock", "a+")  # noqa: SIM115 - held until unlock()
        except OSError as exc:
            raise CheckpointWriteError(
                f"checkpoint.dir: cannot create {self.root}: {exc.strerror or exc}"
            ) from None
        deadline, said = time.monotonic() + wait_s, False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                if time.monotonic() >= deadline:
                    handle.close()
                    raise RunInUse(
                        f"checkpoint.dir: another trainer ({holder}) is training this job in "
                        f"{self.root}; two would interleave its checkpoints and its MLflow run: "
                        "wait for it to end or stop it (its checkpoint is kept), or give this "
                        "run another name"
                    ) from None
                if not said:
                    warn(f"⏳ another trainer ({holder}) holds {self.root}: waiting for it")
                    said = True
                time.sleep(0.5)
            except OSError as exc:  # ENOLCK / EOPNOTSUPP: no locks on this filesystem
                warn(
                    f"⚠️  {self.root}: cannot lock it ({exc.strerror}); a second run is not kept out"
                )
                handle.close()
                return
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._lock_handle = handle

    def unlock(self) -> None:
        """Release `lock()` (a process that ends releases it anyway). A folder the lock created
        and nothing else used (the run failed at start) is removed: nothing half-done stays."""
        handle, self._lock_handle = self._lock_handle, None
        if handle is None:
            return
        if self._created_root and [p.name for p in self.root.iterdir()] == [".lock"]:
            (self.root / ".lock").unlink()
            self.root.rmdir()
        handle.close()

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
        data = encode(state)
        try:
            for target in (tmp, latest_tmp):
                _write_synced(target, data)
        except OSError as exc:
            for target in (tmp, latest_tmp):
                target.unlink(missing_ok=True)
            previous = self.steps()
            kept = f"step {previous[-1]:,}" if previous else "none yet"
            full = " (the disk is full)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            raise CheckpointWriteError(
                f"checkpoint.dir: writing the checkpoint at step {step:,} to {self.dir} failed"
                f"{full}: {exc.strerror or exc}. The previous checkpoint ({kept}) is intact; "
                "free space or point checkpoint.dir elsewhere, then run the job again to resume"
            ) from None
        os.replace(latest_tmp, self.latest_path)
        os.replace(tmp, path)
        _fsync_dir(self.dir)
        self._prune()
        return path

    def _prune(self) -> None:
        for step in self.steps()[: -self.keep]:
            self.step_path(step).unlink(missing_ok=True)

    def load_latest(self, warn: Callable[[str], None] = log.warning) -> dict[str, Any] | None:
        """The newest intact checkpoint: `latest.pt`, else step files newest first; None if none.
        Each one skipped (truncated, corrupt, unreadable) is reported through `warn`."""
        candidates = [self.latest_path] + [self.step_path(s) for s in reversed(self.steps())]
        existing = [p for p in candidates if p.is_file()]
        for i, path in enumerate(existing):
            try:
                state = self.load(path)
            except Exception as exc:  # truncated copy, bad zip, foreign pickle: try the next one
                rest = (
                    "using the previous one, " + existing[i + 1].name
                    if i + 1 < len(existing)
                    else "no other checkpoint"
                )
                warn(f"⚠️  checkpoint {path} is unusable ({type(exc).__name__}: {exc}); {rest}")
                continue
            return state
        if existing:
            warn(f"⚠️  no intact checkpoint in {self.dir}: starting from scratch")
        return None

    @staticmethod
    def load(path: str | os.PathLike[str]) -> dict[str, Any]:
        """Load one checkpoint file: checksum checked, then `torch.load(weights_only=True)`
        (tensors, containers, numbers, str)."""
        return CheckpointStore.from_bytes(Path(path).read_bytes())

    @staticmethod
    def from_bytes(data: bytes) -> dict[str, Any]:
        """A checkpoint file's contents, decoded as `load` does."""
        state = decode(data)
        if not isinstance(state, dict):
            raise CorruptCheckpoint(f"not a checkpoint: a {type(state).__name__}, not a dict")
        return state


def encode(state: Mapping[str, Any]) -> bytes:
    """`MAGIC`, the SHA-256 of the payload, the payload (`torch.save` of `state`)."""
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    payload = buffer.getvalue()
    return MAGIC + hashlib.sha256(payload).digest() + payload


def decode(data: bytes) -> Any:
    """The state in `encode`'s bytes (`CorruptCheckpoint` if the checksum fails), or in a plain
    `torch.save` file (written before checksums)."""
    header = len(MAGIC) + _DIGEST_BYTES
    if len(data) < header and (MAGIC.startswith(data) or data.startswith(MAGIC)):
        raise CorruptCheckpoint(f"truncated: {len(data):,} bytes, not even its header")
    if data.startswith(MAGIC):
        digest = data[len(MAGIC) : len(MAGIC) + _DIGEST_BYTES]
        payload = data[len(MAGIC) + _DIGEST_BYTES :]
        if hashlib.sha256(payload).digest() != digest:
            raise CorruptCheckpoint(
                f"checksum mismatch: {len(data):,} bytes, truncated or corrupted"
            )
        data = payload
    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # not a zip, a foreign pickle, …: PyTorch's text runs to a page
        raise CorruptCheckpoint(f"not a PyTorch checkpoint ({type(exc).__name__})") from None


def _write_synced(path: Path, data: bytes) -> None:
    """`data` into `path`, flushed and fsynced (the tests inject a full disk here)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
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
