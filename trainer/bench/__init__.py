"""`trainer bench`: throughput, each figure next to its baseline, measured in one run.

1. raw emulator: PyBoy ticking the game with the env's frame skip and render pattern, one process
   per environment, no Python env layer (the limit);
2. the pool with random actions (ratio to 1);
3. rollout with policy inference (ratio to 2);
4. the learner alone: samples/s through forward and backward;
5. end to end: real PPO training (the seed's `train-20k` configuration by default);
6. memory per environment (PSS of a worker process) and start-up time (spec to first step).

A step is `frame_skip` frames; every steps/s figure is printed with its frame skip.
`stages` measures, `run` puts a run together, `report` holds and shows the figures.
"""

from trainer.bench.report import BenchReport, EnvCountFigures, render_tables
from trainer.bench.run import SEED_TRAIN_20K, run_bench
from trainer.bench.stages import measure_steps_per_second

__all__ = [
    "SEED_TRAIN_20K",
    "BenchReport",
    "EnvCountFigures",
    "measure_steps_per_second",
    "render_tables",
    "run_bench",
]
