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
from trainer.spec.rom_header import rom_problem


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


def check_game_boy_rom(rom: bytes, path: Path, key: str = "game.rom") -> None:
    """GameError naming `key` and `path` unless it is a Game Boy ROM with a valid header, of a
    cartridge PyBoy can run (checked here, so the refusal is one line and not a crash of every
    emulator process)."""
    problem = rom_problem(rom)
    if problem:
        raise GameError(f"{key}: {path} {problem}")


def rom_title(rom: bytes) -> str:
    """The cartridge header title (0x134–0x143), as ASCII without padding."""
    return rom[0x134:0x144].split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()
