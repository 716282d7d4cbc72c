"""End-to-end training with each vector backend, side by side: `auto` (worker processes for 2
envs and more), `serial` (every env in the trainer's process) and `fastest` (both timed at
start-up, the faster kept), on each built-in game.

    .venv/bin/python scripts/bench_backend.py [SPEC ...] [--steps 20000] [--rounds 2]

Each run is `trainer run` with the spec (2 envs, no MLflow, a scratch checkpoint folder), rounds
alternating between backends so machine noise hits all alike. Figures: training steps/s (the
run's own figure, as `trainer bench` reports it) and the whole run's wall time (start-up and the
probe included), median over rounds, each against `auto`; for `fastest`, which backend it kept in
each round. Learning is the same with every backend (tests/test_train.py checks `fastest`
against `serial`), so only speed is compared. Default specs: train-20k (the dungeon,
learner-bound) and the cavern (emulator-bound).
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import tempfile
import time
from pathlib import Path

from trainer.bench.report import machine_description
from trainer.rl.console import Console
from trainer.rl.train import train
from trainer.spec import JobSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPECS = [ROOT / "configs" / "train-20k.yaml", ROOT / "configs" / "cavern.yaml"]
BACKENDS = ("auto", "serial", "fastest")
_KEPT = re.compile(r"Fastest backend here: (\w+)")


def run_once(spec: JobSpec, backend: str) -> tuple[float, float, str]:
    """(training steps/s, wall seconds of the whole run, the backend that ran)."""
    stream = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp:
        point = spec.updated(
            {
                "env.backend": backend,
                "mlflow.enabled": False,
                "checkpoint.dir": tmp,
                "checkpoint.resume": False,
                "checkpoint.video": False,
            }
        )
        began = time.perf_counter()
        summary = train(point, console=Console(stream))
        wall = time.perf_counter() - began
    kept = _KEPT.search(stream.getvalue())
    return summary.steps_per_second, wall, kept.group(1) if kept else backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="*", default=[str(p) for p in DEFAULT_SPECS])
    parser.add_argument("--steps", type=int, default=20000, help="training steps per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="which, comma-separated (first: baseline)"
    )
    args = parser.parse_args()
    print(machine_description())
    print(f"{'spec':<12} {'backend':<8} {'steps/s':>8} {'ratio':>8} {'wall s':>7}  kept")
    for path in args.specs:
        spec = load_spec(path, overrides=[]).updated(
            {"env.num_envs": 2, "ppo.total_steps": args.steps}
        )
        backends = args.backends.split(",")
        figures: dict[str, list[tuple[float, float, str]]] = {b: [] for b in backends}
        for _ in range(args.rounds):
            for backend in backends:
                figures[backend].append(run_once(spec, backend))
        base = statistics.median(sps for sps, _, _ in figures[backends[0]])
        for backend, runs in figures.items():
            sps = statistics.median(s for s, _, _ in runs)
            wall = statistics.median(w for _, w, _ in runs)
            kept = ",".join(k for _, _, k in runs) if backend == "fastest" else ""
            print(
                f"{Path(path).stem:<12} {backend:<8} {sps:>8,.0f} {sps / base:>7.2f}× "
                f"{wall:>7.1f}  {kept}"
            )


if __name__ == "__main__":
    main()
