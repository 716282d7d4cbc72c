"""The `ram` adapter on a real emulator: values decoded from bytes written into PyBoy's RAM, every
reward kind and episode end, the start of play, banked reads, and parity with the Python adapters
it can replace (`dungeon` over a long rollout, `zelda` on RAM images)."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_dungeon_rom import PATH
from test_zelda_adapter import FakePyBoy

from trainer.envs.env import import_pyboy, make_env
from trainer.games import BUILTIN_ROMS, GameError, make_adapter
from trainer.games import zelda as z
from trainer.spec import load_spec, validate_spec
from trainer.spec.game_ram import RamSpec
from trainer.spec.rom_header import header_checksum

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = 0xC800  # WRAM the dungeon never uses: free for bytes written by the tests


def boot(rom: bytes) -> Any:
    pyboy = import_pyboy()(io.BytesIO(rom), window="null", sound_emulated=False)
    pyboy.tick(240, False)
    return pyboy


@pytest.fixture(scope="module")
def pyboy():
    emulator = boot(BUILTIN_ROMS["dungeon"].read_bytes())
    yield emulator
    emulator.stop(save=False)


def ram_adapter(rewards: list[dict], done: list[dict] | None = None, **overrides: float):
    spec = RamSpec.model_validate({"rewards": rewards, "done": done or []})
    return make_adapter("ram", overrides, spec)


def write(pyboy, data: dict[int, int | list[int]]) -> None:
    for address, value in data.items():
        values = value if isinstance(value, list) else [value]
        pyboy.memory[address : address + len(values)] = values


def change(adapter, pyboy, before: dict, after: dict) -> tuple[Any, Any]:
    write(pyboy, before)
    first = adapter.read(pyboy)
    write(pyboy, after)
    return first, adapter.read(pyboy)


A, B = SCRATCH, SCRATCH + 0x10

# name, reading keys, bytes before, bytes after, the value decoded after (via a delta from 0)
DECODING = [
    ("byte", {}, [0], [200], 200),
    ("16-bit little endian", {"width": 2}, [0, 0], [0x34, 0x12], 0x1234),
    ("16-bit big endian", {"width": 2, "endian": "big"}, [0, 0], [0x12, 0x34], 0x1234),
    ("24-bit", {"width": 3}, [0, 0, 0], [1, 2, 3], 0x030201),
    ("32-bit big", {"width": 4, "endian": "big"}, [0] * 4, [0xDE, 0xAD, 0xBE, 0xEF], 0xDEADBEEF),
    ("BCD byte", {"encoding": "bcd"}, [0], [0x42], 42),
    ("BCD big endian (Zelda's rupees)", {"width": 2, "endian": "big", "encoding": "bcd"},
     [0, 0], [0x01, 0x23], 123),
    ("BCD little endian (cavern's score)", {"width": 2, "encoding": "bcd"}, [0, 0], [0x50, 0x12], 1250),
    ("mask", {"mask": "0x0F"}, [0], [0xF3], 3),
    ("mask before BCD", {"mask": 0x7F, "encoding": "bcd"}, [0], [0x99], 19),
]  # fmt: skip


@pytest.mark.parametrize("name, keys, before, after, value", DECODING, ids=[c[0] for c in DECODING])
def test_values_are_decoded_from_emulator_ram(pyboy, name, keys, before, after, value):
    adapter = ram_adapter([{"name": "v", "address": A, "kind": "delta", **keys}])
    first, second = change(adapter, pyboy, {A: before}, {A: after})
    assert adapter.reward_terms(first, second) == {"v": value}, name


# name, term, bytes before, bytes after, unweighted amount
KINDS = [
    ("delta up", {"kind": "delta"}, {A: 5}, {A: 8}, 3),
    ("delta down", {"kind": "delta"}, {A: 8}, {A: 5}, -3),
    ("increase up", {"kind": "increase"}, {A: 5}, {A: 8}, 3),
    ("increase ignores a fall", {"kind": "increase"}, {A: 8}, {A: 5}, 0),
    ("decrease", {"kind": "decrease"}, {A: 8}, {A: 5}, 3),
    ("decrease ignores a rise", {"kind": "decrease"}, {A: 5}, {A: 8}, 0),
    ("several addresses summed", {"kind": "increase", "address": None, "addresses": [A, B]},
     {A: 1, B: 1}, {A: 3, B: 4}, 5),
    ("bits", {"kind": "bits", "length": 2}, {A: [0b1, 0]}, {A: [0b111, 0b1000_0000]}, 3),
    ("bits under a mask", {"kind": "bits", "length": 2, "mask": 0x80}, {A: [0x80, 0]},
     {A: [0xFF, 0x8F]}, 1),
    ("bits cleared", {"kind": "bits"}, {A: 0b11}, {A: 0b01}, -1),
    ("equals: becomes", {"kind": "equals", "value": 3}, {A: 2}, {A: 3}, 1),
    ("equals: stays", {"kind": "equals", "value": 3}, {A: 3}, {A: 3}, 0),
    ("equals: leaves", {"kind": "equals", "value": 3}, {A: 3}, {A: 4}, 0),
    ("step", {"kind": "step", "address": None}, {}, {}, 1),
    ("when holds before and after", {"kind": "delta", "when": [{"address": B, "kind": "equals", "value": 1}]},
     {A: 1, B: 1}, {A: 4, B: 1}, 3),
    ("when fails after", {"kind": "delta", "when": [{"address": B, "kind": "equals", "value": 1}]},
     {A: 1, B: 1}, {A: 4, B: 2}, 0),
    ("equals when the condition starts to hold", {"kind": "equals", "value": 0,
     "when": [{"address": B, "kind": "greater_than", "value": 0}]}, {A: 0, B: 0}, {A: 0, B: 1}, 1),
]  # fmt: skip


@pytest.mark.parametrize("name, term, before, after, amount", KINDS, ids=[c[0] for c in KINDS])
def test_reward_kinds(pyboy, name, term, before, after, amount):
    adapter = ram_adapter([{"name": "t", "address": A, **term}])
    assert adapter.reward_terms(*change(adapter, pyboy, before, after)) == {"t": amount}, name


def test_distinct_counts_each_value_or_tuple_once_per_episode(pyboy):
    adapter = ram_adapter([{"name": "explore", "addresses": [A, B], "kind": "distinct"}])
    write(pyboy, {A: 1, B: 1})
    adapter.reset()
    states = [adapter.read(pyboy)]  # the start is seen
    for x, y in [(2, 1), (2, 1), (1, 1), (1, 2), (2, 2), (2, 1)]:
        write(pyboy, {A: x, B: y})
        states.append(adapter.read(pyboy))
    amounts = [
        adapter.reward_terms(a, b)["explore"] for a, b in zip(states, states[1:], strict=False)
    ]
    assert amounts == [1, 0, 0, 1, 1, 0]
    adapter.reset()  # a new episode has seen nothing
    write(pyboy, {A: 2, B: 2})
    start = adapter.read(pyboy)
    write(pyboy, {A: 1, B: 2})
    assert adapter.reward_terms(start, adapter.read(pyboy)) == {"explore": 1}


def test_weights_overrides_decrease_scale_and_episode_shares(pyboy):
    adapter = ram_adapter(
        [
            {"name": "score", "address": A, "kind": "delta", "scale": 2.0, "decrease_scale": 0.5},
            {"name": "lives", "address": B, "kind": "decrease", "scale": -1.0},
            {"name": "step", "kind": "step", "scale": -0.01},
        ],
        step=-0.1,  # game.reward overrides a scale
    )
    adapter.reset()
    up = change(adapter, pyboy, {A: 5, B: 3}, {A: 8, B: 2})
    assert adapter.reward(*up) == pytest.approx(2.0 * 3 - 1.0 - 0.1)
    down = change(adapter, pyboy, {A: 8, B: 2}, {A: 6, B: 2})
    assert adapter.reward(*down) == pytest.approx(-0.5 * 2 - 0.1)
    stats = adapter.episode_stats(down[1])
    assert stats == pytest.approx({"score": 5.0, "lives": -1.0, "step": -0.2})
    adapter.reset()
    assert adapter.episode_stats(down[1]) == {"score": 0.0, "lives": 0.0, "step": 0.0}


def test_episode_ends_and_truncations(pyboy):
    adapter = ram_adapter(
        [{"name": "step", "kind": "step"}],
        done=[
            {"name": "over", "address": A, "kind": "equals", "value": 2},
            {"name": "broke", "address": B, "kind": "less_than", "value": 1,
             "when": [{"address": A, "kind": "not_equals", "value": 0}]},
            {"name": "rich", "address": B, "width": 2, "kind": "greater_than", "value": 999,
             "truncate": True},
        ],
    )  # fmt: skip
    cases = [  # bytes → (terminated, truncated, which held)
        ({A: 1, B: [5, 0]}, (False, False, [])),
        ({A: 2, B: [5, 0]}, (True, False, ["over"])),
        ({A: 1, B: [0, 0]}, (True, False, ["broke"])),
        ({A: 0, B: [0, 0]}, (False, False, [])),  # `when` does not hold
        ({A: 1, B: [0xE8, 0x03]}, (False, True, ["rich"])),  # 1000, little endian
    ]
    for data, (terminated, truncated, held) in cases:
        write(pyboy, data)
        state = adapter.read(pyboy)
        assert (adapter.terminated(state), adapter.truncated(state)) == (terminated, truncated)
        stats = adapter.episode_stats(state)
        assert [
            k.removeprefix("done/") for k, v in stats.items() if k.startswith("done/") and v
        ] == held


def dungeon_ram_spec(**changes: Any):
    return load_spec(ROOT / "configs" / "dungeon-ram.yaml", environ={}).updated(changes)


def env_action(spec, key: str) -> int:
    return spec.env.actions.index({"U": "up", "D": "down", "L": "left", "R": "right"}[key])


def test_parity_with_the_dungeon_adapter_over_a_long_rollout():
    """configs/dungeon-ram.yaml and the Python `dungeon` adapter, stepped with the same actions:
    the scripted winning walk (every term fires, the win ends the episode), then 3,000 random
    steps. Same reward, same ends, same observations, at every step."""
    ram = dungeon_ram_spec(**{"env.episode_length": 500})
    python = ram.updated({"game.adapter": "dungeon", "game.ram": None})
    envs = [make_env(python), make_env(ram)]
    rng = np.random.default_rng(0)
    scripted = [env_action(ram, key) for key in PATH]
    actions = scripted + [int(a) for a in rng.integers(0, len(ram.env.actions), size=3000)]
    try:
        for env in envs:
            env.reset()
        for t, action in enumerate(actions):
            (obs_a, rew_a, term_a, trunc_a, info_a), (obs_b, rew_b, term_b, trunc_b, info_b) = (
                env.step(action) for env in envs
            )
            assert rew_a == pytest.approx(rew_b, abs=1e-9), f"step {t}"
            assert (term_a, trunc_a) == (term_b, trunc_b), f"step {t}"
            assert np.array_equal(obs_a, obs_b), f"step {t}"
            if term_a or trunc_a:
                assert info_a["episode_return"] == pytest.approx(info_b["episode_return"])
                shares = sum(info_b[name] for name in ram.game.ram.term_names())
                assert shares == pytest.approx(info_b["episode_return"])
                if t == len(PATH) - 1:  # the scripted walk ends with the win
                    assert term_b and info_b["done/won"] == 1.0
                    assert {k for k in ram.game.ram.term_names() if info_b[k]} == {
                        "coin", "key", "door", "room", "win", "step",
                    }  # fmt: skip
                for env in envs:
                    env.reset()
    finally:
        for env in envs:
            env.close()


def test_a_truncating_end_cuts_the_episode_without_ending_it():
    spec = dungeon_ram_spec()
    ram = spec.game.ram.model_dump(mode="json")
    ram["done"].append({"name": "first_coin", "address": "0xC006", "kind": "greater_than",
                        "value": 0, "truncate": True})  # fmt: skip
    spec = spec.updated({"game.ram": ram})
    env = make_env(spec)
    try:
        env.reset()
        first = env.step(env_action(spec, "R"))
        second = env.step(env_action(spec, "R"))  # the first coin is two moves right
        assert first[2:4] == (False, False)
        assert second[2:4] == (False, True)
        assert second[4]["done/first_coin"] == 1.0 and second[4]["coin"] == 1.0
    finally:
        env.close()


def test_start_buttons_and_until_reach_the_same_start_as_the_python_adapter():
    """`until` (the dungeon's "playing" mode) stops where the Python adapter's boot stops;
    `buttons` first play presses and waits."""
    python = make_env(dungeon_ram_spec(**{"game.adapter": "dungeon", "game.ram": None}))
    ram = make_env(dungeon_ram_spec())
    try:
        assert python.pyboy.frame_count == ram.pyboy.frame_count
        assert python.pyboy.memory[0xC000:0xC020] == ram.pyboy.memory[0xC000:0xC020]
    finally:
        python.close()
        ram.close()
    spec = dungeon_ram_spec()
    start = spec.game.ram.start.model_dump(mode="json")
    start["buttons"] = [{"wait": 100}, "right", {"press": "right", "frames": 2}, {"wait": 10}]
    env = make_env(spec.updated({"game.ram.start": start}))
    try:  # both presses came after "playing" began: two moves right, the first coin taken
        assert env.pyboy.memory[0xC004] == 5 and env.pyboy.memory[0xC006] == 1
    finally:
        env.close()


def test_start_errors_name_the_key():
    spec = dungeon_ram_spec()
    start = spec.game.ram.start.model_dump(mode="json")
    start["until"][2]["value"] = 2  # mode "won": never at power-on
    start["max_frames"] = 300
    with pytest.raises(GameError, match=r"game.ram.start.until: not reached within 300 frames"):
        make_env(spec.updated({"game.ram.start": start}))
    done = [{"name": "instant", "address": "0xC002", "kind": "equals", "value": 1}]
    ram = {**spec.game.ram.model_dump(mode="json"), "done": done}
    with pytest.raises(
        GameError, match=r"the start state already ends the episode \(game.ram.done.0"
    ):
        make_env(spec.updated({"game.ram": ram}))


def patched_rom(tmp_path: Path) -> Path:
    """The dungeon ROM with a header saying Game Boy Color, MBC5 with 4 banks of cartridge RAM
    (Pan Docs, The Cartridge Header: 0143 CGB flag, 0147 type 0x1B, 0149 RAM size 0x03)."""
    rom = bytearray(BUILTIN_ROMS["dungeon"].read_bytes())
    rom[0x143], rom[0x147], rom[0x149] = 0x80, 0x1B, 0x03
    rom[0x14D] = header_checksum(bytes(rom))
    path = tmp_path / "banked.gb"
    path.write_bytes(bytes(rom))
    return path


def test_banked_reads_cartridge_ram_and_cgb_work_ram(tmp_path):
    rom = patched_rom(tmp_path)
    pyboy = boot(rom.read_bytes())
    try:
        adapter = ram_adapter(
            [
                {"name": "sram", "address": "0xA010", "bank": 2, "kind": "delta"},
                # The last bytes of WRAM bank 3: PyBoy refuses a banked slice to the region's end.
                {"name": "wram", "address": "0xDFFE", "bank": 3, "width": 2, "kind": "delta"},
                {"name": "mapped", "address": "0xD010", "kind": "delta"},
            ]
        )
        adapter.configure(pyboy)
        before = adapter.read(pyboy)
        pyboy.memory[2, 0xA010] = 7
        pyboy.memory[1, 0xA010] = 99  # another bank: not read
        pyboy.memory[3, 0xDFFE], pyboy.memory[3, 0xDFFF] = 0x34, 0x12
        pyboy.memory[5, 0xD010] = 9  # bank 5 is not the one mapped at 0xD010
        terms = adapter.reward_terms(before, adapter.read(pyboy))
        assert terms == {"sram": 7, "wram": 0x1234, "mapped": 0}
    finally:
        pyboy.stop(save=False)
    # A banked WRAM address on a Game Boy (not Color) game: a clear error before training.
    spec = dungeon_ram_spec().model_dump(mode="json")
    spec["game"]["ram"]["rewards"].append(
        {"name": "banked", "address": "0xD000", "bank": 2, "kind": "delta"}
    )
    with pytest.raises(GameError, match="game.ram: a banked address cannot be read on this ROM"):
        make_env(validate_spec(spec))


# ---- Link's Awakening: the same rewards as the Python adapter, on RAM images ------------------
ZELDA_FIELDS = {  # address → values a random image takes
    z.GAMEPLAY_TYPE: [z.GAMEPLAY_WORLD, z.GAMEPLAY_WORLD, z.GAMEPLAY_WORLD, 0x02],
    z.HEALTH: [0, 0, 4, 8, 16, 24, 23],
    z.MAX_HEALTH: [0, 3, 3, 3, 4],
    z.HEART_PIECES: [0, 1, 2, 3],
    z.RUPEES_HIGH: [0x00, 0x00, 0x01, 0x09],
    z.RUPEES_LOW: [0x00, 0x05, 0x23, 0x99, 0x50],
    z.SWORD_LEVEL: [0, 1, 2],
    z.SECRET_SHELLS: [0, 1, 2, 5],
    z.GOLDEN_LEAVES: [0, 1],
}


def zelda_images(count: int, seed: int):
    """Random RAM images: each changes a few fields (and overworld room flags) of the last."""
    rng = random.Random(seed)
    pyboy = FakePyBoy()
    for _ in range(count):
        for address in rng.sample(sorted(ZELDA_FIELDS), k=rng.randint(1, 3)):
            pyboy.memory[address] = rng.choice(ZELDA_FIELDS[address])
        room = z.OVERWORLD_ROOMS + rng.randrange(256)
        pyboy.memory[room] = rng.choice([0x00, 0x10, 0x80, 0x90, 0xFF])
        yield pyboy


def test_zelda_ram_config_gives_the_python_adapters_rewards_on_ram_images():
    spec = load_spec(ROOT / "configs" / "zelda-ram.yaml", environ={})
    assert make_adapter("ram", {}, spec.game.ram).weights == make_adapter("zelda").weights
    hurry = {"step": -0.01}  # the step term weighs 0 by default: make it count here
    ram, python = make_adapter("ram", hurry, spec.game.ram), make_adapter("zelda", hurry)
    pyboy = FakePyBoy()
    before_ram, before_py = ram.read(pyboy), python.read(pyboy)
    checked = {name: 0 for name in python.weights}
    for images in (zelda_images(2000, seed=1), zelda_images(2000, seed=2)):
        for image in images:
            after_ram, after_py = ram.read(image), python.read(image)
            want = python.reward_shares(before_py, after_py)
            assert ram.reward_shares(before_ram, after_ram) == pytest.approx(want)
            assert ram.reward(before_ram, after_ram) == pytest.approx(sum(want.values()))
            assert ram.terminated(after_ram) == python.terminated(after_py)
            for name, amount in want.items():
                checked[name] += bool(amount)
            checked["terminated"] = checked.get("terminated", 0) + python.terminated(after_py)
            before_ram, before_py = after_ram, after_py
    assert all(checked.values()), f"every term fired on some image: {checked}"


@pytest.mark.slow
def test_each_terms_episode_sum_is_logged_to_mlflow(tmp_path, mlflow_server):
    """A short run of configs/cavern.yaml against a real MLflow server: each reward term's sum
    over an episode is `episode/<term>` at the episode's last step, the terms add up to the
    episode's return, and `episode/done/<name>` says which end held."""
    from mlflow.tracking import MlflowClient

    from trainer.rl.console import Console
    from trainer.rl.train import train

    spec = load_spec(ROOT / "configs" / "cavern.yaml", environ={}).updated(
        {
            # Two envs truncated together: same steps, often the same values (MLflow would keep
            # one point of two identical ones logged in the same millisecond).
            "env.num_envs": 2,
            "env.episode_length": 96,
            "ppo.total_steps": 1280,
            "ppo.rollout_steps": 64,
            "ppo.batch_size": 64,
            "checkpoint.dir": str(tmp_path / "runs"),
            "mlflow.tracking_uri": mlflow_server,
            "mlflow.experiment": "ram-terms",
            "mlflow.log_model": False,
            "checkpoint.video": False,
        }
    )
    summary = train(spec, console=Console(io.StringIO()))
    client = MlflowClient(mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name("ram-terms").experiment_id])

    def per_step(key: str) -> dict[int, list[float]]:
        points: dict[int, list[float]] = {}
        for m in client.get_metric_history(run.info.run_id, key):
            points.setdefault(m.step, []).append(m.value)
        return points

    returns = per_step("charts/episodic_return")
    assert sum(map(len, returns.values())) == len(summary.returns) >= 10
    assert max(map(len, returns.values())) == 2, "both envs ended at some step"
    terms = {name: per_step(f"episode/{name}") for name in spec.game.ram.term_names()}
    assert set(terms) == {"score", "explore", "lives"}
    for name, points in [*terms.items(), ("done/game_over", per_step("episode/done/game_over"))]:
        counts = {s: len(v) for s, v in points.items()}
        assert counts == {s: len(v) for s, v in returns.items()}, name
    for step, rets in returns.items():
        total = sum(sum(t[step]) for t in terms.values())
        assert total == pytest.approx(sum(rets), abs=1e-6), step
    assert any(v > 0 for values in terms["explore"].values() for v in values)
