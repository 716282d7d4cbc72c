"""`generic`: any Game Boy ROM, rewarded for exploration.

Without knowing a game's RAM, the one signal every game has is its screen. The reward is +1 the
first time in an episode that a background tile layout appears (sprites left out, so moving
characters alone are not novelty) — count-based exploration in its simplest, exact-match form
(cf. Bellemare et al. 2016, "Unifying Count-Based Exploration"). Score counters and animated
tiles also count as new screens: use a game's own adapter when one exists. Episodes never end on
their own (`env.episode_length` truncates them). For games whose play starts behind menus, give a
save state (`game.state`) taken at the start of play.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from trainer.games.base import GameAdapter, check_game_boy_rom
from trainer.games.screen import background_tiles

#: Frames ticked after power-on: PyBoy's boot ROM takes about 65 frames on a small ROM.
BOOT_FRAMES = 240


@dataclass(frozen=True)
class ScreenState:
    screen: bytes  # the visible background tile ids, as bytes (hashable)
    new: bool  # first time this episode


class GenericAdapter(GameAdapter):
    name: ClassVar[str] = "generic"
    reward_weights: ClassVar[dict[str, float]] = {
        "new_screen": 1.0,  # a background layout not seen before in this episode
        "step": 0.0,  # per env step (set negative to hurry the agent)
    }

    def __init__(self, reward_overrides: Any = None):
        super().__init__(reward_overrides)
        self._seen: set[bytes] = set()

    def check_rom(self, rom: bytes, path: Path) -> None:
        check_game_boy_rom(rom, path)

    def boot(self, pyboy: Any) -> None:
        pyboy.tick(BOOT_FRAMES, False)

    def reset(self) -> None:
        self._seen.clear()

    def read(self, pyboy: Any) -> ScreenState:
        screen = np.ascontiguousarray(background_tiles(pyboy)).tobytes()
        new = screen not in self._seen
        self._seen.add(screen)
        return ScreenState(screen, new)

    def reward_terms(self, before: ScreenState, after: ScreenState) -> dict[str, float]:
        return {"new_screen": float(after.new), "step": 1.0}

    def terminated(self, state: ScreenState) -> bool:
        return False

    def episode_stats(self, state: ScreenState) -> dict[str, float]:
        return {"screens_seen": float(len(self._seen))}
