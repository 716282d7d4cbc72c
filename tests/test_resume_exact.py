"""A stopped run resumed from its checkpoint is the uninterrupted run: same episodes counted once,
same returns, same final weights.

Episodes are made to end exactly at rollout boundaries (episode length = rollout steps, and the
built-in dungeon cannot be won that fast), so the emulators are at an episode start whenever a
checkpoint is written, as they are after the resume resets them: any difference would come from
the trainer's own bookkeeping. SIGTERM is sent from inside the pool's `step`, so it lands
mid-rollout (sync) or while the next rollout is collected beside an update (async).
"""

from __future__ import annotations

import io
import os
import signal

import pytest
import torch

from trainer.errors import Stopped
from trainer.rl import train as train_module
from trainer.rl.console import Console
from trainer.rl.train import train
from trainer.spec import validate_spec
from trainer.tracking.checkpoints import CheckpointStore

ROLLOUT = 32
UPDATES = 8


def spec_for(tmp_path, async_rollout: bool, name: str):
    return validate_spec(
        {
            "name": name,
            "seed": 11,
            "env": {"num_envs": 2, "episode_length": ROLLOUT, "backend": "serial"},
            "ppo": {
                "total_steps": 2 * ROLLOUT * UPDATES,
                "rollout_steps": ROLLOUT,
                "update_epochs": 2,
                "batch_size": 32,
                "learning_rate": 1e-3,
                "async_rollout": async_rollout,
            },
            "checkpoint": {"dir": str(tmp_path / name), "every_updates": 2},
            "mlflow": {"enabled": False},
        }
    )


class SigtermAt:
    """Wraps the pool: SIGTERM to this process at vector step `at` (counted over the run)."""

    def __init__(self, envs, at: int):
        self._envs, self._at, self.calls = envs, at, 0

    def __getattr__(self, name):
        return getattr(self._envs, name)

    def step(self, actions):
        self.calls += 1
        if self.calls == self._at:
            os.kill(os.getpid(), signal.SIGTERM)
        return self._envs.step(actions)


def final_weights(tmp_path, name: str) -> dict[str, torch.Tensor]:
    latest = next((tmp_path / name).glob("*/checkpoints/latest.pt"))
    return CheckpointStore.load(latest)["model"]


@pytest.mark.parametrize("async_rollout", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("stop_at", [ROLLOUT * 3 + 5, ROLLOUT * 5 + 1])
def test_sigterm_then_resume_equals_the_uninterrupted_run(
    tmp_path, monkeypatch, async_rollout, stop_at
):
    whole = train(spec_for(tmp_path, async_rollout, "whole"), console=Console(io.StringIO()))

    spec = spec_for(tmp_path, async_rollout, "stopped")
    real_start = train_module.start_envs
    monkeypatch.setattr(
        train_module, "start_envs", lambda *a, **k: SigtermAt(real_start(*a, **k), at=stop_at)
    )
    first_console = Console(io.StringIO())
    with pytest.raises(Stopped) as stopped:
        train(spec, console=first_console)
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert "SIGTERM: checkpoint written at step" in first_console.text()
    first_episodes = [line for line in first_console.lines if line.startswith("Step ")]

    monkeypatch.setattr(train_module, "start_envs", real_start)
    resumed = train(spec, console=Console(io.StringIO()))

    assert 0 < resumed.resumed_from_step < whole.final_step
    assert resumed.final_step == whole.final_step
    assert resumed.total_episodes == whole.total_episodes == 2 * UPDATES
    # Episodes counted before the stop, then the resumed session's: each once, the same returns.
    assert len(first_episodes) + len(resumed.returns) == len(whole.returns)
    assert resumed.returns == whole.returns[len(first_episodes) :]
    assert resumed.avg_reward_last10 == pytest.approx(whole.avg_reward_last10)
    expected, got = final_weights(tmp_path, "whole"), final_weights(tmp_path, "stopped")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
