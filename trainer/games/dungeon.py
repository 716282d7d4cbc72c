"""Adapter for `builtin:dungeon`, our own small Game Boy game (source: roms/dungeon/).

The game keeps its state at fixed WRAM addresses (the RAM contract, `roms/dungeon/ram.h`); the
constants below mirror that header and a test keeps the two in sync. Everything on screen is a
background tile, so `pyboy.game_area()` (20x18, set up by `configure`) shows the same state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from trainer.games.base import GameAdapter, GameError, rom_title

# ---- ROM identity --------------------------------------------------------------------------
TITLE = "DUNGEON"
#: Written by crt0.s at SIGNATURE_ADDR (unused space below the cartridge header).
SIGNATURE = b"builtin:dungeon ram v1"
SIGNATURE_ADDR = 0x0068

# ---- RAM contract (roms/dungeon/ram.h) -----------------------------------------------------
RAM_MAGIC0 = 0xC000  # 'D'
RAM_MAGIC1 = 0xC001  # 'G'
RAM_MODE = 0xC002  # 0 booting, 1 playing, 2 won
RAM_ROOM = 0xC003
RAM_HERO_X = 0xC004  # 0..19
RAM_HERO_Y = 0xC005  # 0..15 (screen row y + 2)
RAM_COINS = 0xC006
RAM_KEYS = 0xC007  # held
RAM_VISITED = 0xC008  # bit r = room r visited
RAM_DOORS = 0xC009  # locked doors opened
RAM_WON = 0xC00A
RAM_MOVES_LO = 0xC00B  # 16-bit move attempts, little endian
RAM_MOVES_HI = 0xC00C
RAM_KEYS_TOTAL = 0xC00D  # keys picked up
RAM_VERSION = 0xC00E
RAM_PAD_PREV = 0xC00F  # internal
RAM_TAKEN = 0xC010  # 2 bytes per room: items consumed
RAM_CONTRACT_VERSION = 1
MAGIC = (ord("D"), ord("G"))
MODE_BOOTING, MODE_PLAYING, MODE_WON = 0, 1, 2

# ---- screen ---------------------------------------------------------------------------------
NUM_ROOMS = 5
ROOM_W, ROOM_H = 20, 16
HUD_ROWS = 2
SCREEN_TILES = (20, 18)  # game_area columns, rows
TILE_BLANK = 0
TILE_FLOOR = 1
TILE_WALL = 2
TILE_DOOR = 3
TILE_LOCKED = 4
TILE_COIN = 5
TILE_KEY = 6
TILE_GOAL = 7
TILE_HERO = 8
TILE_HUDLINE = 9
TILE_DIGIT0 = 10  # digits 0-9: 10..19
TILE_LETTER = {"C": 20, "K": 21, "R": 22, "W": 23, "I": 24, "N": 25}

#: Frames from power-on until the game says "playing" (about 82 on PyBoy 2.8 with its boot ROM).
BOOT_FRAME_LIMIT = 600


@dataclass(frozen=True, slots=True)
class DungeonState:
    """One read of the RAM contract."""

    mode: int
    room: int
    x: int
    y: int
    coins: int
    keys: int
    keys_total: int
    visited: int
    doors: int
    won: bool
    moves: int

    @property
    def rooms_visited(self) -> int:
        return self.visited.bit_count()


class DungeonAdapter(GameAdapter):
    name: ClassVar[str] = "dungeon"
    reward_weights: ClassVar[dict[str, float]] = {
        "coin": 1.0,  # per coin picked up
        "key": 2.0,  # per key picked up
        "door": 2.0,  # per locked door opened
        "room": 1.0,  # per room visited for the first time in the episode
        "win": 10.0,  # stepping on the goal
        "step": -0.01,  # per env step (reward_terms gives step: 1.0 on every call)
    }

    def check_rom(self, rom: bytes, path: Path) -> None:
        title = rom_title(rom) if len(rom) >= 0x150 else ""
        signature = rom[SIGNATURE_ADDR : SIGNATURE_ADDR + len(SIGNATURE)]
        if title != TITLE or signature != SIGNATURE:
            raise GameError(
                f"game.rom: {path} is not builtin:dungeon (adapter {self.name!r} expects the title "
                f"{TITLE!r} and the signature {SIGNATURE.decode()!r} at {SIGNATURE_ADDR:#06x}; "
                f"found title {title!r}); build it with scripts/build_rom.sh or use rom: builtin:dungeon"
            )

    def configure(self, pyboy: Any) -> None:
        # The visible 20x18 tiles of the BG map (SCX = SCY = 0, no sprites).
        pyboy.game_area_dimensions(0, 0, *SCREEN_TILES, False)

    def boot(self, pyboy: Any) -> None:
        for _ in range(BOOT_FRAME_LIMIT):
            pyboy.tick(1, False)
            if self._ready(pyboy):
                return
        head = pyboy.memory[RAM_MAGIC0 : RAM_MAGIC0 + 3]
        raise GameError(
            f"builtin:dungeon did not reach play mode within {BOOT_FRAME_LIMIT} frames (expected "
            f"'DG' and mode {MODE_PLAYING} at {RAM_MAGIC0:#06x}, found {bytes(head)!r}); is the ROM "
            "built from trainer/games/roms/dungeon?"
        )

    @staticmethod
    def _ready(pyboy: Any) -> bool:
        magic0, magic1, mode = pyboy.memory[RAM_MAGIC0 : RAM_MAGIC0 + 3]
        return (magic0, magic1) == MAGIC and mode == MODE_PLAYING

    def read(self, pyboy: Any) -> DungeonState:
        ram = pyboy.memory[RAM_MAGIC0 : RAM_KEYS_TOTAL + 1]  # one slice: 14 bytes

        def at(addr: int) -> int:
            return ram[addr - RAM_MAGIC0]

        return DungeonState(
            mode=at(RAM_MODE),
            room=at(RAM_ROOM),
            x=at(RAM_HERO_X),
            y=at(RAM_HERO_Y),
            coins=at(RAM_COINS),
            keys=at(RAM_KEYS),
            keys_total=at(RAM_KEYS_TOTAL),
            visited=at(RAM_VISITED),
            doors=at(RAM_DOORS),
            won=bool(at(RAM_WON)),
            moves=at(RAM_MOVES_LO) | at(RAM_MOVES_HI) << 8,
        )

    def reward_terms(self, before: DungeonState, after: DungeonState) -> dict[str, float]:
        return {
            "coin": float(max(0, after.coins - before.coins)),
            "key": float(max(0, after.keys_total - before.keys_total)),
            "door": float(max(0, after.doors - before.doors)),
            "room": float(max(0, after.rooms_visited - before.rooms_visited)),
            "win": float(after.won and not before.won),
            "step": 1.0,
        }

    def terminated(self, state: DungeonState) -> bool:
        return state.won

    def episode_stats(self, state: DungeonState) -> dict[str, float]:
        return {
            "coins": float(state.coins),
            "keys": float(state.keys_total),
            "rooms_visited": float(state.rooms_visited),
            "doors_opened": float(state.doors),
            "won": float(state.won),
            "moves": float(state.moves),
        }
