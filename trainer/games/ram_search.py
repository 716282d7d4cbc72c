"""`trainer ram-search`: the emulator players' cheat search, done for you.

Play a ROM with random (or chosen) buttons, snapshot work RAM and HRAM after every step, and
sort the bytes that changed by how they behaved: **coordinates** (they move with the D-pad: the
changes happen while left/right or up/down is held, in the direction held), **timers** (they
change on almost every step, whatever is pressed), **counters** (they only ever go up, or only
down: score, coins, lives) and **flags** (two values, or bits that are only set: events, items).
Each comes with its range and the evidence, to pick addresses for `game.ram`.

Buttons are held for random stretches of 1–8 steps (a short tap turns a character in place in
many games; a hold walks), with a release between stretches so that games reacting to press
edges see every press.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.errors import read_input_file
from trainer.games.base import GameError
from trainer.games.emulator import start_pyboy
from trainer.games.generic import BOOT_FRAMES
from trainer.spec.game_ram import hex_address

#: Scanned ranges (Pan Docs, Memory Map): work RAM and high RAM, where games keep their state.
REGIONS = ((0xC000, 0xE000), (0xFF80, 0xFFFF))
DIRECTIONS = {"right": (0, +1), "left": (0, -1), "down": (1, +1), "up": (1, -1)}
AXES = ("x", "y")
DEFAULT_BUTTONS = ("noop", "up", "down", "left", "right", "a", "b")
KINDS = ("coordinate", "counter", "timer", "flag", "input")
#: A timer changes on at least this share of steps; a coordinate's changes happen with its axis
#: held, in the held direction, at least this often.
TIMER_SHARE, AXIS_SHARE = 0.9, 0.8
#: Bytes just below the stack pointer hold finished calls' frames: they change with whatever was
#: called last, look like anything, and are left out (Pan Docs, CPU registers: SP).
DEAD_STACK = 64


@dataclass(frozen=True)
class Candidate:
    """One address and how it behaved."""

    address: str
    kind: str
    minimum: int
    maximum: int
    distinct: int
    changes: int
    evidence: str

    def row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Recording:
    """RAM after each step (`ram[0]`: before the first) and the button held during each step."""

    addresses: np.ndarray  # (n,) bus addresses
    ram: np.ndarray  # (steps + 1, n) uint8
    held: list[str]  # (steps,) button names, "noop" for no button
    lowest_sp: int = 0x10000  # the lowest stack pointer seen after a step

    def dead_stack(self) -> np.ndarray:
        """Mask of the addresses in the call frames just below the stack pointer."""
        return (self.addresses >= self.lowest_sp - DEAD_STACK) & (self.addresses < self.lowest_sp)


def record(
    rom: bytes,
    state: bytes | None,
    steps: int,
    buttons: Sequence[str] = DEFAULT_BUTTONS,
    seed: int = 0,
    frame_skip: int = 4,
    progress: Callable[[int], None] | None = None,
) -> Recording:
    """Play `steps` steps of `frame_skip` frames from power-on (or `state`) with random holds."""
    pyboy = start_pyboy(rom)
    try:
        if state is None:
            pyboy.tick(BOOT_FRAMES, False)
        else:
            load_state(pyboy, state)
        rng = np.random.default_rng(seed)
        addresses = np.concatenate([np.arange(a, b) for a, b in REGIONS])
        ram = np.empty((steps + 1, len(addresses)), dtype=np.uint8)
        ram[0] = snapshot(pyboy)
        held: list[str] = []
        lowest_sp = pyboy.register_file.SP
        while len(held) < steps:
            button = str(rng.choice(list(buttons)))
            stretch = min(int(rng.integers(1, 9)), steps - len(held))
            if button != "noop":
                pyboy.button_press(button)
            for _ in range(stretch):
                pyboy.tick(frame_skip, False)
                held.append(button)
                ram[len(held)] = snapshot(pyboy)
                lowest_sp = min(lowest_sp, pyboy.register_file.SP)
                if progress:
                    progress(1)
            if button != "noop":
                pyboy.button_release(button)  # seen on the next step's first frame
        return Recording(addresses, ram, held, lowest_sp)
    finally:
        pyboy.stop(save=False)


def snapshot(pyboy: Any) -> np.ndarray:
    return np.concatenate([np.array(pyboy.memory[a:b], dtype=np.uint8) for a, b in REGIONS])


def load_state(pyboy: Any, state: bytes) -> None:
    try:
        pyboy.load_state(io.BytesIO(state))
    except Exception as exc:  # PyBoy raises various errors on a foreign state
        raise GameError(f"--state: not a PyBoy save state for this ROM ({exc})") from None


def classify(recording: Recording, min_changes: int = 2) -> list[Candidate]:
    """Every address that changed at least `min_changes` times and fits a kind (call frames
    below the stack pointer left out), by kind, the most changes first."""
    ram = recording.ram.astype(np.int16)
    # Signed change per step, wrap-aware: 255 → 0 is +1, 0 → 255 is −1.
    deltas = (np.diff(ram, axis=0) + 128) % 256 - 128
    held = np.array(recording.held)
    axis = np.array([DIRECTIONS[b][0] if b in DIRECTIONS else -1 for b in held])
    sign = np.array([DIRECTIONS[b][1] if b in DIRECTIONS else 0 for b in held])
    found = []
    counts = np.count_nonzero(deltas, axis=0)
    for column in np.flatnonzero((counts >= max(1, min_changes)) & ~recording.dead_stack()):
        values, delta = recording.ram[:, column], deltas[:, column]
        kind, evidence = _kind(values, delta, axis, sign, held)
        if kind is None:
            continue
        found.append(
            Candidate(
                address=hex_address(int(recording.addresses[column])),
                kind=kind,
                minimum=int(values.min()),
                maximum=int(values.max()),
                distinct=len(np.unique(values)),
                changes=int(np.count_nonzero(delta)),
                evidence=evidence,
            )
        )
    return sorted(found, key=lambda c: (KINDS.index(c.kind), -c.changes, c.address))


def _kind(
    values: np.ndarray, delta: np.ndarray, axis: np.ndarray, sign: np.ndarray, held: np.ndarray
) -> tuple[str | None, str]:
    moved = delta != 0
    changes = int(moved.sum())
    steps = len(delta)
    typical = int(np.bincount(delta[moved] + 128).argmax()) - 128
    if changes >= TIMER_SHARE * steps:
        return "timer", f"changes on {changes / steps:.0%} of steps, most often by {typical:+d}"
    follows = _input_evidence(values[1:], held)
    if follows:
        return "input", follows
    if changes >= 3 and len(np.unique(values)) >= 3:
        for index, name in enumerate(AXES):
            on_axis = moved & (axis == index)
            agree = float(np.mean(np.sign(delta[on_axis]) * sign[on_axis])) if on_axis.any() else 0
            if on_axis.sum() >= AXIS_SHARE * changes and abs(agree) >= AXIS_SHARE:
                plus, minus = ("right", "left") if name == "x" else ("down", "up")
                trend = "rises" if agree > 0 else "falls"
                return "coordinate", (
                    f"{name}: {on_axis.sum() / changes:.0%} of changes while {plus}/{minus} is "
                    f"held; {trend} with {plus} {abs(agree):.0%} of the time"
                )
    flag = _flag_evidence(values, moved)
    if flag:
        return "flag", flag
    rises, falls = int((delta > 0).sum()), int((delta < 0).sum())
    if rises and not falls:
        return "counter", f"only rises ({changes} changes, most often {typical:+d}){_bcd(values)}"
    if falls and not rises:
        return "counter", f"only falls ({changes} changes, most often {typical:+d}){_bcd(values)}"
    return None, ""


def _input_evidence(after: np.ndarray, held: np.ndarray) -> str:
    """A copy of the joypad (or of the direction last pressed): the value after a step is set
    by the button held during it, not by what came before."""
    usual = {}
    for button in np.unique(held):
        seen = after[held == button]
        counts = np.bincount(seen, minlength=256)
        if counts.max() < AXIS_SHARE * len(seen):
            return ""
        usual[str(button)] = int(counts.argmax())
    if len(set(usual.values())) < 2:
        return ""
    return "follows the button held: " + ", ".join(f"{b} → {v}" for b, v in sorted(usual.items()))


def _flag_evidence(values: np.ndarray, moved: np.ndarray) -> str:
    distinct = np.unique(values)
    if len(distinct) <= 2:
        return f"two values: {', '.join(f'{v:#04x}' for v in distinct)}"
    before = values[:-1][moved].astype(np.int64)
    after = values[1:][moved].astype(np.int64)
    if np.all(after & before == before):
        return f"bits only set ({len(distinct)} values, last {int(values[-1]):#010b})"
    if np.all(after & before == after):
        return f"bits only cleared ({len(distinct)} values)"
    return ""


def _bcd(values: np.ndarray) -> str:
    valid = np.all((values & 0x0F) <= 9) and np.all((values >> 4) <= 9)
    return "; every value is valid BCD" if valid and values.max() > 9 else ""


def search(
    rom_path: Path,
    state_path: Path | None = None,
    steps: int = 3000,
    buttons: Sequence[str] = DEFAULT_BUTTONS,
    seed: int = 0,
    min_changes: int = 2,
    progress: Callable[[int], None] | None = None,
) -> list[Candidate]:
    """Record `steps` steps of play on `rom_path` and classify the addresses that changed."""
    state = None
    if state_path is not None:
        state = read_input_file(state_path, "--state", GameError)
    recording = record(rom_path.read_bytes(), state, steps, buttons, seed, progress=progress)
    return classify(recording, min_changes)
