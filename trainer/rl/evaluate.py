"""The agent on video: one evaluation episode of a policy, recorded from the emulator's screen.

Runs its own emulator in this process (the training pool is left alone), renders every step's
last frame, and writes an animated GIF (Pillow; the DMG's four grays compress well, and MLflow's
artifact view shows GIFs inline). Used at checkpoints by the loop and by `trainer play`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from trainer.envs.env import GameBoyEnv
from trainer.errors import InvalidInput, read_input_file
from trainer.rl.ppo import Agent
from trainer.rl.rollout import obs_to_tensor
from trainer.spec import JobSpec

#: Game Boy frames per second (59.73 Hz, Pan Docs "LCD timing"), for real-time playback.
GAME_BOY_FPS = 59.73


@dataclass
class Recording:
    """One episode: the screen after each step (RGB, (144, 160, 3)), its return and length."""

    frames: list[np.ndarray] = field(default_factory=list)
    ret: float = 0.0
    length: int = 0
    ended: str = "running"  # "terminated" | "truncated" | "stopped"
    frame_skip: int = 4

    def file_name(self, step: int) -> str:
        return f"step_{step:09d}_return_{self.ret:+.2f}.gif"


def record_episode(
    spec: JobSpec, agent: Agent, device: torch.device, *, seed: int = 0
) -> Recording:
    """One evaluation episode of `agent` in an emulator of its own (the training pool is left
    alone), recorded: what the loop logs at checkpoints."""
    env = GameBoyEnv(spec, render_screen=True)
    try:
        return play_episode(env, agent, device, seed=seed)
    finally:
        env.close()


@torch.inference_mode()
def play_episode(
    env: GameBoyEnv,
    agent: Agent,
    device: torch.device,
    *,
    seed: int = 0,
    greedy: bool = False,
    max_steps: int | None = None,
) -> Recording:
    """Play one episode of `env` (built with `render_screen=True`) with `agent`: actions sampled
    from a seeded generator, or the most likely action with `greedy`. The episode ends as in
    training (termination or `env.episode_length`), or after `max_steps`."""
    sampler = torch.Generator(device=device).manual_seed(seed)
    recording = Recording(frames=[env.start_screen], frame_skip=env.frame_skip)
    obs = env.reset()
    for _ in range(max_steps or env.episode_length):
        batch = obs_to_tensor(obs[None]).to(device)
        if greedy:
            action = int(agent.greedy_action(batch))
        else:
            action = int(agent.get_action_and_value(batch, generator=sampler)[0])
        obs, reward, terminated, truncated, _ = env.step(action)
        recording.frames.append(env.screen_rgb())
        recording.ret += float(reward)
        recording.length += 1
        if terminated or truncated:
            recording.ended = "terminated" if terminated else "truncated"
            break
    else:
        recording.ended = "stopped"
    return recording


def write_gif(recording: Recording, path: Path, scale: int = 2) -> Path:
    """The frames as an animated GIF at the game's real speed (one frame per env step), scaled
    up `scale`× with nearest-neighbour so the pixels stay sharp. Frames with at most 256 colours
    in all (every DMG game: 4 shades) are written exactly, through one shared palette; more (a
    Color game's changing palettes) are quantized by Pillow frame by frame."""
    from PIL import Image

    # GIF delays are in 10 ms units: round to the nearest that keeps real-time speed.
    delay_ms = max(20, int(round(1000 * recording.frame_skip / GAME_BOY_FPS / 10)) * 10)
    indexed = palette_frames(recording.frames)
    if indexed is not None:
        indices, palette = indexed
        images = [Image.fromarray(frame, "P") for frame in indices]
        for image in images:
            image.putpalette(palette)
    else:
        images = [Image.fromarray(frame) for frame in recording.frames]
    size = (images[0].width * scale, images[0].height * scale)
    images = [image.resize(size, Image.Resampling.NEAREST) for image in images]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=delay_ms, loop=0)
    return path


def palette_frames(frames: list[np.ndarray]) -> tuple[list[np.ndarray], bytes] | None:
    """RGB frames (H, W, 3) → (palette indices (H, W) uint8 per frame, the RGB palette), exact;
    None when they hold more than 256 colours. Saves Pillow's per-frame quantizing (median cut):
    the end-of-training GIF of a 750-step episode took 2.3 s, now 0.29 s (`scripts/bench_gif.py`,
    the dungeon; 7.9× there, 4.6× on the scrolling cavern)."""
    lookup = np.full(1 << 24, -1, dtype=np.int16)  # packed 0xRRGGBB → palette index
    colors: list[int] = []
    indices = []
    for frame in frames:
        rgb = frame.astype(np.int32)
        packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        index = lookup[packed]
        if (index < 0).any():
            new = np.unique(packed[index < 0])
            if len(colors) + len(new) > 256:
                return None
            lookup[new] = np.arange(len(colors), len(colors) + len(new))
            colors.extend(int(c) for c in new)
            index = lookup[packed]
        indices.append(index.astype(np.uint8))
    palette = bytes(b for c in colors for b in ((c >> 16) & 255, (c >> 8) & 255, c & 255))
    return indices, palette


def open_checkpoint(path: Path) -> tuple[dict, JobSpec]:
    """A checkpoint file to replay, and the spec it was trained with; `InvalidInput` naming
    `path` when it is no checkpoint of `trainer run` (damaged, or another program's file)."""
    from trainer.tracking.checkpoints import CheckpointStore, CorruptCheckpoint

    data = read_input_file(path, "CHECKPOINT")
    try:
        checkpoint = CheckpointStore.from_bytes(data)
    except CorruptCheckpoint as exc:
        raise InvalidInput(f"CHECKPOINT: {path} is unusable ({exc})") from None
    missing = [key for key in ("spec_yaml", "model", "global_step") if key not in checkpoint]
    if missing:
        raise InvalidInput(
            f"CHECKPOINT: {path} has no {', '.join(missing)}: not a checkpoint of `trainer run`"
        )
    return checkpoint, spec_of(checkpoint)


def spec_of(checkpoint: dict) -> JobSpec:
    """The spec a checkpoint was trained with (it carries it as `spec_yaml`)."""
    import yaml

    from trainer.spec import validate_spec

    return validate_spec(yaml.safe_load(checkpoint["spec_yaml"]), origin="the checkpoint's spec")


def load_policy(checkpoint: dict, env: GameBoyEnv, device: torch.device) -> Agent:
    """The checkpoint's policy network for `env`'s observations and actions, on `device`."""
    from trainer.rl.setup import build_agent

    agent = build_agent(spec_of(checkpoint), env.observation_shape, env.num_actions, device)
    agent.load_state_dict(checkpoint["model"])
    return agent.eval()
