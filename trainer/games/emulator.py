"""Starting PyBoy the one way the trainer does: from ROM bytes (PyBoy looks for `<rom>.ram` next
to a path ROM; bytes keep runs hermetic), no sound, full speed, and without pysdl2's "Using SDL2
binaries" notice. The window is `null` except for `trainer make-state` on a desktop."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

from trainer.errors import InvalidInput, path_problem, read_input_file
from trainer.games.base import GameAdapter, GameError
from trainer.spec.rom_header import STATE_FILE


def import_pyboy() -> type:
    """PyBoy's class, imported on first use (the launcher and CLI must not pay for it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using SDL2 binaries", category=UserWarning)
        from pyboy import PyBoy
    return PyBoy


#: What PyBoy's `log_level` accepts (pyboy/logging/__init__.py).
PYBOY_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "DISABLE")


def start_pyboy(rom: bytes, window: str = "null") -> Any:
    """A PyBoy for `rom`, powered on (its boot ROM runs on the first ticks). A ROM PyBoy refuses
    is a `GameError` naming `game.rom` (the adapters' header check refuses most before this)."""
    pyboy_class = import_pyboy()  # first: it silences pysdl2's notice
    from pyboy.utils import PyBoyException

    log_level = os.environ.get("PYBOY_LOG_LEVEL", "ERROR").upper()
    if log_level not in PYBOY_LOG_LEVELS:
        raise InvalidInput(
            f"$PYBOY_LOG_LEVEL: {log_level!r} is not a PyBoy log level ({', '.join(PYBOY_LOG_LEVELS)})"
        )
    try:
        pyboy = pyboy_class(
            io.BytesIO(rom), window=window, sound_emulated=False, log_level=log_level
        )
    except (PyBoyException, KeyError) as exc:  # KeyError: a header code missing from its tables
        raise GameError(f"game.rom: PyBoy cannot run this ROM ({exc!r})") from None
    if window == "null":
        pyboy.set_emulation_speed(0)
    return pyboy


def play_to_start(pyboy: Any, adapter: GameAdapter, state: str | None) -> None:
    """From power-on to the first playable frame: the save state `state` (game.state) if given,
    else the adapter's boot (e.g. `game.ram.start`)."""
    adapter.configure(pyboy)
    if state:
        load_state_file(pyboy, Path(state).expanduser())
    else:
        adapter.boot(pyboy)


def check_state_file(path: Path, key: str = "game.state") -> None:
    """GameError naming `key` (the spec's `game.state`, or a command's `--state`) unless `path`
    is a file."""
    problem = path_problem(path, *STATE_FILE)
    if problem:
        raise GameError(f"{key}: {problem}")
    if not path.is_file():
        raise GameError(f"{key}: save state not found: {path}")


def load_state_file(pyboy: Any, path: Path) -> None:
    """`pyboy.load_state` from `path`; GameError naming `game.state` when it cannot be."""
    check_state_file(path)
    state = io.BytesIO(read_input_file(path, "game.state", GameError))
    try:
        pyboy.load_state(state)
    except Exception as exc:  # PyBoy raises various errors on a foreign state
        raise GameError(
            f"game.state: {path} is not a PyBoy save state for this ROM ({exc})"
        ) from None
