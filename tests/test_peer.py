"""The peer comparison's arithmetic: returns at the end, and when a level was first reached."""

from __future__ import annotations

import math

import pytest

from trainer.bench.peer import LearningCurve, require_peer, seconds_to
from trainer.errors import InvalidInput


def test_final_return_averages_the_last_twenty_episodes():
    curve = LearningCurve(1.0, returns=[0.0] * 5 + [1.0] * 20, times=list(range(25)))
    assert curve.final_return() == 1.0
    assert LearningCurve(1.0, returns=[2.0, 4.0]).final_return() == 3.0
    assert math.isnan(LearningCurve(1.0).final_return())


def test_seconds_to_is_when_twenty_in_a_row_first_average_the_level():
    returns = [0.0] * 20 + [2.0] * 20  # window averages rise by 0.1 per episode from the 21st
    curve = LearningCurve(1.0, returns=returns, times=[10.0 * i for i in range(40)])
    # The window ending at episode 29 (index) holds ten 2.0s: average 1.0.
    assert seconds_to([curve], 1.0) == 290.0
    assert seconds_to([curve], 0.0) == 190.0  # the first full window
    assert math.isnan(seconds_to([curve], 2.5))
    assert math.isnan(seconds_to([LearningCurve(1.0, returns=[5.0] * 19, times=[0.0] * 19)], 0.0))


def test_seconds_to_averages_the_seeds_curves_on_one_clock():
    """Seed a averages 2.0 from its 20th episode; seed b 0.0 for 20 episodes, then 4.0 for 20,
    on another clock. Their mean curve starts once both have a window (b's 20th episode) and
    reaches the mean of the seeds' finals (3.0) at b's last episode."""
    a = LearningCurve(1.0, returns=[2.0] * 20, times=[float(t) for t in range(20)])
    b = LearningCurve(1.0, returns=[0.0] * 20 + [4.0] * 20, times=[t * 1.25 for t in range(40)])
    assert seconds_to([a, b], 1.0) == b.times[19]  # (2.0 + 0.0) / 2 as soon as both have one
    assert seconds_to([a, b], 2.0) == b.times[29]  # b's window average is 2.0 at episode 29
    assert seconds_to([a, b], 3.0) == b.times[-1]  # the mean of the finals, at the very end
    assert math.isnan(seconds_to([a, b], 3.5))


def test_a_missing_bench_extra_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "stable_baselines3", None)
    with pytest.raises(InvalidInput, match="bench extra"):
        require_peer()


def test_the_benchmarks_cavern_is_configs_cavern():
    """`trainer bench --peer` trains cavern with the rewards users see in configs/cavern.yaml."""
    from pathlib import Path

    import yaml

    from trainer.bench.run import peer_games

    config = Path(__file__).parents[1] / "configs" / "cavern.yaml"
    assert peer_games()["builtin:cavern"] == yaml.safe_load(config.read_text())["game"]
