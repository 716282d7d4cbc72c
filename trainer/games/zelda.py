"""`zelda`: The Legend of Zelda: Link's Awakening (Game Boy, and the DX colour version).

Users bring their own ROM (it is not redistributable) and a PyBoy save state taken in play:
the title screen and file select (which asks for a name) are not played by the trainer. To make
one: run `pyboy zelda.gb`, play to where training should start, and press `Z` (PyBoy's save-state
key; it writes `zelda.gb.state`); then `game.state: /path/to/zelda.gb.state`.

RAM addresses: the save-data block at DB00–DBFF and the overworld room flags at D800–D8FF, as
labelled in the LADX disassembly (github.com/zladx/LADX-Disassembly, src/constants/wram.asm:
wHealth DB5A, wMaxHealth DB5B, wRupeeCountHigh/Low DB5D/DB5E, wSwordLevel DB4E, wGameplayType
DB95, wOverworldRoomStatus D800) and, for the original Game Boy release, Data Crystal's RAM map
("D800–D8FF world map status, 80: visited"; "DB5A current health, 08h one heart").
This adapter was written without a Link's Awakening ROM at hand: its unit tests drive it with
RAM images, not the real game.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from trainer.games.base import GameAdapter, GameError, check_game_boy_rom, rom_title

TITLE_PREFIX = "ZELDA"

OVERWORLD_ROOMS = 0xD800  # 256 bytes, one per overworld screen
ROOM_VISITED = 0x80
SAVE_BLOCK = 0xDB00  # read as one slice up to GAMEPLAY_TYPE
SECRET_SHELLS = 0xDB0F
GOLDEN_LEAVES = 0xDB15
SWORD_LEVEL = 0xDB4E
HEALTH = 0xDB5A  # 0x08 per heart
MAX_HEALTH = 0xDB5B  # hearts
HEART_PIECES = 0xDB5C
RUPEES_HIGH = 0xDB5D  # BCD: hundreds
RUPEES_LOW = 0xDB5E  # BCD: tens and ones
GAMEPLAY_TYPE = 0xDB95
GAMEPLAY_WORLD = 0x0B


def bcd(byte: int) -> int:
    return (byte >> 4) * 10 + (byte & 0x0F)


@dataclass(frozen=True)
class ZeldaState:
    gameplay: int
    health: int  # eighths of a heart
    max_health: int  # hearts
    heart_pieces: int
    rupees: int
    sword: int
    shells: int
    leaves: int
    screens_visited: int  # overworld screens with the visited flag

    @property
    def dead(self) -> bool:
        return self.max_health > 0 and self.health == 0 and self.gameplay == GAMEPLAY_WORLD


class ZeldaAdapter(GameAdapter):
    name: ClassVar[str] = "zelda"
    reward_weights: ClassVar[dict[str, float]] = {
        "screen": 1.0,  # an overworld screen visited for the first time (saved flag)
        "rupee": 0.05,  # per rupee gained
        "heart": 5.0,  # per heart container gained
        "heart_piece": 2.0,  # per piece of heart
        "item": 3.0,  # sword level, secret seashell, golden leaf
        "damage": -0.1,  # per eighth of a heart lost
        "death": -5.0,  # health reached zero
        "step": 0.0,  # per env step
    }

    def check_rom(self, rom: bytes, path: Path) -> None:
        check_game_boy_rom(rom, path)
        title = rom_title(rom)
        if not title.startswith(TITLE_PREFIX):
            raise GameError(
                f"game.rom: {path} is not The Legend of Zelda: Link's Awakening (cartridge title "
                f"{title!r}, expected one starting with {TITLE_PREFIX!r}); use adapter 'generic' for other games"
            )

    requires_state: ClassVar[str | None] = (
        "game.state: the zelda adapter needs a PyBoy save state taken in play (the title screen "
        "and file select are not played): run `pyboy zelda.gb`, play to the start you want, press Z "
        "(PyBoy writes zelda.gb.state) and set game.state to that file"
    )

    def boot(self, pyboy: Any) -> None:
        raise GameError(self.requires_state)

    def read(self, pyboy: Any) -> ZeldaState:
        save = pyboy.memory[SAVE_BLOCK : GAMEPLAY_TYPE + 1]
        rooms = np.frombuffer(
            bytes(pyboy.memory[OVERWORLD_ROOMS : OVERWORLD_ROOMS + 256]), dtype=np.uint8
        )

        def at(addr: int) -> int:
            return save[addr - SAVE_BLOCK]

        return ZeldaState(
            gameplay=at(GAMEPLAY_TYPE),
            health=at(HEALTH),
            max_health=at(MAX_HEALTH),
            heart_pieces=at(HEART_PIECES),
            rupees=bcd(at(RUPEES_HIGH)) * 100 + bcd(at(RUPEES_LOW)),
            sword=at(SWORD_LEVEL),
            shells=at(SECRET_SHELLS),
            leaves=at(GOLDEN_LEAVES),
            screens_visited=int(np.count_nonzero(rooms & ROOM_VISITED)),
        )

    def reward_terms(self, before: ZeldaState, after: ZeldaState) -> dict[str, float]:
        def gain(field: str) -> float:
            return float(max(0, getattr(after, field) - getattr(before, field)))

        return {
            "screen": gain("screens_visited"),
            "rupee": gain("rupees"),
            "heart": gain("max_health"),
            # Four pieces make a container and the counter wraps to 0: count only increases.
            "heart_piece": gain("heart_pieces"),
            "item": gain("sword") + gain("shells") + gain("leaves"),
            "damage": float(max(0, before.health - after.health)),
            "death": float(after.dead and not before.dead),
            "step": 1.0,
        }

    def terminated(self, state: ZeldaState) -> bool:
        return state.dead

    def episode_stats(self, state: ZeldaState) -> dict[str, float]:
        return {
            "screens_visited": float(state.screens_visited),
            "rupees": float(state.rupees),
            "hearts": float(state.max_health),
            "health": state.health / 8,
            "sword": float(state.sword),
        }
