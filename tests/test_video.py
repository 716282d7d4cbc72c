"""The policy's video: `write_gif` writes every frame exactly, scaled up, at real-time speed."""

from __future__ import annotations

import numpy as np
from PIL import Image

from trainer.rl.evaluate import Recording, palette_frames, write_gif

SHADES = np.array([[224, 248, 208], [136, 192, 112], [52, 104, 86], [8, 24, 32]], np.uint8)


def frames_of(gif_path) -> list[np.ndarray]:
    """The GIF's frames as RGB, one per env step: Pillow writes a frame equal to the one before
    as a longer delay of that one."""
    step_ms = 70  # 4 frames a step at 59.73 Hz: 67 ms, in GIF's 10 ms units
    frames = []
    with Image.open(gif_path) as gif:
        for index in range(gif.n_frames):
            gif.seek(index)
            assert gif.info["duration"] % step_ms == 0, gif.info["duration"]
            frames += [np.asarray(gif.convert("RGB"))] * (gif.info["duration"] // step_ms)
    return frames


def test_a_dmg_episode_is_written_exactly_through_one_palette(tmp_path):
    rng = np.random.default_rng(0)
    frames = [SHADES[rng.integers(0, 4, (144, 160))] for _ in range(6)]
    frames.append(frames[-1].copy())  # a step that changed nothing on screen
    indexed = palette_frames(frames)
    assert indexed is not None and len(indexed[1]) == 4 * 3
    path = write_gif(Recording(frames=frames), tmp_path / "videos" / "a.gif")
    written = frames_of(path)
    assert len(written) == len(frames)
    for got, frame in zip(written, frames, strict=True):
        assert np.array_equal(got, frame.repeat(2, axis=0).repeat(2, axis=1))


def test_more_than_256_colours_are_quantized_frame_by_frame(tmp_path):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (144, 160, 3), dtype=np.uint8) for _ in range(3)]
    assert palette_frames(frames) is None
    written = frames_of(write_gif(Recording(frames=frames), tmp_path / "b.gif", scale=1))
    assert len(written) == 3 and written[0].shape == (144, 160, 3)
