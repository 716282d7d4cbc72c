"""GameBoyEnv on the built-in game: observations, action repeat, episode ends, errors."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.envs.env import GameBoyEnv, check_game, make_env
from trainer.errors import InvalidInput
from trainer.games import BUILTIN_ROMS, GameError, make_adapter
from trainer.games.screen import screen_tiles
from trainer.spec import validate_spec


def env_for(**env) -> GameBoyEnv:
    return make_env(validate_spec({"name": "env-test", "env": {"num_envs": 1, **env}}))


def test_tiles_observation_matches_pyboy_game_area_along_a_random_walk():
    env = env_for()
    env.reset()
    rng = np.random.default_rng(1)
    for _ in range(400):
        obs, *_, info = env.step(int(rng.integers(env.num_actions)))
        assert np.array_equal(obs[-1], env.pyboy.game_area())
        if info:
            env.reset()
    env.close()


def _write_screen_registers(pyboy, scx, scy, lcdc_set, lcdc_clear, sprites):
    lcdc = pyboy.memory[0xFF40]
    pyboy.memory[0xFF40] = (lcdc | lcdc_set) & ~lcdc_clear
    pyboy.memory[0xFF43], pyboy.memory[0xFF42] = scx, scy
    for i in range(40):
        y, x, tile = sprites[i] if i < len(sprites) else (0, 0, 0)
        pyboy.memory[0xFE00 + 4 * i : 0xFE00 + 4 * i + 3] = [y, x, tile]
    pyboy.tick(1, True)
    assert pyboy.memory[0xFF43] == scx and pyboy.memory[0xFF42] == scy, (
        "the game rewrote the registers"
    )


@pytest.mark.parametrize(
    "lcdc_set, lcdc_clear, sprites",
    [
        (0, 0, [(16 + 8 * 3, 8 + 8 * 5, 42)]),  # one 8×8 sprite at row 3, col 5
        (0x04, 0, [(16 + 8 * 16, 8 + 8 * 19, 7), (0, 0, 9)]),  # 8×16 sprites, one off screen
        (0, 0x10, []),  # signed tile data (ids 256–383)
    ],
)
def test_screen_tiles_equals_game_area_for_sprites_and_tile_modes(lcdc_set, lcdc_clear, sprites):
    env = env_for()
    _write_screen_registers(env.pyboy, 0, 0, lcdc_set, lcdc_clear, sprites)
    assert np.array_equal(screen_tiles(env.pyboy), env.pyboy.game_area())
    env.close()


@pytest.mark.parametrize(
    "scx, scy, other_map", [(8 * 5, 8 * 20, False), (8 * 30 + 3, 5, True), (0, 8 * 31, False)]
)
def test_screen_tiles_follow_scrolling_with_wraparound(scx, scy, other_map):
    """Pan Docs, Scrolling: the visible window starts at (SCY/8, SCX/8) of the 32×32 map and wraps.
    (PyBoy's cached game_area() does not see register writes made outside the game's own code,
    so the reference here is the tile map rolled with numpy.)"""
    env = env_for()
    _write_screen_registers(env.pyboy, scx, scy, 0x08 if other_map else 0, 0, [])
    base = 0x9C00 if other_map else 0x9800
    full = np.array(env.pyboy.memory[base : base + 1024]).reshape(32, 32)
    expected = np.roll(full, (-(scy // 8), -(scx // 8)), axis=(0, 1))[:18, :20]
    assert np.array_equal(screen_tiles(env.pyboy), expected)
    env.close()


def test_screen_tiles_read_the_tile_ids_on_a_game_boy_color_whatever_vram_bank_is_selected():
    """Found by probing: on a Game Boy Color, plain VRAM reads follow VBK (0xFF4F); a game that
    left bank 1 selected gave its tile attributes as the observation."""
    from trainer.games.emulator import start_pyboy
    from trainer.spec.rom_header import header_checksum

    rom = bytearray(BUILTIN_ROMS["dungeon"].read_bytes())
    rom[0x143] = 0x80  # "works on a Game Boy Color too": PyBoy runs it in CGB mode
    rom[0x14D] = header_checksum(bytes(rom))
    pyboy = start_pyboy(bytes(rom))
    pyboy.tick(300, False)
    on_bank_0 = screen_tiles(pyboy)
    pyboy.memory[0xFF4F] = 1
    assert pyboy.memory[0x9800 : 0x9800 + 32] != pyboy.memory[0, 0x9800 : 0x9800 + 32]
    assert np.array_equal(screen_tiles(pyboy), on_bank_0) and on_bank_0.any()
    pyboy.stop(save=False)


def test_reset_restores_start_and_observation():
    env = env_for()
    first = env.reset()
    for action in (2, 2, 4, 4, 4):
        env.step(action)
    assert not np.array_equal(env.step(1)[0], first)
    again = env.reset()
    assert np.array_equal(again, first)
    state = env.adapter.read(env.pyboy)
    assert (state.room, state.x, state.y, state.moves, state.coins) == (0, 3, 4, 0, 0)
    env.close()


def test_one_move_per_step_and_noop_does_not_move():
    env = env_for()
    env.reset()
    start = env.adapter.read(env.pyboy)
    env.step(0)  # noop
    assert env.adapter.read(env.pyboy).moves == start.moves
    env.step(4)  # right
    env.step(4)
    moved = env.adapter.read(env.pyboy)
    assert (moved.x, moved.moves) == (start.x + 2, start.moves + 2)
    env.close()


def test_truncation_at_episode_length_reports_episode_info():
    env = env_for(episode_length=5)
    env.reset()
    results = [env.step(0) for _ in range(5)]
    assert not any(r[3] for r in results[:4])
    obs, reward, terminated, truncated, info = results[-1]
    assert truncated and not terminated
    assert info["episode_length"] == 5 and info["episode_return"] == pytest.approx(-0.05)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(0)
    env.close()


def test_pixels_with_frame_stack():
    env = env_for(obs={"type": "pixels", "downsample": 2, "frame_stack": 3})
    obs = env.reset()
    assert obs.shape == (3, 72, 80) and obs.dtype == np.uint8
    assert len(np.unique(obs[-1])) > 1, "a rendered screen, not a blank one"
    moved = env.step(4)[0]
    assert np.array_equal(moved[:2], obs[1:]), "the stack shifts by one frame"
    assert not np.array_equal(moved[-1], obs[-1])
    env.close()


def test_custom_action_set():
    env = env_for(actions=["noop", "right"])
    assert env.num_actions == 2
    env.reset()
    env.step(1)
    assert env.adapter.read(env.pyboy).x == 4
    env.close()


@pytest.mark.parametrize(
    "game, message",
    [
        ({"rom": "/nonexistent/zelda.gb"}, "game.rom: ROM file not found: /nonexistent/zelda.gb"),
        ({"rom": "builtin:tetris"}, "unknown built-in ROM 'builtin:tetris'"),
        ({"rom": "/"}, "game.rom: / is a directory; give the ROM file's path"),
        # Caught by the spec already (trainer validate), before any emulator:
        ({"adapter": "mario"}, "game.adapter: must be one of dungeon, generic, ram, zelda"),
        ({"reward": {"gold": 1.0}}, "game.reward.gold: names no reward term of adapter 'dungeon'"),
        ({"state": "/nonexistent.state"}, "game.state: save state not found"),
        ({"state": "/"}, "game.state: / is a directory; give the save state file's path"),
        # A name stat() refuses (Path.is_file raised ENAMETOOLONG), a file read() refuses (EIO):
        ({"rom": "/" + "r" * 300 + ".gb"}, "game.rom: cannot look at /rrr"),
        ({"rom": "/proc/self/mem"}, "game.rom: cannot read /proc/self/mem (Input/output error)"),
        ({"state": "/" + "s" * 300}, "game.state: cannot look at /sss"),
        ({"state": "/proc/self/mem"}, "game.state: cannot read /proc/self/mem (Input/output"),
    ],
)
def test_bad_game_settings_name_the_key(game, message):
    with pytest.raises(InvalidInput) as info:
        make_env(validate_spec({"name": "bad", "game": game}))
    assert message in str(info.value)


@pytest.mark.parametrize("adapter", ["dungeon", "generic"])
def test_a_rom_pyboy_would_refuse_is_refused_before_the_emulators_for_every_adapter(
    tmp_path, adapter
):
    # A dump one byte too long: the dungeon adapter checked only its title and signature, and
    # every worker's PyBoy then refused the file.
    path = tmp_path / "long.gb"
    path.write_bytes(BUILTIN_ROMS["dungeon"].read_bytes() + b"\x00")
    spec = validate_spec({"name": "bad", "game": {"rom": str(path), "adapter": adapter}})
    with pytest.raises(GameError, match="not a whole number of 16 KiB ROM banks") as info:
        check_game(spec)
    assert str(info.value).startswith(f"game.rom: {path} is 32,769 bytes")


def test_the_adapter_registry_refuses_unknown_names_too():
    with pytest.raises(GameError, match="game.adapter: unknown adapter 'mario'"):
        make_adapter("mario")


def test_foreign_rom_is_rejected_with_its_path(tmp_path):
    rom = bytearray(BUILTIN_ROMS["dungeon"].read_bytes())
    rom[0x134:0x13B] = b"TETRIS\x00"
    path = tmp_path / "other.gb"
    path.write_bytes(bytes(rom))
    with pytest.raises(GameError, match=str(path)):
        make_env(validate_spec({"name": "bad", "game": {"rom": str(path)}}))
