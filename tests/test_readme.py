"""The README's generated blocks and commands stay true."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_blocks_are_in_sync():
    proc = subprocess.run(
        [sys.executable, "scripts/update_readme.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    test_command = re.search(r"^make test\b", readme, re.M)
    assert test_command, "README shows `make test`"
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_make_target_in_readme_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z0-9-]+):", makefile, re.M))
    mentioned = set(re.findall(r"`make ([a-z0-9-]+)", (ROOT / "README.md").read_text()))
    assert mentioned <= targets, mentioned - targets
