"""A pod's start-up: `trainer run` to its first rollout, with `torch._dynamo` imported beside the
emulators' start (`preload_optimizer_imports`) against the same command without it, fresh
processes, rounds alternating.

    .venv/bin/python scripts/bench_startup.py [SPEC] [--rounds 5]

(default SPEC: the seed's train-20k settings `trainer bench` uses: 2 envs, no MLflow.) The
baseline is `trainer run` with `trainer.rl.train.preload_optimizer_imports` replaced by a thread
that does nothing, so torch.optim imports `torch._dynamo` when the optimizer is built, as before.
Figures: seconds per start (median of the rounds) and the speed-up.

Measured (AMD EPYC, 2 CPUs, 5 rounds): 3.04 → 2.57 s (1.18×) and 2.79 → 2.40 s (1.16×) in two
runs; configs/train-20k.yaml (`fastest`, 3 rounds) 3.11 → 2.68 s (1.16×).
"""

from __future__ import annotations

import argparse
import statistics
import sys

from trainer.bench.report import machine_description
from trainer.bench.run import SEED_TRAIN_20K
from trainer.bench.stages import bench_trainer_startup
from trainer.spec import load_spec, validate_spec

BASELINE = (
    "import sys, threading\n"
    "import trainer.rl.train as train\n"
    "def idle():\n"
    "    thread = threading.Thread(target=lambda: None)\n"
    "    thread.start()\n"
    "    return thread\n"
    "train.preload_optimizer_imports = idle\n"
    "from trainer.entrypoint import main\n"
    "sys.argv[0] = 'trainer'\n"
    "main()\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", nargs="?", default=None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    spec = load_spec(args.spec, overrides=[]) if args.spec else validate_spec(SEED_TRAIN_20K)
    commands = {
        "import at the optimizer": [sys.executable, "-c", BASELINE],
        "preloaded": None,
    }
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, command in commands.items():
            seconds[name].append(bench_trainer_startup(spec, command=command))
    print(machine_description())
    base = statistics.median(seconds["import at the optimizer"])
    for name, values in seconds.items():
        median = statistics.median(values)
        rounds = " ".join(f"{v:.2f}" for v in values)
        print(f"{name:<24} {median:>6.2f} s  (rounds: {rounds}) {base / median:>6.2f}×")


if __name__ == "__main__":
    main()
