"""`GameBoyEnv`: one PyBoy emulator as an RL environment.

Boot once, save a state at the start of play, and reset episodes with `load_state` (never by
re-creating PyBoy). A step holds the action's button for `hold_frames`, releases it, and ticks
the rest of `frame_skip` frames; the screen is rendered only on the last frame and only when the
observation needs pixels (`tick(count, render)` renders just the last frame: PyBoy docs).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from trainer.games import GameError, load_game
from trainer.games.emulator import check_state_file, import_pyboy, play_to_start, start_pyboy
from trainer.games.screen import NUM_TILE_IDS, SCREEN_TILES_H, SCREEN_TILES_W, screen_tiles
from trainer.spec import JobSpec

__all__ = ["NUM_TILE_IDS", "GameBoyEnv", "check_game", "import_pyboy", "make_env", "press_and_tick"]


class GameBoyEnv:
    """One emulator. Not thread-safe: create it in the process (worker) that steps it.

    Observations are `(frame_stack, H, W)` arrays: tile ids (uint16, 18×20) for `tiles`, or
    grayscale pixels (uint8, 144/d × 160/d) for `pixels`. `step` returns
    `(obs, reward, terminated, truncated, info)`; `info` is empty except on the last step of
    an episode, where it holds `episode_return`, `episode_length` and the adapter's stats.
    """

    def __init__(
        self, spec: JobSpec, index: int = 0, render_screen: bool = False, window: str = "null"
    ):
        self.index = index
        game, env = spec.game, spec.env
        _, rom, self.adapter = load_game(game)

        self.frame_skip = env.frame_skip
        self.hold_frames = env.hold_frames
        self.episode_length = env.episode_length
        self.obs_type = env.obs.type
        # Render every step's last frame even for tile observations (recording a video).
        self._render = self.obs_type == "pixels" or render_screen
        self.downsample = env.obs.downsample
        self._buttons: list[str | None] = [None if a == "noop" else a for a in env.actions]
        self.num_actions = len(self._buttons)

        # Real time when a person watches in a window (start_pyboy: full speed when headless).
        self.pyboy = start_pyboy(rom, window)
        # The visible 20×18 tiles, following SCX/SCY (default is the whole 32×32 tilemap).
        self.pyboy.game_area_dimensions(0, 0, SCREEN_TILES_W, SCREEN_TILES_H, True)
        play_to_start(self.pyboy, self.adapter, game.state)
        # One rendered frame so the start observation exists in pixels too; then save the state
        # every episode starts from, and the observation that goes with it.
        self.pyboy.tick(1, True)
        self._start_state = io.BytesIO()
        self.pyboy.save_state(self._start_state)
        self._start_frame = self._frame(rendered=True)
        self._check_start()
        self.start_screen = self.screen_rgb()  # what every episode starts from, as a picture

        self.observation_dtype = self._start_frame.dtype
        self.observation_shape = (env.obs.frame_stack, *self._start_frame.shape)
        self._frames = np.empty(self.observation_shape, dtype=self.observation_dtype)
        self._ram: Any = None  # the adapter's RAM snapshot, read at reset
        self._steps = 0
        self._return = 0.0
        self._needs_reset = True

    # ---- public API -----------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        """Restore the saved start state; returns the first observation."""
        self._start_state.seek(0)
        self.pyboy.load_state(self._start_state)
        self.adapter.reset()
        self._ram = self.adapter.read(self.pyboy)
        self._steps = 0
        self._return = 0.0
        self._frames[:] = self._start_frame
        self._needs_reset = False
        return self._frames.copy()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, float]]:
        if self._needs_reset:
            raise RuntimeError("GameBoyEnv.step called before reset() or after the episode ended")
        render = self._render
        press_and_tick(self.pyboy, self._buttons[action], self.hold_frames, self.frame_skip, render)
        ram = self.adapter.read(self.pyboy)
        reward = self.adapter.reward(self._ram, ram)
        self._ram = ram
        self._steps += 1
        self._return += reward
        terminated = self.adapter.terminated(ram)
        truncated = not terminated and (
            self._steps >= self.episode_length or self.adapter.truncated(ram)
        )
        if len(self._frames) > 1:
            self._frames[:-1] = self._frames[1:]
        self._frames[-1] = self._frame(rendered=render)
        info: dict[str, float] = {}
        if terminated or truncated:
            self._needs_reset = True
            info = {
                "episode_return": self._return,
                "episode_length": float(self._steps),
                **self.adapter.episode_stats(ram),
            }
        return self._frames.copy(), reward, terminated, truncated, info

    def screen_rgb(self) -> np.ndarray:
        """A copy of the screen as (144, 160, 3) uint8 RGB: valid after `reset()` and after each
        step when the env was built with `render_screen=True` (or pixel observations)."""
        return np.ascontiguousarray(self.pyboy.screen.ndarray[:, :, :3])

    def close(self) -> None:
        pyboy, self.pyboy = getattr(self, "pyboy", None), None
        if pyboy is not None:
            pyboy.stop(save=False)

    def __del__(self) -> None:  # best effort; close() is the contract
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # ---- internals ------------------------------------------------------------------------
    def _frame(self, rendered: bool) -> np.ndarray:
        if self.obs_type == "tiles":
            return screen_tiles(self.pyboy)
        # screen.ndarray is one reused RGBA buffer: copy what we keep (ARCHITECTURE.md). The DMG
        # palette is gray, so one channel is the grayscale image.
        return np.ascontiguousarray(
            self.pyboy.screen.ndarray[:: self.downsample, :: self.downsample, 0]
        )

    def _check_start(self) -> None:
        """An episode that ends in its start state would last one step, every time: say so."""
        self.adapter.reset()
        start = self.adapter.read(self.pyboy)
        if self.adapter.terminated(start) or self.adapter.truncated(start):
            raise GameError(
                f"game: the start state already ends the episode ({self.adapter.end_reason(start)}):"
                " every episode would last one step; start later in the game (game.state, "
                "game.ram.start) or fix the end condition"
            )


def press_and_tick(
    pyboy: Any, button: str | None, hold_frames: int, frame_skip: int, render: bool
) -> None:
    """One env step's emulation: hold `button` for `hold_frames`, release it, tick the rest of
    `frame_skip`; render only the step's last frame, and only when `render` (PyBoy's
    `tick(count, render)` renders just the last frame of `count`)."""
    if button is None:
        pyboy.tick(frame_skip, render)
        return
    rest = frame_skip - hold_frames
    pyboy.button_press(button)
    pyboy.tick(hold_frames, render and rest == 0)
    pyboy.button_release(button)  # takes effect on the next tick
    if rest:
        pyboy.tick(rest, render)


def check_game(spec: JobSpec) -> Path:
    """The game settings' checks that need no emulator: ROM found and accepted by the adapter,
    reward terms known, save state present. Run in the parent before worker processes start, so
    a bad `game.*` value is one clear error (exit 2) rather than a crash in every worker.
    Returns the ROM's path."""
    rom_path, _, adapter = load_game(spec.game)
    if adapter.requires_state and not spec.game.state:
        raise GameError(adapter.requires_state)
    if spec.game.state:
        check_state_file(Path(spec.game.state).expanduser())
    return rom_path


def make_env(spec: JobSpec, index: int = 0) -> GameBoyEnv:
    """Environment `index` of a job (picklable as `functools.partial(make_env, spec, i)`)."""
    logging.getLogger("pyboy").setLevel(logging.ERROR)
    return GameBoyEnv(spec, index)
