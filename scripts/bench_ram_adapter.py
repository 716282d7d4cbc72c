"""Per-step cost of a game adapter's work (read RAM, reward, episode ends) on a playing
emulator: the Python `dungeon` adapter beside `configs/dungeon-ram.yaml`, which declares the
same rewards on RAM (the ratio is ram / Python), then `configs/cavern.yaml` (no Python adapter
to compare with) and any other spec given.

    .venv/bin/python scripts/bench_ram_adapter.py [--steps 20000] [--rounds 5] [SPEC ...]

The adapter's calls are timed apart from the emulator's ticks between them (printed beside, for
the adapter's share of a step without observations or learning). The cases take
turns round by round, so a busy shared machine slows them alike; the median round is printed,
with the machine it ran on.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from trainer.bench.report import machine_description
from trainer.envs.env import make_env, press_and_tick
from trainer.spec import JobSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "dungeon (Python adapter)"
SAME_GAME = "dungeon-ram.yaml (adapter: ram)"  # the one case with a baseline: same game, terms


def adapter_microseconds(spec: JobSpec, steps: int, seed: int = 0) -> tuple[float, float]:
    """Microseconds per step of read + reward + terminated + truncated, and of the emulation
    (press and tick), random play; episodes end as in training (the adapter's ends or
    env.episode_length) and restart from the start."""
    env = make_env(spec)
    try:
        env.reset()
        adapter, pyboy = env.adapter, env.pyboy
        buttons = [None if a == "noop" else a for a in spec.env.actions]
        actions = np.random.default_rng(seed).integers(0, len(buttons), size=steps)
        before, spent, emulated, length = adapter.read(pyboy), 0.0, 0.0, 0
        for action in actions:
            start = time.perf_counter()
            press_and_tick(pyboy, buttons[action], spec.env.hold_frames, spec.env.frame_skip, False)
            emulated += time.perf_counter() - start
            start = time.perf_counter()
            after = adapter.read(pyboy)
            adapter.reward(before, after)
            ended = adapter.terminated(after) or adapter.truncated(after)
            spent += time.perf_counter() - start
            before, length = after, length + 1
            if ended or length >= spec.env.episode_length:
                env.reset()
                before, length = adapter.read(pyboy), 0
        return spent / steps * 1e6, emulated / steps * 1e6
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("specs", nargs="*", type=Path)
    args = parser.parse_args()
    ram = load_spec(ROOT / "configs" / "dungeon-ram.yaml", environ={})
    cases = {
        BASELINE: ram.updated({"game.adapter": "dungeon", "game.ram": None}),
        SAME_GAME: ram,
        "cavern.yaml (adapter: ram)": load_spec(ROOT / "configs" / "cavern.yaml", environ={}),
    }
    cases.update({str(path): load_spec(path, environ={}) for path in args.specs})
    rounds: dict[str, list[tuple[float, float]]] = {label: [] for label in cases}
    for seed in range(args.rounds):
        for label, spec in cases.items():
            rounds[label].append(adapter_microseconds(spec, args.steps, seed))
    print(
        f"Adapter work per step (read, reward, ends), {args.steps:,} steps of random play, "
        f"median of {args.rounds} rounds — {machine_description()}"
    )
    baseline = statistics.median(a for a, _ in rounds[BASELINE])
    for label, values in rounds.items():
        median = statistics.median(a for a, _ in values)
        emulation = statistics.median(e for _, e in values)
        ratio = f"  {median / baseline:5.2f}× the Python adapter" if label == SAME_GAME else ""
        print(
            f"  {label:<34} {median:7.2f} µs ({median / (median + emulation):5.1%} of a step "
            f"with its {emulation:6.1f} µs of emulation){ratio}"
        )


if __name__ == "__main__":
    main()
