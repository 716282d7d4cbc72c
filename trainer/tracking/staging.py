"""Files waiting in the tracking queue for upload, staged as hard links beside them: pruning
(old checkpoints, a new `latest.pt`) cannot take or change what waits to be sent, and a link
costs no copy. Folders left by an earlier process (a kill) are removed on the next staging."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

STAGING_PREFIX = ".upload-"


class Staging:
    """The staging folders of one tracker (`stage`, then `remove` once sent or given up)."""

    def __init__(self) -> None:
        self.folders: set[Path] = set()

    def stage(self, parent: Path, files: Mapping[str, Path]) -> Path | None:
        """Hard links (copies across file systems) of `files`, under their names in `files`, in
        a new folder in `parent`. None (and a warning) on failure."""
        for stale in parent.glob(STAGING_PREFIX + "*"):
            if stale not in self.folders:
                shutil.rmtree(stale, ignore_errors=True)
        try:
            staged = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent))
            self.folders.add(staged)
            for name, source in files.items():
                _link_or_copy(source, staged / name)
        except OSError as exc:
            log.warning("MLflow: cannot stage %s for upload (%s); not uploaded", parent, exc)
            return None
        return staged

    def remove(self, staged: Path) -> None:
        shutil.rmtree(staged, ignore_errors=True)
        self.folders.discard(staged)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        dst.hardlink_to(src)
    except OSError:
        shutil.copyfile(src, dst)
