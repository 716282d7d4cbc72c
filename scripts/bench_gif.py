"""Writing the end-of-training video: our GIF writer beside the one it replaced, on the same
recorded episode of each built-in game, rounds alternating in one process.

    .venv/bin/python scripts/bench_gif.py [--rounds 3] [--steps N]

Each game's episode is played once by a fresh policy (`record_episode`, as the loop does at
the end of training; `--steps` caps its length), then written both ways:
- `quantized` (before): the RGB frames scaled up and handed to Pillow, which quantizes every
  frame to a palette of its own (median cut);
- `palette` (`trainer.rl.evaluate.write_gif`): the frames mapped to one shared palette with
  numpy, exactly (a DMG game has 4 shades), and written as palette images.
Both files are decoded again and must show the same pixels. Figures: milliseconds per GIF
(median of the rounds), the speed-up, and the file sizes.

Measured (AMD EPYC, 2 CPUs; 751-frame episodes, one run): dungeon 2,296 → 292 ms per GIF (7.86×),
cavern 3,106 → 682 ms (4.55×); the files are the same size.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trainer.bench.report import machine_description
from trainer.bench.run import SEED_TRAIN_20K, peer_games
from trainer.envs.env import make_env
from trainer.rl.evaluate import GAME_BOY_FPS, Recording, record_episode, write_gif
from trainer.rl.setup import build_agent
from trainer.spec import JobSpec, validate_spec


def write_gif_quantized(recording: Recording, path: Path, scale: int = 2) -> Path:
    """The writer before: RGB frames, quantized by Pillow one by one when it saves."""
    delay_ms = max(20, int(round(1000 * recording.frame_skip / GAME_BOY_FPS / 10)) * 10)
    images = [
        Image.fromarray(frame).resize(
            (frame.shape[1] * scale, frame.shape[0] * scale), Image.Resampling.NEAREST
        )
        for frame in recording.frames
    ]
    images[0].save(path, save_all=True, append_images=images[1:], duration=delay_ms, loop=0)
    return path


def decoded(path: Path) -> list[np.ndarray]:
    """Every frame of the GIF at `path` as RGB."""
    with Image.open(path) as gif:
        frames = []
        for index in range(gif.n_frames):
            gif.seek(index)
            frames.append(np.asarray(gif.convert("RGB")))
    return frames


def recorded(spec: JobSpec, steps: int | None) -> Recording:
    """One episode of `spec`'s game by a fresh policy, as the loop records it."""
    probe = make_env(spec)
    shape, actions = probe.observation_shape, probe.num_actions
    probe.close()
    torch.manual_seed(spec.seed)
    agent = build_agent(spec, shape, actions, torch.device("cpu"))
    if steps is not None:
        spec = spec.updated({"env.episode_length": steps})
    return record_episode(spec, agent, torch.device("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="cap each episode's length")
    args = parser.parse_args()
    print(machine_description())
    writers = {"quantized": write_gif_quantized, "palette": write_gif}
    base = validate_spec(SEED_TRAIN_20K)
    with tempfile.TemporaryDirectory() as tmp:
        for game, section in peer_games().items():
            recording = recorded(base.updated({"game": section}), args.steps)
            seconds: dict[str, list[float]] = {name: [] for name in writers}
            paths = {name: Path(tmp) / f"{name}.gif" for name in writers}
            for _ in range(args.rounds):
                for name, write in writers.items():
                    start = time.perf_counter()
                    write(recording, paths[name])
                    seconds[name].append(time.perf_counter() - start)
            before, after = (decoded(paths[name]) for name in writers)
            same = len(before) == len(after) and all(map(np.array_equal, before, after))
            if not same:
                raise SystemExit(f"{game}: the two GIFs differ")
            base_ms = statistics.median(seconds["quantized"]) * 1e3
            for name in writers:
                ms = statistics.median(seconds[name]) * 1e3
                size = paths[name].stat().st_size
                print(
                    f"{game:<16} {name:<10} {len(recording.frames):>5} frames {ms:>9.1f} ms "
                    f"{size / 1024:>8.0f} KiB {base_ms / ms:>6.2f}×"
                )


if __name__ == "__main__":
    main()
