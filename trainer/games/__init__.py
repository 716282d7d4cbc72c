"""Game adapters and built-in ROMs. `game.adapter` in the spec names an entry of `ADAPTERS`."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

from trainer.errors import path_problem, read_input_file
from trainer.games.base import GameAdapter, GameError, check_game_boy_rom
from trainer.spec.game_ram import RamSpec
from trainer.spec.models import GameSpec
from trainer.spec.rom_header import ROM_FILE

#: adapter name → "module:Class" (imported on use, so listing adapters imports no game code).
ADAPTERS: dict[str, str] = {
    "dungeon": "trainer.games.dungeon:DungeonAdapter",
    "generic": "trainer.games.generic:GenericAdapter",
    "ram": "trainer.games.ram:RamAdapter",
    "zelda": "trainer.games.zelda:ZeldaAdapter",
}

ROMS_DIR = Path(__file__).parent / "roms"
#: `builtin:<name>` → ROM file shipped inside the package.
BUILTIN_ROMS: dict[str, Path] = {
    "dungeon": ROMS_DIR / "dungeon" / "dungeon.gb",
    "cavern": ROMS_DIR / "cavern" / "cavern.gb",
}


def make_adapter(
    name: str, reward_overrides: Mapping[str, float] | None = None, ram: RamSpec | None = None
) -> GameAdapter:
    """The adapter registered as `name`, with the spec's reward overrides applied (and, for
    `ram`, the spec's `game.ram` section)."""
    try:
        target = ADAPTERS[name]
    except KeyError:
        raise GameError(
            f"game.adapter: unknown adapter {name!r}; known: {', '.join(sorted(ADAPTERS))}"
        ) from None
    module, cls = target.split(":")
    adapter_class = getattr(importlib.import_module(module), cls)
    if name == "ram":
        return adapter_class(reward_overrides, ram)
    return adapter_class(reward_overrides)


def adapter_for(game: GameSpec) -> GameAdapter:
    """The adapter a spec's `game` section describes."""
    return make_adapter(game.adapter, game.reward, game.ram)


#: What a missing `game.rom` file most likely means: the pod cannot see it.
MOUNT_HINT = " — mount your ROM into the pod (volume) or bake it into a derived image, and give its path here"


def resolve_rom(rom: str, key: str = "game.rom", missing_hint: str = MOUNT_HINT) -> Path:
    """`builtin:<name>` or a file path → an existing ROM file (GameError naming `key` otherwise:
    the spec's `game.rom`, or a command's ROM argument)."""
    if rom.startswith("builtin:"):
        name = rom.removeprefix("builtin:")
        if name not in BUILTIN_ROMS:
            raise GameError(
                f"{key}: unknown built-in ROM {rom!r}; built-in: {', '.join('builtin:' + k for k in BUILTIN_ROMS)}"
            )
        return BUILTIN_ROMS[name]
    path = Path(rom).expanduser()
    problem = path_problem(path, *ROM_FILE)
    if problem:
        raise GameError(f"{key}: {problem}")
    if not path.is_file():
        raise GameError(f"{key}: ROM file not found: {path}{missing_hint}")
    return path


def load_game(game: GameSpec) -> tuple[Path, bytes, GameAdapter]:
    """(ROM path, ROM bytes, adapter) of a spec's `game` section, the ROM checked: a Game Boy
    ROM PyBoy can run (whatever the adapter), then the adapter's own game. The one way the
    trainer, its envs and `make-state` open a game, so a bad file is said the same everywhere."""
    path = resolve_rom(game.rom)
    rom = read_input_file(path, "game.rom", GameError)
    check_game_boy_rom(rom, path)
    adapter = adapter_for(game)
    adapter.check_rom(rom, path)
    return path, rom, adapter


__all__ = [
    "ADAPTERS",
    "BUILTIN_ROMS",
    "GameAdapter",
    "GameError",
    "adapter_for",
    "load_game",
    "make_adapter",
    "resolve_rom",
]
