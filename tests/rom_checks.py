"""Checks every built-in ROM passes: it rebuilds byte for byte from its C source with SDCC, and
its cartridge header is one a Game Boy boots (Pan Docs, "The Cartridge Header")."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SDCC_BIN = Path(__file__).resolve().parents[1] / ".tools" / "sdcc" / "usr" / "bin"
#: The Nintendo logo the boot ROM compares (0x104–0x133).
LOGO = bytes.fromhex(
    "CEED6666CC0D000B03730083000C000D0008111F8889000E"
    "DCCC6EE6DDDDD999BBBB67636E0EECCCDDDC999FBBB9333E"
)


def assert_rebuilds_identically(rom: Path, tmp_path: Path) -> None:
    """`build.sh` beside the ROM rebuilds it, byte for byte."""
    # `make tools` unpacks Debian's sdcc into .tools/sdcc when none is installed system-wide.
    path = os.pathsep.join([str(SDCC_BIN), os.environ.get("PATH", "")])
    if shutil.which("sdcc", path=path) is None:
        pytest.fail(
            "sdcc not installed and not in .tools/sdcc: run `make tools` (or apt-get install sdcc)"
        )
    out = tmp_path / rom.name
    subprocess.run(
        [str(rom.parent / "build.sh"), str(out)],
        check=True,
        capture_output=True,
        timeout=120,
        env={**os.environ, "PATH": path},
    )
    assert out.read_bytes() == rom.read_bytes(), (
        f"rebuilt ROM differs from the committed {rom.name}"
    )


def assert_valid_header(rom: bytes, title: bytes) -> None:
    """32 KiB, no banking, entry `nop; jp 0x0150`, the logo, the title, both checksums."""
    assert len(rom) == 32 * 1024 and rom[0x148] == 0x00  # 32 KiB, no banking
    assert rom[0x100:0x104] == bytes([0x00, 0xC3, 0x50, 0x01])  # nop; jp 0x0150
    assert rom[0x104:0x134] == LOGO
    assert rom[0x134:0x144].rstrip(b"\x00") == title
    assert rom[0x147] == 0x00  # ROM only
    header = 0
    for byte in rom[0x134:0x14D]:
        header = (header - byte - 1) & 0xFF
    assert rom[0x14D] == header
    total = (sum(rom) - rom[0x14E] - rom[0x14F]) & 0xFFFF
    assert int.from_bytes(rom[0x14E:0x150], "big") == total
