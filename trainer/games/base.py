"""The game adapter contract: what the trainer needs to know about one game.

An adapter checks the ROM, gets from power-on to a playable start, and turns RAM into reward
terms, episode ends and episode stats. It never touches PyTorch or Kubernetes.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from trainer.errors import InvalidInput


class GameError(InvalidInput):
    """A ROM, save state or reward setting that does not fit the adapter (user-facing message)."""


class GameAdapter(ABC):
    """One game. Subclasses set `name`, `reward_weights` and implement the abstract methods.

    Lifecycle inside `GameBoyEnv`: `check_rom` once; `boot` once on a fresh PyBoy (power-on →
    playable start, after which the env saves a state); then per step `read` the RAM into a
    snapshot, and `reward_terms` / `terminated` / `episode_stats` compare snapshots.
    """

    name: ClassVar[str]
    #: Default weight of every reward term; `game.reward` in the spec overrides by name.
    reward_weights: ClassVar[dict[str, float]]
    #: Set (to the message telling how to make one) when play cannot start without `game.state`.
    requires_state: ClassVar[str | None] = None

    def __init__(self, reward_overrides: Mapping[str, float] | None = None):
        overrides = dict(reward_overrides or {})
        unknown = sorted(set(overrides) - set(self.reward_weights))
        if unknown:
            raise GameError(
                f"game.reward: unknown term(s) {', '.join(unknown)} for adapter {self.name!r}; "
                f"known terms: {', '.join(self.reward_weights)}"
            )
        self.weights = {**self.reward_weights, **overrides}

    # ---- identity -------------------------------------------------------------------------
    @abstractmethod
    def check_rom(self, rom: bytes, path: Path) -> None:
        """Raise `GameError` naming `path` when the ROM is not the game this adapter reads."""

    # ---- start ----------------------------------------------------------------------------
    @abstractmethod
    def boot(self, pyboy: Any) -> None:
        """From power-on to the first playable frame (the env saves a state right after)."""

    def configure(self, pyboy: Any) -> None:  # noqa: B027 - optional hook
        """Optional: set up PyBoy for this game (e.g. `game_area_mapping`), called before boot."""

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Optional: forget per-episode memory (called at every episode start)."""

    # ---- per step -------------------------------------------------------------------------
    @abstractmethod
    def read(self, pyboy: Any) -> Any:
        """Snapshot of the RAM values the adapter needs (cheap: a handful of bytes)."""

    @abstractmethod
    def reward_terms(self, before: Any, after: Any) -> dict[str, float]:
        """Unweighted amount of each reward term between two snapshots (keys ⊆ reward_weights)."""

    @abstractmethod
    def terminated(self, state: Any) -> bool:
        """True when the episode really ended (win, death): no bootstrapping past it."""

    def truncated(self, state: Any) -> bool:
        """True when the game cuts the episode short without ending it (bootstrapped past,
        like `env.episode_length`)."""
        return False

    def end_reason(self, state: Any) -> str:
        """What ends the episode in `state`, for error messages."""
        return "terminated" if self.terminated(state) else "truncated"

    def episode_stats(self, state: Any) -> dict[str, float]:
        """Numbers worth logging at the end of an episode (e.g. rooms visited)."""
        return {}

    # ---- helpers --------------------------------------------------------------------------
    def reward_shares(self, before: Any, after: Any) -> dict[str, float]:
        """Each term's weighted share of the step's reward."""
        terms = self.reward_terms(before, after)
        return {name: self.weights[name] * amount for name, amount in terms.items()}

    def reward(self, before: Any, after: Any) -> float:
        return float(sum(self.reward_shares(before, after).values()))


def rom_sha1(rom: bytes) -> str:
    return hashlib.sha1(rom).hexdigest()


def header_checksum(rom: bytes) -> int:
    """The cartridge header checksum over 0x134–0x14C (Pan Docs, The Cartridge Header, 014D)."""
    value = 0
    for byte in rom[0x134:0x14D]:
        value = (value - byte - 1) & 0xFF
    return value


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
#: RAM size codes (header byte 0x149) Pan Docs defines, and PyBoy's EXTERNAL_RAM_TABLE reads.
RAM_SIZE_CODES = range(0x00, 0x06)


def check_game_boy_rom(rom: bytes, path: Path, key: str = "game.rom") -> None:
    """GameError naming `key` and `path` unless it is a Game Boy ROM with a valid header, of a
    cartridge PyBoy can run (checked here, so the refusal is one line and not a crash of every
    emulator process)."""
    if len(rom) < 0x8000 or header_checksum(rom) != rom[0x14D]:
        raise GameError(
            f"{key}: {path} is not a Game Boy ROM (too small or bad cartridge header checksum); "
            "give the path of a .gb or .gbc file"
        )
    kind = rom[0x147]
    if kind not in PYBOY_CARTRIDGE_TYPES:
        raise GameError(
            f"{key}: {path} needs a cartridge PyBoy does not emulate (header type 0x{kind:02X}: "
            f"{OTHER_MAPPERS.get(kind, 'unknown')}); PyBoy runs ROM-only, MBC1, MBC2, MBC3 and "
            "MBC5 games"
        )
    if rom[0x149] not in RAM_SIZE_CODES:
        raise GameError(
            f"{key}: {path} has an invalid cartridge header: RAM size code 0x{rom[0x149]:02X} at "
            "0x149 (valid: 0x00-0x05); is the file a Game Boy ROM?"
        )


def rom_title(rom: bytes) -> str:
    """The cartridge header title (0x134–0x143), as ASCII without padding."""
    return rom[0x134:0x144].split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()
