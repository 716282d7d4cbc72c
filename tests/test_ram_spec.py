"""`game.ram` and the game settings every adapter shares, checked at `trainer validate` time:
bad input exits 2 with one line naming the file, the line and the key, and nothing starts."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from trainer.cli import main
from trainer.games import ADAPTERS
from trainer.spec import load_spec, spec_document, validate_spec
from trainer.spec.adapters import ADAPTER_TERMS

ROOT = Path(__file__).resolve().parents[1]

# The issue's example (lines 1–14), with the ROM replaced by the built-in one.
GOOD = """\
name: mygame
game:
  rom: builtin:dungeon
  adapter: ram
  ram:
    rewards:
      - {name: score, address: "0xC0A0", width: 1, kind: delta, scale: 1.0}
      - {name: explore, addresses: ["0xD35E", "0xD361", "0xD362"], kind: distinct, scale: 0.05}
      - {name: badges, address: "0xD356", kind: bits, scale: 5.0}
    done:
      - {name: dead, address: "0xD16C", width: 2, kind: equals, value: 0}
    start:
      buttons: [{wait: 120}, start, {wait: 60}, a, {wait: 30}]
  reward: {score: 2.0}
"""


def variant(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


# name, spec text, the one expected error line's parts (file:line, key, what is wrong)
BAD_RAM = [
    ("address in ROM", variant('"0xC0A0"', '"0x4000"'),
     [":7:", "game.ram.rewards.0.address: must be a RAM address in 0x8000–0xFFFF", "'0x4000'"]),
    ("address as int in ROM", variant('"0xC0A0"', "16384"),
     [":7:", "game.ram.rewards.0.address", "(got 16384)"]),
    ("address not a number", variant('"0xC0A0"', '"C0A0h"'),
     [":7:", "game.ram.rewards.0.address: must be an integer or a hex string"]),
    ("one of addresses bad", variant('"0xD361"', '"0x0100"'),
     [":8:", "game.ram.rewards.1.addresses.1: must be a RAM address"]),
    ("width too large", variant("width: 1,", "width: 5,"),
     [":7:", "game.ram.rewards.0.width: must be ≤ 4 (got 5)"]),
    ("width past the bus", variant('"0xD16C", width: 2', '"0xFFFF", width: 2'),
     [":11:", "game.ram.done.0.address: 0xFFFF + 2 byte(s) runs past 0xFFFF"]),
    ("bits length past the bus", variant('"0xD356", kind: bits', '"0xFF00", length: 512, kind: bits'),
     [":9:", "game.ram.rewards.2.address: 0xFF00 + 512 byte(s) runs past 0xFFFF"]),
    ("unknown kind", variant("kind: bits", "kind: bitz"),
     [":9:", "game.ram.rewards.2.kind: must be 'delta', 'increase', 'decrease', 'bits'", "'bitz'"]),
    ("unknown done kind", variant("kind: equals", "kind: at_least"),
     [":11:", "game.ram.done.0.kind", "'equals', 'not_equals', 'less_than' or 'greater_than'"]),
    ("duplicate reward names", variant("name: badges", "name: score"),
     [":9:", "game.ram.rewards.2.name: 'score' is used twice (also rewards.0)"]),
    ("reserved name", variant("name: badges", "name: episode_return"),
     [":9:", "game.ram.rewards.2.name: 'episode_return' is reserved"]),
    ("bad name", variant("name: badges", "name: 2badges"),
     [":9:", "game.ram.rewards.2.name: must be a name of at most 40 letters, digits and"]),
    ("unknown key in a term", variant("kind: delta, scale", "kind: delta, scael"),
     [":7:", "game.ram.rewards.0.scael: unknown key (did you mean 'scale'?)"]),
    ("unknown key in done", variant("value: 0}", "value: 0, truncat: true}"),
     [":11:", "game.ram.done.0.truncat: unknown key (did you mean 'truncate'?)"]),
    ("unknown key in ram", variant("    done:", "    dones: []\n    done:"),
     [":10:", "game.ram.dones: unknown key (did you mean 'done'?); allowed here: rewards, done, start"]),
    ("field of another kind", variant("kind: delta, scale", "kind: increase, decrease_scale: 2, scale"),
     [":7:", "game.ram.rewards.0.decrease_scale: does not apply to kind 'increase'"]),
    ("equals without value", variant("kind: bits", "kind: equals"),
     [":9:", "game.ram.rewards.2.value: is required for kind 'equals'"]),
    ("value out of range", variant("value: 0}", "value: 70000}"),
     [":11:", "game.ram.done.0.value: 70000 can never be read from 2 byte(s) of binary (0–65535)"]),
    ("no address", variant('address: "0xD356", kind: bits', "kind: bits"),
     [":9:", "game.ram.rewards.2.address: is required (or addresses, a list)"]),
    ("address and addresses", variant('addresses: ["0xD35E"', 'address: "0xC000", addresses: ["0xD35E"'),
     [":8:", "game.ram.rewards.1.address: and addresses are both given: keep one"]),
    ("step with an address", variant("kind: bits", "kind: step"),
     [":9:", "game.ram.rewards.2.address: does not apply: kind 'step' reads no RAM"]),
    ("bank outside banked RAM", variant('"0xC0A0", width: 1,', '"0xC0A0", width: 1, bank: 2,'),
     [":7:", "game.ram.rewards.0.bank: applies only to cartridge RAM (0xA000–0xBFFF) and CGB work RAM"]),
    ("WRAM bank 0", variant('"0xD16C", width: 2,', '"0xD16C", width: 2, bank: 0,'),
     [":11:", "game.ram.done.0.bank: 0 does not exist in WRAM (0xD000–0xDFFF: banks 1–7)"]),
    ("mask not a byte", variant("kind: bits, scale", 'kind: bits, mask: "0x100", scale'),
     [":9:", "game.ram.rewards.2.mask: must be a byte"]),
    ("bad endian", variant("width: 2,", "width: 2, endian: middle,"),
     [":11:", "game.ram.done.0.endian: must be 'little' or 'big'"]),
    ("bad encoding", variant("width: 2,", "width: 2, encoding: ascii,"),
     [":11:", "game.ram.done.0.encoding: must be 'binary' or 'bcd'"]),
    ("unknown button", variant(", a, ", ", jump, "),
     [":13:", "game.ram.start.buttons.3.press: must be 'up', 'down'", "'jump'"]),
    ("wait of zero", variant("{wait: 60}", "{wait: 0}"),
     [":13:", "game.ram.start.buttons.2.wait: must be ≥ 1"]),
    ("start step both", variant("{wait: 60}", "{wait: 60, press: a}"),
     [":13:", "game.ram.start.buttons.2: give a button name"]),
    ("empty start", variant("buttons: [{wait: 120}, start, {wait: 60}, a, {wait: 30}]", "max_frames: 10"),
     [":12:", "game.ram.start: needs buttons or until"]),
    ("no rewards", "name: x\ngame:\n  adapter: ram\n  ram:\n    rewards: []\n",
     [":5:", "game.ram.rewards: needs at least 1 item (got [])"]),
    ("unknown reward term", variant("reward: {score: 2.0}", "reward: {scor: 2.0}"),
     [":14:", "game.reward.scor: names no reward term of adapter 'ram' (its terms: score, explore, badges)"]),
    ("ram without adapter ram", variant("adapter: ram", "adapter: generic"),
     [":5:", "game.ram: applies only to adapter: ram (this spec uses adapter: generic)"]),
    ("state and start", variant("  reward:", "  state: /tmp/x.state\n  reward:"),
     [":14:", "game.state: conflicts with ram.start"]),
    ("address past the bus", variant('"0xC0A0"', '"0x10000"'),
     [":7:", "game.ram.rewards.0.address: must be a RAM address in 0x8000–0xFFFF"]),
    ("negative address", variant('"0xC0A0"', "-1"),
     [":7:", "game.ram.rewards.0.address: must be a RAM address", "(got -1)"]),
    ("address true", variant('"0xC0A0"', "true"),
     [":7:", "game.ram.rewards.0.address: must be a number, not true/false"]),
    ("width zero", variant("width: 1,", "width: 0,"),
     [":7:", "game.ram.rewards.0.width: must be ≥ 1 (got 0)"]),
    ("width on bits", variant("kind: bits", "width: 2, kind: bits"),
     [":9:", "game.ram.rewards.2.width: does not apply to kind 'bits': give length"]),
    ("length on delta", variant("width: 1, kind: delta", "width: 1, length: 4, kind: delta"),
     [":7:", "game.ram.rewards.0.length: does not apply to kind 'delta'"]),
    ("duplicate done names", variant("    start:", "      - {name: dead, address: \"0xC000\", kind: equals, value: 1}\n    start:"),
     [":12:", "game.ram.done.1.name: 'dead' is used twice (also done.0)"]),
    ("bad when address", variant("value: 0}", 'value: 0, when: [{address: "0x0150", kind: equals, value: 1}]}'),
     [":11:", "game.ram.done.0.when.0.address: must be a RAM address"]),
    ("bad until kind", variant("buttons: [{wait: 120}, start, {wait: 60}, a, {wait: 30}]", 'until: [{address: "0xC000", kind: is, value: 1}]'),
     [":13:", "game.ram.start.until.0.kind: must be 'equals'", "'is'"]),
    ("truncate not a bool", variant("value: 0}", "value: 0, truncate: maybe}"),
     [":11:", "game.ram.done.0.truncate: must be a valid boolean", "(got 'maybe')"]),
    ("ram not a mapping", "name: x\ngame:\n  adapter: ram\n  ram: [score]\n",
     [":4:", "game.ram: must be a valid dictionary", '(got ["score"])']),
    ("rewards not a list", "name: x\ngame:\n  adapter: ram\n  ram:\n    rewards: {name: score}\n",
     [":5:", "game.ram.rewards: must be a valid list"]),
    ("ram for a Python adapter", variant("adapter: ram", "adapter: dungeon"),
     [":5:", "game.ram: applies only to adapter: ram (this spec uses adapter: dungeon)"]),
]  # fmt: skip

BAD_GAME = [
    ("unknown adapter", "name: x\ngame:\n  adapter: metroid\n",
     [":3:", "game.adapter: must be one of dungeon, generic, ram, zelda (got 'metroid')"]),
    ("adapter ram without ram", "name: x\ngame:\n  adapter: ram\n",
     [":2:", "game.ram: is required with adapter: ram"]),
    ("unknown term of a Python adapter", "name: x\ngame:\n  reward:\n    coins: 1\n",
     [":4:", "game.reward.coins: names no reward term of adapter 'dungeon' (its terms: coin, key"]),
]  # fmt: skip


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize(
    "name, text, expected", BAD_RAM + BAD_GAME, ids=[c[0] for c in BAD_RAM + BAD_GAME]
)
def test_bad_game_input_exits_2_with_one_line_naming_the_key(tmp_path, name, text, expected):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1 and lines[0] == result.output.strip(), result.output
    assert lines[0].startswith(f"error: {path}:"), lines[0]
    for part in expected:
        assert part in lines[0], f"{name}: {part!r} not in {lines[0]!r}"


CASES = {case[0]: case for case in BAD_RAM + BAD_GAME}


@pytest.mark.parametrize("command", [["render"], ["launch", "--backend", "local"], ["run"]])
@pytest.mark.parametrize("case", ["address in ROM", "ram for a Python adapter", "unknown adapter"])
def test_bad_game_input_starts_nothing(tmp_path, monkeypatch, command, case):
    """`render` prints no manifest, `launch` starts no process, `run` makes no checkpoint dir."""
    _, text, expected = CASES[case]
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "spec.yaml"
    path.write_text(text + "checkpoint: {dir: runs}\nmlflow: {enabled: false}\n")
    result = CliRunner().invoke(main, [command[0], str(path), *command[1:]])
    assert result.exit_code == 2, result.output
    assert error_lines(result.output) == [result.output.strip()]
    assert expected[1] in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_the_issue_example_validates_and_round_trips():
    """What `trainer validate` prints (and the pod receives, as the ConfigMap's JSON) is a spec
    that validates to the same thing: defaults filled in never count as "given"."""
    spec = validate_spec(yaml.safe_load(GOOD))
    ram = spec.game.ram
    assert ram.rewards[0].address == 0xC0A0 and ram.rewards[1].addresses == [0xD35E, 0xD361, 0xD362]
    assert [s.press or s.wait for s in ram.start.buttons] == [120, "start", 60, "a", 30]
    assert spec.model_dump(mode="json")["game"]["ram"]["rewards"][0]["address"] == "0xC0A0"
    assert validate_spec(yaml.safe_load(spec_document(spec))) == spec
    assert validate_spec(yaml.safe_load(spec.to_yaml())) == spec


@pytest.mark.parametrize("config", ["dungeon-ram.yaml", "zelda-ram.yaml", "cavern.yaml"])
def test_ram_configs_round_trip(config):
    spec = load_spec(ROOT / "configs" / config, environ={})
    assert validate_spec(yaml.safe_load(spec_document(spec))) == spec


def test_adapter_table_matches_the_games_package():
    """spec/ cannot import games/ (layers), so it keeps the adapters' term names: in sync."""
    assert set(ADAPTER_TERMS) == set(ADAPTERS)
    for name, target in ADAPTERS.items():
        module, cls = target.split(":")
        weights = getattr(importlib.import_module(module), cls).reward_weights
        if ADAPTER_TERMS[name] is None:  # `ram`: the terms are the spec's
            assert name == "ram" and weights == {}
        else:
            assert tuple(weights) == ADAPTER_TERMS[name], name
