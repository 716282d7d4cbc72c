"""A Game Boy ROM's cartridge header, checked without an emulator (Pan Docs, The Cartridge
Header): by the game adapters before PyBoy starts, and by `trainer render`/`launch` before they
ship a ROM to a pod, so a file PyBoy cannot run is refused before any Job is sent."""

from __future__ import annotations

#: Cartridge types (header byte 0x147) PyBoy emulates: the keys of its CARTRIDGE_TABLE
#: (pyboy/core/cartridge/cartridge.py): ROM only, MBC1, MBC2, MBC3, MBC5 and their variants.
PYBOY_CARTRIDGE_TYPES = frozenset(
    {0x00, 0x01, 0x02, 0x03, 0x05, 0x06, 0x08, 0x09, 0x0F, 0x10, 0x11, 0x12, 0x13}
    | {0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E}
)
#: Mappers PyBoy does not emulate, by name (Pan Docs, The Cartridge Header, 0147).
OTHER_MAPPERS = {
    0x0B: "MMM01", 0x0C: "MMM01", 0x0D: "MMM01", 0x20: "MBC6", 0x22: "MBC7",
    0xFC: "Pocket Camera", 0xFD: "Bandai TAMA5", 0xFE: "HuC3", 0xFF: "HuC1",
}  # fmt: skip
#: The game files a spec names (`game.rom`, `game.state`): what messages call each, and the
#: suffixes such files have (listed when a directory is given instead: `errors.path_problem`).
ROM_FILE = ("ROM", (".gb", ".gbc"))
STATE_FILE = ("save state", (".state",))
#: A ROM bank: PyBoy splits the file into these and refuses a remainder (cartridge/rom.py).
ROM_BANK = 16 * 1024
#: RAM size codes (header byte 0x149) Pan Docs defines, and PyBoy's EXTERNAL_RAM_TABLE reads.
RAM_SIZE_CODES = range(0x00, 0x06)


def header_checksum(rom: bytes) -> int:
    """The cartridge header checksum over 0x134–0x14C (Pan Docs, The Cartridge Header, 014D)."""
    value = 0
    for byte in rom[0x134:0x14D]:
        value = (value - byte - 1) & 0xFF
    return value


def rom_problem(rom: bytes) -> str | None:
    """Why PyBoy cannot run `rom` (a phrase to follow the file's path), or None."""
    if len(rom) < ROM_BANK * 2:
        return (
            f"is not a Game Boy ROM ({len(rom):,} bytes; a ROM is at least 32 KiB); give the path "
            "of a .gb or .gbc file"
        )
    if header_checksum(rom) != rom[0x14D]:
        return (
            "is not a Game Boy ROM (bad cartridge header checksum at 0x14D); give the path of a "
            ".gb or .gbc file"
        )
    if len(rom) % ROM_BANK:
        return (
            f"is {len(rom):,} bytes, not a whole number of 16 KiB ROM banks: a truncated or "
            "padded dump, which PyBoy refuses; dump the cartridge again"
        )
    kind = rom[0x147]
    if kind not in PYBOY_CARTRIDGE_TYPES:
        return (
            f"needs a cartridge PyBoy does not emulate (header type 0x{kind:02X}: "
            f"{OTHER_MAPPERS.get(kind, 'unknown')}); PyBoy runs ROM-only, MBC1, MBC2, MBC3 and "
            "MBC5 games"
        )
    if rom[0x149] not in RAM_SIZE_CODES:
        return (
            f"has an invalid cartridge header: RAM size code 0x{rom[0x149]:02X} at 0x149 (valid: "
            "0x00-0x05); is the file a Game Boy ROM?"
        )
    return None
