"""Collect-then-learn against collecting beside the update (`ppo.async_rollout`), on the same
spec and seeds, in one process, alternating: steps/s and the average return of the last 20
episodes of each run, then the means and their ratio.

Usage: python scripts/bench_async_rollout.py [SPEC] [--seeds 1,2,3] [--set k=v ...]
(default SPEC: configs/quickstart.yaml). Async collection acts with the weights of the update
before (one update of lag); the loss corrects for it with the decoupled PPO objective.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from trainer.bench.peer import train_ours
from trainer.bench.report import machine_description
from trainer.rl.setup import set_torch_threads
from trainer.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", nargs="?", default=str(ROOT / "configs" / "quickstart.yaml"))
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    spec = load_spec(args.spec, overrides=args.overrides)
    set_torch_threads(spec)
    print(f"{machine_description()}; {args.spec}, {spec.ppo.total_steps:,} steps")
    figures: dict[str, list[tuple[float, float]]] = {"sync": [], "async": []}
    for seed in (int(s) for s in args.seeds.split(",")):
        for mode in figures:
            curve = train_ours(spec.updated({"seed": seed, "ppo.async_rollout": mode == "async"}))
            figures[mode].append((curve.steps_per_second, curve.final_return()))
            print(
                f"seed {seed} {mode:>5}: {curve.steps_per_second:>7,.0f} steps/s, "
                f"return of the last 20 episodes {curve.final_return():6.2f}",
                flush=True,
            )
    (sync_sps, sync_ret), (async_sps, async_ret) = (
        np.mean(figures[m], axis=0) for m in ("sync", "async")
    )
    print(
        f"mean: sync {sync_sps:,.0f} steps/s, return {sync_ret:.2f}; async {async_sps:,.0f} "
        f"steps/s, return {async_ret:.2f}; async/sync speed {async_sps / sync_sps:.2f}×"
    )


if __name__ == "__main__":
    main()
