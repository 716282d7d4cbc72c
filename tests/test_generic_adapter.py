"""`generic`: any Game Boy ROM, rewarded for background layouts not seen before in the episode."""

from __future__ import annotations

import io

import pytest

from trainer.envs.env import make_env
from trainer.games import BUILTIN_ROMS, GameError
from trainer.games.base import check_game_boy_rom
from trainer.rl.console import Console
from trainer.rl.train import train
from trainer.spec import validate_spec
from trainer.spec.rom_header import OTHER_MAPPERS, PYBOY_CARTRIDGE_TYPES, header_checksum

RIGHT, LEFT, NOOP = 4, 3, 0


def generic_env(**game):
    return make_env(
        validate_spec(
            {"name": "generic", "game": {"adapter": "generic", **game}, "env": {"num_envs": 1}}
        )
    )


def test_new_screens_pay_once_per_episode():
    env = generic_env()
    env.reset()
    assert env.step(NOOP)[1] == 0.0, "the start screen is not new"
    assert env.step(RIGHT)[1] == 1.0, "the hero moved: a new layout"
    assert env.step(LEFT)[1] == 0.0, "back to the start layout: seen"
    assert env.step(RIGHT)[1] == 0.0
    env.reset()
    env.step(NOOP)
    assert env.step(RIGHT)[1] == 1.0, "a new episode forgets what it saw"
    env.close()


def test_step_weight_and_episode_stats():
    env = make_env(
        validate_spec(
            {
                "name": "generic",
                "game": {"adapter": "generic", "reward": {"step": -0.5}},
                "env": {"num_envs": 1, "episode_length": 3},
            }
        )
    )
    env.reset()
    rewards = [env.step(RIGHT)[1] for _ in range(2)]
    *_, truncated, info = env.step(NOOP)
    assert rewards == [0.5, 0.5] and truncated
    assert info["screens_seen"] == 3.0
    env.close()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda rom: rom[:0x4000], "16,384 bytes; a ROM is at least 32 KiB"),
        (lambda rom: rom + bytes(1000), "33,768 bytes, not a whole number of 16 KiB ROM banks"),
        (
            lambda rom: rom[:0x14D] + bytes([rom[0x14D] ^ 0xFF]) + rom[0x14E:],
            "bad cartridge header checksum",
        ),
    ],
)
def test_not_a_game_boy_rom_is_rejected_naming_the_file(tmp_path, mutate, message):
    path = tmp_path / "broken.gb"
    path.write_bytes(mutate(BUILTIN_ROMS["dungeon"].read_bytes()))
    with pytest.raises(GameError, match=message) as info:
        generic_env(rom=str(path))
    assert str(path) in str(info.value)


def test_any_valid_rom_is_accepted(tmp_path):
    rom = bytearray(BUILTIN_ROMS["dungeon"].read_bytes())
    rom[0x134:0x13B] = b"OTHER\x00\x00"  # another title: the dungeon adapter would refuse it
    rom[0x14D] = header_checksum(bytes(rom))
    path = tmp_path / "other.gb"
    path.write_bytes(bytes(rom))
    env = generic_env(rom=str(path))
    assert env.reset().shape == (1, 18, 20)
    env.close()
    with pytest.raises(GameError, match="is not builtin:dungeon"):
        make_env(validate_spec({"name": "x", "game": {"rom": str(path)}}))


def test_trains_end_to_end_with_generic_adapter(tmp_path):
    spec = validate_spec(
        {
            "name": "generic-train",
            "game": {"adapter": "generic"},
            "env": {"num_envs": 2, "episode_length": 50, "backend": "serial"},
            "ppo": {"total_steps": 400, "rollout_steps": 50, "batch_size": 50, "update_epochs": 1},
            "checkpoint": {"dir": str(tmp_path)},
            "mlflow": {"enabled": False},
        }
    )
    summary = train(spec, console=Console(io.StringIO()))
    assert summary.final_step == 400 and summary.total_episodes == 8
    assert all(r > 0 for r in summary.returns), "random play finds new screens"


def with_header(rom: bytes, **at: int) -> bytes:
    patched = bytearray(rom)
    for address, value in at.items():
        patched[int(address.removeprefix("at_"), 16)] = value
    patched[0x14D] = header_checksum(bytes(patched))
    return bytes(patched)


def pyboy_refuses(rom: bytes) -> bool:
    from trainer.games.emulator import start_pyboy

    try:
        start_pyboy(rom).stop(save=False)
    except GameError:
        return True
    return False


SOME_TYPES = sorted(
    PYBOY_CARTRIDGE_TYPES | set(OTHER_MAPPERS) | {0x04, 0x07, 0x0A, 0x0E, 0x14, 0x1F, 0x21, 0x80}
)


@pytest.mark.parametrize("cartridge_type", SOME_TYPES, ids=lambda t: f"0x{t:02X}")
def test_a_cartridge_pyboy_cannot_run_is_refused_before_any_emulator_starts(
    tmp_path, cartridge_type
):
    """Found by probing: a HuC1 or MBC7 ROM crashed every worker with PyBoy's "Catridge type
    invalid" traceback (exit 1). The header check now refuses exactly what PyBoy refuses."""
    rom = with_header(BUILTIN_ROMS["dungeon"].read_bytes(), at_147=cartridge_type)
    path = tmp_path / "cartridge.gb"
    path.write_bytes(rom)
    refused = cartridge_type not in PYBOY_CARTRIDGE_TYPES
    assert pyboy_refuses(rom) == refused
    if refused:
        with pytest.raises(GameError, match=f"header type 0x{cartridge_type:02X}") as info:
            check_game_boy_rom(rom, path)
        assert str(path) in str(info.value) and "PyBoy runs ROM-only, MBC1" in str(info.value)
    else:
        check_game_boy_rom(rom, path)


@pytest.mark.parametrize("ram_code", range(0, 9))
def test_a_ram_size_code_pyboy_cannot_read_is_refused(tmp_path, ram_code):
    rom = with_header(BUILTIN_ROMS["dungeon"].read_bytes(), at_147=0x03, at_149=ram_code)
    refused = ram_code > 5
    assert pyboy_refuses(rom) == refused
    if refused:
        with pytest.raises(GameError, match=f"RAM size code 0x{ram_code:02X}"):
            check_game_boy_rom(rom, tmp_path / "x.gb")
    else:
        check_game_boy_rom(rom, tmp_path / "x.gb")
