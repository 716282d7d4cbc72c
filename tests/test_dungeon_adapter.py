"""DungeonAdapter: reward terms, weights, ROM check, boot, and its constants vs. the C source."""

from __future__ import annotations

import dataclasses
import re

import pytest

from trainer.games import BUILTIN_ROMS, make_adapter
from trainer.games import dungeon as dg
from trainer.games.base import GameError

ROM = BUILTIN_ROMS["dungeon"]
SRC = ROM.parent

START = dg.DungeonState(
    mode=1,
    room=0,
    x=3,
    y=4,
    coins=0,
    keys=0,
    keys_total=0,
    visited=0b1,
    doors=0,
    won=False,
    moves=0,
)


def after(**changes) -> dg.DungeonState:
    return dataclasses.replace(START, **{"moves": START.moves + 1, **changes})


NOTHING = {"coin": 0.0, "key": 0.0, "door": 0.0, "room": 0.0, "win": 0.0, "step": 1.0}


@pytest.mark.parametrize(
    "name, before, changes, expected",
    [
        ("plain move", START, {"x": 4}, {}),
        ("wall bump", START, {}, {}),
        ("coin", START, {"coins": 1, "x": 4}, {"coin": 1.0}),
        ("key picked up", START, {"keys": 1, "keys_total": 1}, {"key": 1.0}),
        ("key used on a door", dataclasses.replace(START, keys=1, keys_total=1),
         {"keys": 0, "keys_total": 1, "doors": 1}, {"door": 1.0}),
        ("new room", START, {"room": 1, "visited": 0b11}, {"room": 1.0}),
        ("room seen before", dataclasses.replace(START, room=1, visited=0b11),
         {"room": 0, "visited": 0b11}, {}),
        ("win", START, {"won": True, "mode": dg.MODE_WON}, {"win": 1.0}),
        ("still won", dataclasses.replace(START, won=True), {"won": True}, {}),
    ],
)  # fmt: skip
def test_reward_terms(name, before, changes, expected):
    terms = dg.DungeonAdapter().reward_terms(before, dataclasses.replace(before, **changes))
    assert terms == {**NOTHING, **expected}, name


def test_default_weights_and_reward():
    adapter = dg.DungeonAdapter()
    assert adapter.weights == {
        "coin": 1.0, "key": 2.0, "door": 2.0, "room": 1.0, "win": 10.0, "step": -0.01,
    }  # fmt: skip
    assert adapter.reward(START, after(coins=1)) == pytest.approx(1.0 - 0.01)
    assert adapter.reward(START, after()) == pytest.approx(-0.01)


def test_weight_overrides():
    adapter = make_adapter("dungeon", {"coin": 5.0, "step": 0.0})
    assert isinstance(adapter, dg.DungeonAdapter)
    assert adapter.weights["coin"] == 5.0 and adapter.weights["key"] == 2.0
    assert adapter.reward(START, after(coins=2, room=1, visited=0b11)) == pytest.approx(11.0)


def test_unknown_reward_term():
    with pytest.raises(GameError, match=r"unknown term\(s\) coins.*known terms: coin"):
        dg.DungeonAdapter({"coins": 1.0})


def test_terminated_and_stats():
    adapter = dg.DungeonAdapter()
    assert not adapter.terminated(START)
    end = after(won=True, coins=7, keys_total=1, visited=0b10111, doors=1, moves=300)
    assert adapter.terminated(end)
    assert adapter.episode_stats(end) == {
        "coins": 7.0, "keys": 1.0, "rooms_visited": 4.0, "doors_opened": 1.0, "won": 1.0,
        "moves": 300.0,
    }  # fmt: skip


def test_check_rom_accepts_ours():
    dg.DungeonAdapter().check_rom(ROM.read_bytes(), ROM)


@pytest.mark.parametrize(
    "name, patch",
    [
        ("other title", lambda rom: rom[:0x134] + b"TETRIS\0\0\0\0\0\0\0\0\0\0" + rom[0x144:]),
        (
            "no signature",
            lambda rom: rom[: dg.SIGNATURE_ADDR] + b"\xff" * 22 + rom[dg.SIGNATURE_ADDR + 22 :],
        ),
        ("too short", lambda rom: rom[:0x100]),
        ("empty", lambda rom: b""),
    ],
)
def test_check_rom_rejects(tmp_path, name, patch):
    path = tmp_path / "other.gb"
    with pytest.raises(
        GameError, match=rf"{re.escape(str(path))} is not builtin:dungeon.*'DUNGEON'"
    ):
        dg.DungeonAdapter().check_rom(patch(ROM.read_bytes()), path)


class NeverReady:
    """A PyBoy stand-in whose game never writes the RAM marker."""

    def __init__(self):
        self.memory = [0] * 0x10000
        self.frames = 0

    def tick(self, count=1, render=True):
        self.frames += count
        return True


def test_boot_gives_up_with_a_clear_error():
    fake = NeverReady()
    with pytest.raises(GameError, match=r"did not reach play mode within 600 frames"):
        dg.DungeonAdapter().boot(fake)
    assert fake.frames == dg.BOOT_FRAME_LIMIT


def test_boot_and_read_under_pyboy():
    from trainer.envs.env import import_pyboy

    pyboy = import_pyboy()(str(ROM), window="null", sound_emulated=False)
    try:
        adapter = dg.DungeonAdapter()
        adapter.configure(pyboy)
        adapter.boot(pyboy)
        first = adapter.read(pyboy)
        assert first == START
        for _ in range(2):  # two steps right: onto the coin at (5, 4)
            pyboy.button_press("right")
            pyboy.tick(2, False)
            pyboy.button_release("right")
            pyboy.tick(2, False)
        state = adapter.read(pyboy)
        assert (state.x, state.coins, state.moves) == (5, 1, 2)
        assert adapter.reward_terms(first, state)["coin"] == 1.0
        assert pyboy.game_area().shape == (18, 20)
    finally:
        pyboy.stop(save=False)


# ---- the Python constants mirror the C source ---------------------------------------------------
def test_ram_addresses_match_ram_h():
    header = (SRC / "ram.h").read_text()
    found = {
        name: int(addr, 16)
        for addr, name in re.findall(
            r"__at\((0x[0-9A-Fa-f]+)\) volatile \w+ ram_(\w+?)(?:\[\d+\])?;", header
        )
    }
    expected = {
        "magic0": dg.RAM_MAGIC0, "magic1": dg.RAM_MAGIC1, "mode": dg.RAM_MODE, "room": dg.RAM_ROOM,
        "hero_x": dg.RAM_HERO_X, "hero_y": dg.RAM_HERO_Y, "coins": dg.RAM_COINS, "keys": dg.RAM_KEYS,
        "visited": dg.RAM_VISITED, "doors": dg.RAM_DOORS, "won": dg.RAM_WON, "moves": dg.RAM_MOVES_LO,
        "keys_total": dg.RAM_KEYS_TOTAL, "version": dg.RAM_VERSION, "pad_prev": dg.RAM_PAD_PREV,
        "taken": dg.RAM_TAKEN,
    }  # fmt: skip
    assert found == expected
    assert f"#define RAM_CONTRACT_VERSION {dg.RAM_CONTRACT_VERSION}" in header


def test_tile_ids_match_dungeon_c():
    source = (SRC / "dungeon.c").read_text()
    enum = {name: int(value) for name, value in re.findall(r"\bT_(\w+) = (\d+),", source)}
    expected = {
        "BLANK": dg.TILE_BLANK, "FLOOR": dg.TILE_FLOOR, "WALL": dg.TILE_WALL, "DOOR": dg.TILE_DOOR,
        "LOCKED": dg.TILE_LOCKED, "COIN": dg.TILE_COIN, "KEY": dg.TILE_KEY, "GOAL": dg.TILE_GOAL,
        "HERO": dg.TILE_HERO, "HUDLINE": dg.TILE_HUDLINE, "DIGIT0": dg.TILE_DIGIT0,
        **{f"LETTER_{letter}": tile for letter, tile in dg.TILE_LETTER.items()},
    }  # fmt: skip
    assert enum == expected
    assert re.search(rf"#define NUM_ROOMS {dg.NUM_ROOMS}\b", (SRC / "rooms.h").read_text())
