"""The Link's Awakening adapter, driven with RAM images (no Zelda ROM can ship with the project)."""

from __future__ import annotations

import pytest

from trainer.envs.env import make_env
from trainer.games import BUILTIN_ROMS, GameError, make_adapter
from trainer.games import zelda as z
from trainer.spec import validate_spec
from trainer.spec.rom_header import header_checksum


class FakeMemory:
    """`pyboy.memory` over a 64 KiB image: ints and slices, as PyBoy answers them."""

    def __init__(self):
        self.image = bytearray(0x10000)

    def __getitem__(self, key):
        return list(self.image[key]) if isinstance(key, slice) else self.image[key]

    def __setitem__(self, addr, value):
        self.image[addr] = value


class FakePyBoy:
    def __init__(self):
        self.memory = FakeMemory()


def playing(ram: dict[int, int] | None = None) -> FakePyBoy:
    pyboy = FakePyBoy()
    values = {z.GAMEPLAY_TYPE: z.GAMEPLAY_WORLD, z.HEALTH: 3 * 8, z.MAX_HEALTH: 3, **(ram or {})}
    for addr, value in values.items():
        pyboy.memory[addr] = value
    return pyboy


def test_read_decodes_bcd_rupees_hearts_and_visited_screens():
    pyboy = playing(
        {
            z.RUPEES_HIGH: 0x01,
            z.RUPEES_LOW: 0x23,
            z.OVERWORLD_ROOMS + 5: 0x80,
            z.OVERWORLD_ROOMS + 9: 0x90,
            z.OVERWORLD_ROOMS + 10: 0x10,
        }
    )
    state = make_adapter("zelda").read(pyboy)
    assert state.rupees == 123
    assert state.screens_visited == 2  # 0x10 alone is "changed", not "visited"
    assert (state.health, state.max_health, state.dead) == (24, 3, False)


@pytest.mark.parametrize(
    "change, term, amount",
    [
        ({z.OVERWORLD_ROOMS + 1: 0x80}, "screen", 1.0),
        ({z.RUPEES_LOW: 0x15}, "rupee", 15.0),
        ({z.MAX_HEALTH: 4}, "heart", 1.0),
        ({z.HEART_PIECES: 1}, "heart_piece", 1.0),
        ({z.SWORD_LEVEL: 1}, "item", 1.0),
        ({z.SECRET_SHELLS: 2}, "item", 2.0),
        ({z.HEALTH: 20}, "damage", 4.0),
        ({z.HEALTH: 0}, "death", 1.0),
    ],
)
def test_reward_terms(change, term, amount):
    adapter = make_adapter("zelda")
    pyboy = playing()
    before = adapter.read(pyboy)
    for addr, value in change.items():
        pyboy.memory[addr] = value
    terms = adapter.reward_terms(before, adapter.read(pyboy))
    assert terms[term] == amount
    assert all(
        v == 0
        for k, v in terms.items()
        if k not in (term, "step", "damage" if term == "death" else term)
    )


def test_death_ends_the_episode_only_in_play():
    adapter = make_adapter("zelda")
    assert adapter.terminated(adapter.read(playing({z.HEALTH: 0})))
    assert not adapter.terminated(
        adapter.read(playing({z.HEALTH: 0, z.GAMEPLAY_TYPE: 0x02}))
    )  # file select
    assert not adapter.terminated(
        adapter.read(playing({z.HEALTH: 0, z.MAX_HEALTH: 0}))
    )  # RAM not loaded


def test_weights_apply_and_spending_rupees_costs_nothing():
    adapter = make_adapter("zelda", {"rupee": 1.0, "step": -0.5})
    pyboy = playing({z.RUPEES_LOW: 0x50})
    before = adapter.read(pyboy)
    pyboy.memory[z.RUPEES_LOW] = 0x20
    assert adapter.reward(before, adapter.read(pyboy)) == -0.5


def _rom_titled(tmp_path, title: bytes):
    rom = bytearray(BUILTIN_ROMS["dungeon"].read_bytes())
    rom[0x134:0x144] = title.ljust(16, b"\x00")
    rom[0x14D] = header_checksum(bytes(rom))
    path = tmp_path / "rom.gb"
    path.write_bytes(bytes(rom))
    return path


def test_rom_check_and_missing_state_give_clear_errors(tmp_path):
    with pytest.raises(GameError, match="is not The Legend of Zelda"):
        make_env(
            validate_spec(
                {
                    "name": "z",
                    "game": {"rom": str(_rom_titled(tmp_path, b"TETRIS")), "adapter": "zelda"},
                }
            )
        )
    # A ROM titled ZELDA passes the check; without game.state the env says how to make one.
    with pytest.raises(GameError, match="game.state: the zelda adapter needs a PyBoy save state"):
        make_env(
            validate_spec(
                {
                    "name": "z",
                    "game": {"rom": str(_rom_titled(tmp_path, b"ZELDA")), "adapter": "zelda"},
                }
            )
        )
