"""`trainer compare`'s shaping of runs (no MLflow needed): smoothing, grouping, the tables."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.report import comparison_markdown, comparison_rows, ema, per_step
from trainer.tracking.queries import RunRecord


def record(returns, num_envs=2, name="run", metrics=None) -> RunRecord:
    return RunRecord("id-" + name, name, num_envs, "FINISHED", 0, metrics or {}, returns)


def test_ema_starts_at_the_first_value_and_follows_the_closed_form():
    values = np.array([4.0, 0.0, 0.0, 0.0])
    # EMA_0 = v_0; then each zero multiplies by (1 - α).
    assert ema(values, 0.5).tolist() == [4.0, 2.0, 1.0, 0.5]
    assert ema(np.full(5, 3.0)).tolist() == pytest.approx([3.0] * 5)


def test_episodes_ending_in_the_same_step_become_one_point():
    run = record([(100, 1.0, 60_000), (100, 3.0, 60_000), (200, 5.0, 120_000)])
    steps, minutes, values = per_step(run)
    assert steps.tolist() == [100, 200] and values.tolist() == [2.0, 5.0]
    assert minutes.tolist() == [1.0, 2.0]


def test_rows_and_markdown_table():
    runs = [
        record([(s, float(s), 1000 * s) for s in range(1, 31)], 1, "a", {"perf/sps": 700.0}),
        record([], 4, "b"),  # a run that ended before its first episode
    ]
    rows = comparison_rows(runs)
    assert rows[0]["return_last10"] == pytest.approx(np.mean(range(21, 31)))
    assert rows[0]["steps"] == 30 and rows[0]["episodes"] == 30 and rows[0]["sps"] == 700.0
    assert np.isnan(rows[1]["return_last10"]) and rows[1]["episodes"] == 0
    table = comparison_markdown(rows, "Sweep s").splitlines()
    assert table[0] == "**Sweep s**"
    assert table[2].startswith("| Envs | Replicas | Total envs | Run | Status |")
    assert table[3].startswith("| ---: | ---: | ---: | --- | --- |")
    assert table[4].startswith("| 1 | 1 | 1 | a |")  # no replicas param: one replica
    assert len(table) == 6
