"""`trainer ram-search | make-state`: the two helpers for writing a `game.ram` spec for a game
of your own. The work is in `trainer.games.ram_search` and `trainer.games.make_state`, imported
when a command runs (they bring PyBoy)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from trainer.cli.common import (
    handle_errors,
    output_file_callback,
    read_spec,
    set_option,
    spec_argument,
)
from trainer.spec import BUTTONS


def _rom_path(rom: str) -> Path:
    """ROM argument → file: `builtin:<name>` or an existing .gb/.gbc file with a valid header."""
    from trainer.errors import read_input_file
    from trainer.games import resolve_rom
    from trainer.games.base import GameError, check_game_boy_rom

    path = resolve_rom(rom, key="ROM", missing_hint="; give a .gb/.gbc file or builtin:dungeon")
    check_game_boy_rom(read_input_file(path, "ROM", GameError), path, key="ROM")
    return path


@click.command("ram-search")
@click.argument("rom", metavar="ROM")
@click.option(
    "--state",
    type=click.Path(dir_okay=False),
    help="PyBoy save state to start from (e.g. one from `trainer make-state`); default: 240 "
    "frames after power-on.",
)
@click.option(
    "--steps",
    type=click.IntRange(10, 1_000_000),
    default=3000,
    show_default=True,
    help="Steps of 4 frames to play.",
)
@click.option(
    "--press",
    "buttons",
    multiple=True,
    type=click.Choice(BUTTONS),
    help="A button to play with (repeat the option); default: noop, the D-pad, a and b.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random play.")
@click.option(
    "--min-changes",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="List only addresses that changed at least this often.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    callback=output_file_callback,
    help="Write to this file instead of the terminal.",
)
@handle_errors
def ram_search(
    rom: str,
    state: str | None,
    steps: int,
    buttons: tuple[str, ...],
    seed: int,
    min_changes: int,
    fmt: str,
    out: str | None,
) -> None:
    """Find a game's counters, coordinates, flags and timers in RAM, for `game.ram`.

    Plays ROM (a .gb/.gbc file or builtin:NAME) with random buttons, each held for 1–8 steps,
    and lists the work-RAM and high-RAM addresses whose values rose only (counters: score,
    coins), moved with the D-pad (coordinates), took two values or only gained bits (flags), or
    changed on almost every step (timers), with their ranges and the evidence.

    \b
    trainer ram-search mygame.gb --steps 5000
    trainer ram-search mygame.gb --state start.state --press left --press right --format csv
    """
    from trainer.games.emulator import check_state_file
    from trainer.games.ram_search import DEFAULT_BUTTONS, search

    path = _rom_path(rom)
    state_path = Path(state).expanduser() if state else None
    if state_path is not None:
        check_state_file(state_path, key="--state")
    with _progress(steps, f"Playing {steps:,} steps") as advance:
        found = search(
            path,
            state_path,
            steps,
            buttons or DEFAULT_BUTTONS,
            seed,
            min_changes,
            progress=advance,
        )
    rows = [candidate.row() for candidate in found]
    caption = f"{len(rows)} addresses, {steps:,} steps of random play on {rom} (seed {seed})"
    if fmt == "json":
        text = json.dumps({"rom": rom, "steps": steps, "seed": seed, "candidates": rows}, indent=2)
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["address"])
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue().rstrip("\n")
    else:
        text = _table(rows, caption, color=out is None)
    _emit(text, out, f"{len(rows)} addresses")


def _table(rows: list[dict[str, Any]], caption: str, color: bool) -> str:
    from rich.console import Console as RichConsole
    from rich.table import Table

    table = Table(
        title=caption,
        title_justify="left",
        caption="counters → rewards (increase, delta), coordinates → exploration (distinct "
        "over x and y), flags → episode ends (equals)",
        caption_justify="left",
    )
    for column in ("address", "kind", "range", "values", "changes", "evidence"):
        table.add_column(column, justify="right" if column in ("values", "changes") else "left")
    for row in rows:
        table.add_row(
            row["address"],
            row["kind"],
            f"{row['minimum']}–{row['maximum']}",
            str(row["distinct"]),
            str(row["changes"]),
            row["evidence"],
        )
    console = RichConsole(
        file=io.StringIO(), width=160, force_terminal=color and sys.stdout.isatty()
    )
    console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in text.splitlines())


def _emit(text: str, out: str | None, what: str) -> None:
    if out is None:
        click.echo(text)
        return
    Path(out).write_text(text + "\n")
    click.echo(f"wrote {what} to {out}", err=True)


@contextlib.contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr while the emulator runs, when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console as RichConsole
    from rich.progress import Progress

    with Progress(console=RichConsole(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@click.command("make-state")
@spec_argument
@set_option
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="Save state to write; the screenshot goes next to it as OUT.png.",
)
@click.option(
    "--window/--headless",
    default=None,
    help="Open a PyBoy window after the start, to play on by hand; the state is taken when you "
    "close it. Default: a window when a display is available (DISPLAY set).",
)
@handle_errors
def make_state(spec_path: str, overrides: tuple[str, ...], out: str, window: bool | None) -> None:
    """Play SPEC's start of play and save it as a PyBoy save state, with a screenshot.

    The start is `game.ram.start` (its buttons, then `until`) for `adapter: ram`, the adapter's
    own boot for the built-in games, or `game.state`. Point `game.state` at OUT (and drop
    `game.ram.start`) to skip replaying the start in every environment.

    \b
    trainer make-state configs/mygame.yaml --out roms/mygame.state
    """
    from trainer.games.make_state import make_state as play

    spec = read_spec(spec_path, overrides)
    if window is None:
        window = bool(os.environ.get("DISPLAY"))
    made = play(spec, Path(out), window=window)
    click.echo(
        f"wrote {made.state} ({made.state.stat().st_size:,} bytes) after {made.frames:,} frames, "
        f"and the screen at that point to {made.screenshot}"
    )
