"""`trainer make-state`: play a spec's start of play once and keep it as a PyBoy save state,
with a screenshot of that moment, so that `game.state` can point at it (and users see where
every episode will begin).

The start is the adapter's own: `game.ram.start` for `adapter: ram` (buttons, then `until`),
the built-in game's boot, or `game.state` itself. With a display (`DISPLAY` set) a PyBoy window
can then stay open to play on by hand: the state is taken when the window is closed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from trainer.games import load_game
from trainer.games.emulator import play_to_start, start_pyboy
from trainer.spec import JobSpec


@dataclass(frozen=True)
class MadeState:
    state: Path
    screenshot: Path
    frames: int  # emulated since power-on (or since game.state)


def screenshot_path(out: Path) -> Path:
    """`mygame.state` → `mygame.state.png`."""
    return out.with_name(out.name + ".png")


def make_state(spec: JobSpec, out: Path, window: bool = False) -> MadeState:
    """Play `spec`'s start (then, with `window`, whatever the user plays until closing the
    window) and write the save state to `out` and the screen to `out` + `.png`."""
    _, rom, adapter = load_game(spec.game)
    pyboy = start_pyboy(rom, window="SDL2" if window else "null")
    try:
        play_to_start(pyboy, adapter, spec.game.state)
        if window:
            while pyboy.tick(1, True):  # False once the window is closed (PyBoy docs)
                pass
        pyboy.tick(1, True)  # render the frame the screenshot shows
        state = io.BytesIO()
        pyboy.save_state(state)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(state.getvalue())
        picture = screenshot_path(out)
        pyboy.screen.image.convert("RGB").save(picture)
        return MadeState(out, picture, pyboy.frame_count)
    finally:
        pyboy.stop(save=False)
