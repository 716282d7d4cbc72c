"""builtin:dungeon, the ROM itself: reproducible build, valid header, and the game under PyBoy.

A small reference model in Python (rules as in dungeon.c, maps parsed from rooms.h) predicts
the RAM contract and the whole 20x18 `game_area()` after every move; the scripted walk through
the dungeon must agree with it at every step, with the env's timing (2 frames pressed, 2 released).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import numpy as np
import pytest
from rom_checks import assert_rebuilds_identically, assert_valid_header

from trainer.envs.env import import_pyboy
from trainer.games import BUILTIN_ROMS
from trainer.games import dungeon as dg

ROM = BUILTIN_ROMS["dungeon"]
SRC = ROM.parent
BUTTON = {"U": "up", "D": "down", "L": "left", "R": "right"}
STEP = {"U": (0, -1), "D": (0, 1), "L": (-1, 0), "R": (1, 0)}

# The scripted walk: start (3,4) in room 0 → 1 → 3 → 2 (key) → 3 (locked door) → 4 (goal).
PATH = "".join(
    [
        "RR UUR URRRRDDRR RRRR DRRR",  # room 0: 4 coins, east door → room 1 (move 22)
        "DDDRRRRUUU DDDDLL RRRRR RRRRR DLLDDDDDRRRRD",  # room 1: 4 coins, south door → room 3
        "DLLLLDDDDLLLLDDDDLLLLLLL",  # room 3: west door → room 2
        "DDLL UUULUULLLLLLLLLLLLDDD DDDL",  # room 2: 2 coins, the key (move 114)
        "UUUURUURRRRRRRRRRRRDDDRRRR",  # room 2: east door → room 3
        "RRRRDDRRRRRRRUURRRRUUURRR R",  # room 3: bump the locked door (opens), step through → 4
        "DDDDDRR RRRRRRRRRRRR",  # room 4: a coin, the goal (move 185)
    ]
).replace(" ", "")
# move number (1-based) → RAM fields expected right after it (the model checks every step too)
CHECKPOINTS = {
    2: dict(room=0, x=5, y=4, coins=1),  # first coin
    22: dict(room=1, x=1, y=4, visited=0b00011, coins=4),  # first door
    61: dict(room=3, x=15, y=1, visited=0b01011, coins=8),
    85: dict(room=2, x=18, y=10, visited=0b01111),
    114: dict(room=2, x=2, y=13, keys=1, keys_total=1, coins=10),  # the key
    140: dict(room=3, x=1, y=10, keys=1),
    165: dict(room=3, x=18, y=7, keys=0, doors=1),  # bump: the locked door opens, hero stays
    166: dict(room=4, x=1, y=7, visited=0b11111),
    185: dict(room=4, x=15, y=12, coins=11, won=1, mode=dg.MODE_WON, moves=185),  # goal
}


# ---- reference model --------------------------------------------------------------------------
def parse_rooms() -> tuple[list[str], list[list[int | None]]]:
    text = (SRC / "rooms.h").read_text()
    maps = [
        "".join(re.findall(r'"([^"]*)"', m.group(1)))
        for m in re.finditer(r"static const char room\d+\[\] =((?:\s*\"[^\"]*\")+);", text)
    ]
    body = text[text.index("room_links[NUM_ROOMS][4]") :]
    links = [
        [None if v == "NO_ROOM" else int(v) for v in row]
        for row in re.findall(r"\{(\w+),\s*(\w+),\s*(\w+),\s*(\w+)\}", body)
    ]
    assert len(maps) == len(links) == dg.NUM_ROOMS
    assert all(len(m) == dg.ROOM_W * dg.ROOM_H for m in maps)
    return maps, links


MAPS, LINKS = parse_rooms()
ITEMS = "okL"


@dataclass
class Model:
    room: int = 0
    x: int = 0
    y: int = 0
    coins: int = 0
    keys: int = 0
    keys_total: int = 0
    visited: int = 1
    doors: int = 0
    won: int = 0
    mode: int = dg.MODE_PLAYING
    moves: int = 0
    taken: list[set[int]] = field(default_factory=lambda: [set() for _ in MAPS])

    def __post_init__(self):
        start = MAPS[0].index("@")
        self.y, self.x = divmod(start, dg.ROOM_W)

    def tile(self, room: int, index: int) -> int:
        ch = MAPS[room][index]
        taken = index in self.taken[room]
        return {
            "#": dg.TILE_WALL,
            "D": dg.TILE_DOOR,
            "G": dg.TILE_GOAL,
            "o": dg.TILE_FLOOR if taken else dg.TILE_COIN,
            "k": dg.TILE_FLOOR if taken else dg.TILE_KEY,
            "L": dg.TILE_DOOR if taken else dg.TILE_LOCKED,
        }.get(ch, dg.TILE_FLOOR)

    def move(self, key: str) -> None:
        if self.mode != dg.MODE_PLAYING:
            return
        self.moves += 1
        dx, dy = STEP[key]
        x, y = self.x + dx, self.y + dy
        index = y * dg.ROOM_W + x
        tile = self.tile(self.room, index)
        if tile == dg.TILE_WALL:
            return
        if tile == dg.TILE_LOCKED:
            if self.keys:
                self.keys -= 1
                self.doors += 1
                self.taken[self.room].add(index)
            return
        if tile == dg.TILE_DOOR:
            if y == 0:
                side, y = 0, dg.ROOM_H - 2
            elif x == dg.ROOM_W - 1:
                side, x = 1, 1
            elif y == dg.ROOM_H - 1:
                side, y = 2, 1
            else:
                side, x = 3, dg.ROOM_W - 2
            self.room = LINKS[self.room][side]
            self.visited |= 1 << self.room
        elif tile == dg.TILE_COIN:
            self.coins += 1
            self.taken[self.room].add(index)
        elif tile == dg.TILE_KEY:
            self.keys += 1
            self.keys_total += 1
            self.taken[self.room].add(index)
        elif tile == dg.TILE_GOAL:
            self.won, self.mode = 1, dg.MODE_WON
        self.x, self.y = x, y

    def ram(self) -> dict[str, int]:
        names = (
            "room",
            "x",
            "y",
            "coins",
            "keys",
            "keys_total",
            "visited",
            "doors",
            "won",
            "mode",
            "moves",
        )
        return {name: int(getattr(self, name)) for name in names}

    def screen(self) -> np.ndarray:
        area = np.zeros(dg.SCREEN_TILES[::-1], dtype=np.uint32)
        letter = dg.TILE_LETTER
        area[0, 1:4] = [
            letter["C"],
            dg.TILE_DIGIT0 + self.coins // 10,
            dg.TILE_DIGIT0 + self.coins % 10,
        ]
        area[0, 5:7] = [letter["K"], dg.TILE_DIGIT0 + self.keys]
        area[0, 8:10] = [letter["R"], dg.TILE_DIGIT0 + self.room]
        if self.won:
            area[0, 12:15] = [letter["W"], letter["I"], letter["N"]]
        area[1, :] = dg.TILE_HUDLINE
        room = [self.tile(self.room, i) for i in range(dg.ROOM_W * dg.ROOM_H)]
        area[dg.HUD_ROWS :, :] = np.array(room).reshape(dg.ROOM_H, dg.ROOM_W)
        area[self.y + dg.HUD_ROWS, self.x] = dg.TILE_HERO
        return area


# ---- emulator helpers ---------------------------------------------------------------------------
def ram(pyboy) -> dict[str, int]:
    s = dg.DungeonAdapter().read(pyboy)
    return {
        "room": s.room, "x": s.x, "y": s.y, "coins": s.coins, "keys": s.keys,
        "keys_total": s.keys_total, "visited": s.visited, "doors": s.doors,
        "won": int(s.won), "mode": s.mode, "moves": s.moves,
    }  # fmt: skip


def press(pyboy, key: str) -> None:
    """One env step with frame_skip 4: hold the button 2 frames, release it 2 frames."""
    pyboy.button_press(BUTTON[key])
    pyboy.tick(2, False)
    pyboy.button_release(BUTTON[key])
    pyboy.tick(2, False)


def new_booted():
    pyboy = import_pyboy()(str(ROM), window="null", sound_emulated=False)
    adapter = dg.DungeonAdapter()
    adapter.configure(pyboy)
    adapter.boot(pyboy)
    return pyboy


@pytest.fixture(scope="module")
def emulator():
    pyboy = new_booted()
    state = io.BytesIO()
    pyboy.save_state(state)
    yield pyboy, state
    pyboy.stop(save=False)


@pytest.fixture
def game(emulator):
    """The module's PyBoy, back at the first playable frame."""
    pyboy, state = emulator
    state.seek(0)
    pyboy.load_state(state)
    return pyboy


def play(pyboy, moves: str, model: Model | None = None, checkpoints=None) -> Model:
    """Play `moves`; after every one, RAM and game_area() must match the model."""
    model = model or Model()
    assert ram(pyboy) == model.ram()
    for number, key in enumerate(moves, start=model.moves + 1):
        model.move(key)
        press(pyboy, key)
        got = ram(pyboy)
        assert got == model.ram(), f"move {number} ({key}): RAM {got} != model {model.ram()}"
        area = pyboy.game_area()
        assert np.array_equal(area, model.screen()), f"move {number} ({key}): game_area\n{area}"
        for name, value in (checkpoints or {}).get(number, {}).items():
            assert got[name] == value, f"move {number}: {name} = {got[name]}, expected {value}"
    return model


# ---- build and header ---------------------------------------------------------------------------
def test_build_is_reproducible(tmp_path):
    assert_rebuilds_identically(ROM, tmp_path)


def test_header_is_valid():
    rom = ROM.read_bytes()
    assert_valid_header(rom, b"DUNGEON")
    dg.DungeonAdapter().check_rom(rom, ROM)


def test_rooms_are_consistent():
    """Closed borders; every border door has a neighbour with the matching door; 16 items max."""
    w, h = dg.ROOM_W, dg.ROOM_H
    everything = "".join(MAPS)
    assert everything.count("@") == MAPS[0].count("@") == 1 and everything.count("G") == 1
    for room, cells in enumerate(MAPS):
        assert sum(ch in ITEMS for ch in cells) <= 16, f"room {room}: ram_taken has 16 bits"
        for index, ch in enumerate(cells):
            y, x = divmod(index, w)
            if x not in (0, w - 1) and y not in (0, h - 1):
                continue
            assert ch in "#DL", f"room {room} ({x},{y}): border must be wall or door"
            if ch == "#":
                continue
            side, there, arrive = {
                y == 0: (0, (x, h - 1), (x, h - 2)),
                x == w - 1: (1, (0, y), (1, y)),
                y == h - 1: (2, (x, 0), (x, 1)),
                x == 0: (3, (w - 1, y), (w - 2, y)),
            }[True]
            other = LINKS[room][side]
            assert other is not None, f"room {room} ({x},{y}): door without a neighbour"
            assert LINKS[other][(side + 2) % 4] == room
            assert MAPS[other][there[1] * w + there[0]] in "DL"
            assert MAPS[other][arrive[1] * w + arrive[0]] == ".", f"room {other}: arrival {arrive}"


# ---- the game -----------------------------------------------------------------------------------
def test_boot_state(game):
    state = dg.DungeonAdapter().read(game)
    assert game.memory[dg.RAM_MAGIC0 : dg.RAM_MAGIC1 + 1] == [ord("D"), ord("G")]
    assert game.memory[dg.RAM_VERSION] == dg.RAM_CONTRACT_VERSION
    assert (state.mode, state.room, state.x, state.y, state.visited, state.moves) == (
        1,
        0,
        3,
        4,
        1,
        0,
    )
    assert game.memory[0xFF42] == game.memory[0xFF43] == 0  # SCY = SCX = 0: no scrolling
    assert np.array_equal(game.game_area(), Model().screen())


def test_scripted_walk_wins(game):
    model = play(game, PATH, checkpoints=CHECKPOINTS)
    assert model.won and model.moves == len(PATH) == 185
    assert dg.DungeonAdapter().terminated(dg.DungeonAdapter().read(game))
    press(game, "L")  # after the win, input is ignored
    assert ram(game) == model.ram()


def test_wall_bump_counts_but_does_not_move(game):
    play(game, "LL")  # to (1, 4), next to the west wall
    before = ram(game)
    press(game, "L")
    after = ram(game)
    assert (after["x"], after["y"]) == (before["x"], before["y"]) == (1, 4)
    assert after["moves"] == before["moves"] + 1 == 3


def test_locked_door_needs_a_key(game):
    to_room3 = PATH[:61]
    to_gate = "RRRDDDDDD" + "R"  # (15,1) → (18,7), then bump the locked door without a key
    model = play(game, to_room3 + to_gate)
    assert (model.room, model.x, model.y, model.doors) == (3, 18, 7, 0)
    assert game.game_area()[7 + dg.HUD_ROWS, 19] == dg.TILE_LOCKED


def test_collected_items_stay_collected(game):
    # coin at (5,4), through the east door into room 1 and straight back, walk over (5,4) again
    model = play(game, PATH[:22] + "L" + "UUU" + "L" * 13 + "DDD")
    assert (model.room, model.x, model.y, model.coins) == (0, 5, 4, 4)
    assert ram(game)["coins"] == 4


def test_holding_a_button_is_one_move(game):
    game.button_press("right")
    game.tick(30, False)
    game.button_release("right")
    game.tick(2, False)
    assert ram(game)["moves"] == 1 and ram(game)["x"] == 4
    for button in ("a", "b", "start", "select"):
        game.button_press(button)
        game.tick(2, False)
        game.button_release(button)
        game.tick(2, False)
    assert ram(game)["moves"] == 1


def test_hero_tile_once_at_hero_position(game):
    for moves in ("", "RRU", "DDDDLL"):
        for key in moves:
            press(game, key)
        state = dg.DungeonAdapter().read(game)
        area = game.game_area()
        assert area.shape == (18, 20)
        assert np.count_nonzero(area == dg.TILE_HERO) == 1
        assert area[state.y + dg.HUD_ROWS, state.x] == dg.TILE_HERO


def test_deterministic_from_power_on():
    moves = PATH[:70] + "UDLRRLDU" * 3
    runs = []
    for _ in range(2):
        pyboy = new_booted()
        for key in moves:
            press(pyboy, key)
        pyboy.tick(1, True)
        runs.append(
            (pyboy.memory[0xC000:0xE000], pyboy.game_area().copy(), pyboy.screen.ndarray.copy())
        )
        pyboy.stop(save=False)
    (ram_a, area_a, pixels_a), (ram_b, area_b, pixels_b) = runs
    assert ram_a == ram_b
    assert np.array_equal(area_a, area_b)
    assert np.array_equal(pixels_a, pixels_b)
