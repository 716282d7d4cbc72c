"""`trainer ram-search` and `trainer make-state` on our own ROM, where the answers are known
(trainer/games/roms/dungeon/ram.h: hero x/y at 0xC004/0xC005, coins at 0xC006)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from trainer.cli import main
from trainer.envs.env import make_env
from trainer.games import BUILTIN_ROMS
from trainer.games.ram_search import Recording, classify, search
from trainer.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
DUNGEON_RAM = ROOT / "configs" / "dungeon-ram.yaml"


@pytest.fixture(scope="module")
def dungeon_candidates():
    return {c.address: c for c in search(BUILTIN_ROMS["dungeon"], steps=1500, seed=0)}


def test_ram_search_finds_the_dungeons_coordinates_and_coins(dungeon_candidates):
    x, y, coins = (dungeon_candidates.get(a) for a in ("0xC004", "0xC005", "0xC006"))
    assert x and x.kind == "coordinate" and x.evidence.startswith("x: 100% of changes")
    assert "rises with right" in x.evidence and 0 <= x.minimum < x.maximum <= 19
    assert y and y.kind == "coordinate" and y.evidence.startswith("y:")
    assert "rises with down" in y.evidence and 0 <= y.minimum < y.maximum <= 15
    assert coins and coins.kind == "counter" and coins.evidence.startswith("only rises")
    # Items taken in room 0 (a bitmask, ram.h: RAM_TAKEN) are bits only ever set.
    assert dungeon_candidates["0xC010"].kind == "flag"
    assert "bits only set" in dungeon_candidates["0xC010"].evidence
    assert not [c for c in dungeon_candidates.values() if c.kind == "coordinate"
                and c.address not in ("0xC004", "0xC005")]  # fmt: skip
    pad = dungeon_candidates["0xC00F"]  # RAM_PAD_PREV: a copy of the joypad, not a coordinate
    assert pad.kind == "input" and "left → 2, noop → 0, right → 1" in pad.evidence


def test_timers_change_every_step_whatever_is_held():
    """The dungeon has no frame counter: the classifier on a recording made up for the case
    (one byte counting frames, one idle)."""
    steps = 200
    frames = (np.arange(steps + 1) * 4) % 256
    ram = np.stack([frames, np.zeros(steps + 1)], axis=1).astype(np.uint8)
    recording = Recording(np.array([0xC0A0, 0xC0A1]), ram, ["noop", "up"] * (steps // 2))
    [timer] = classify(recording)
    assert (timer.address, timer.kind) == ("0xC0A0", "timer")
    assert timer.evidence == "changes on 100% of steps, most often by +4"


def test_ram_search_command_formats(tmp_path):
    runner = CliRunner()
    args = ["ram-search", "builtin:dungeon", "--steps", "600"]
    table = runner.invoke(main, args)
    assert table.exit_code == 0, table.output
    assert "0xC004  │ coordinate" in table.output
    result = runner.invoke(main, [*args, "--format", "json", "--out", str(tmp_path / "c.json")])
    assert result.exit_code == 0 and "wrote" in result.output
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["steps"] == 600 and data["candidates"][0]["kind"] == "coordinate"
    result = runner.invoke(main, [*args, "--format", "csv"])
    rows = {row["address"]: row for row in csv.DictReader(result.output.splitlines())}
    assert rows["0xC004"]["kind"] == rows["0xC005"]["kind"] == "coordinate"
    # Only left and right pressed: y never moves; the joypad copy (RAM_PAD_PREV) follows them.
    result = runner.invoke(main, [*args, "--press", "left", "--press", "right", "--format", "csv"])
    rows = {row["address"]: row for row in csv.DictReader(result.output.splitlines())}
    assert "0xC005" not in rows
    assert rows["0xC00F"]["evidence"] == "follows the button held: left → 2, right → 1"


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.gb"], "error: ROM: ROM file not found: missing.gb; give a .gb/.gbc file"),
        (["trainer/games/roms"], "error: ROM: trainer/games/roms is a directory; give the ROM"),
        (["~/missing.gb"], "ROM file not found: " + str(Path.home() / "missing.gb")),
        (["README.md"], "error: ROM: README.md is not a Game Boy ROM"),
        (["builtin:tetris"], "unknown built-in ROM 'builtin:tetris'"),
        (["builtin:dungeon", "--state", "missing.state"], "error: --state: save state not found"),
        (["builtin:dungeon", "--state", "README.md"], "error: --state: not a PyBoy save state"),
        (["builtin:dungeon", "--press", "jump"], "Invalid value for '--press'"),
        (["/proc/self/mem"], "error: ROM: cannot read /proc/self/mem (Input/output error)"),
        (["/" + "r" * 300 + ".gb"], "error: ROM: cannot look at /rrr"),
        (["builtin:dungeon", "--state", "/proc/self/mem"], "error: --state: cannot read /proc"),
    ],
)
def test_ram_search_bad_input_exits_2(monkeypatch, args, message):
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, ["ram-search", *args, "--steps", "10"])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_make_state_says_in_one_line_why_its_output_cannot_be_written(monkeypatch):
    """Found by probing: OSError's traceback after the whole start was played. /proc takes no
    new file: as root the folder check passes (access() says writable) and the write fails."""
    monkeypatch.delenv("DISPLAY", raising=False)
    result = CliRunner().invoke(main, ["make-state", str(DUNGEON_RAM), "--out", "/proc/x.state"])
    assert isinstance(result.exception, SystemExit) and result.exit_code in (1, 2), result.output
    assert "error: No such file or directory: /proc/x.state" in result.output or (
        "its folder /proc is not writable" in result.output  # when not run as root
    )


def test_make_state_writes_the_start_of_play_and_a_screenshot(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)  # headless: no window to wait for
    out = tmp_path / "dungeon.state"
    result = CliRunner().invoke(main, ["make-state", str(DUNGEON_RAM), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and f"{out}.png" in result.output
    with Image.open(f"{out}.png") as image:
        assert image.size == (160, 144)
        assert len(image.getcolors(maxcolors=256) or []) > 1  # the first room, not a blank screen
    # Episodes started from the state begin where the spec's start.until stops.
    spec = load_spec(DUNGEON_RAM, environ={})
    from_start = make_env(spec)
    from_state = make_env(spec.updated({"game.ram.start": None, "game.state": str(out)}))
    try:
        assert from_state.pyboy.memory[0xC000:0xC020] == from_start.pyboy.memory[0xC000:0xC020]
        assert np.array_equal(from_state.reset(), from_start.reset())
    finally:
        from_start.close()
        from_state.close()


def test_make_state_errors_exit_2(tmp_path):
    spec = tmp_path / "zelda.yaml"
    rom = tmp_path / "zelda.gb"
    rom.write_bytes(BUILTIN_ROMS["dungeon"].read_bytes())
    spec.write_text(
        f"name: z\ngame: {{rom: {rom}, adapter: generic, state: {tmp_path}/no.state}}\n"
    )
    result = CliRunner().invoke(main, ["make-state", str(spec), "--out", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "error: game.state: save state not found" in result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["ram-search", "builtin:cavern", "--steps", "20", "--format", "csv", "--out"],
        ["bench", "--quick", "--envs", "1", "--no-train-sweep", "--json"],
    ],
    ids=["ram-search", "bench"],
)
def test_an_output_file_whose_folder_cannot_exist_is_refused_before_the_work(tmp_path, command):
    """Found by probing: ram-search and bench wrote their file only at the end, and a missing
    folder was a FileNotFoundError traceback after the whole run. The folder is made at once
    (as play and make-state do), and one that cannot be is a usage error (exit 2)."""
    from click.testing import CliRunner

    from trainer.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(main, [*command, str(blocker / "out.txt")])
    assert result.exit_code == 2 and f"{blocker} is a file, not a folder" in result.output
    if command[0] == "ram-search":  # the bench is slow: its refusal is what matters here
        made = tmp_path / "new" / "deeper" / "out.csv"
        result = CliRunner().invoke(main, [*command, str(made)])
        assert result.exit_code == 0, result.output
        assert made.read_text().startswith("address")
