"""Regenerate the generated blocks of README.md; a test keeps them in sync.

- the spec reference and the Make variables, from the spec's models;
- the benchmark tables, from the JSON of one `trainer bench` run (docs/bench.json), rendered
  by the very function `trainer bench` prints with. After a new run:
  `trainer bench --json docs/bench.json && python scripts/update_readme.py`;
- the MLflow outage figures, from docs/reliability.json (`trainer bench --reliability --json
  docs/reliability.json`);
- the replica scaling, from docs/replicas.json (`trainer bench configs/quickstart.yaml
  --replicas 1,2,4 --json docs/replicas.json`).

Usage: python scripts/update_readme.py [--check]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from trainer.bench import BenchReport
from trainer.bench.reliability import OutageFigures
from trainer.bench.replicas import scaling_from_json, scaling_markdown
from trainer.spec import ENV_OVERRIDES
from trainer.spec.reference import reference_markdown

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BENCH = ROOT / "docs" / "bench.json"
RELIABILITY = ROOT / "docs" / "reliability.json"
REPLICAS = ROOT / "docs" / "replicas.json"


#: The seed write-up's figures (its PPO update was simulated, not run).
SEED_STEPS_PER_SECOND, SEED_SECONDS_20K, SEED_4_ENVS = 1360, 14.7, 2000


def seed_comparison(report: BenchReport) -> str:
    """The seed's figures beside this run's, as a Markdown table."""
    e2e = report.end_to_end
    four = next((row.train_sps for row in report.rows if row.num_envs == 4), float("nan"))
    rows = [
        ("`train-20k`, 2 envs: steps/s", f"{SEED_STEPS_PER_SECOND:,}",
         e2e["steps_per_second"], e2e["steps_per_second"] / SEED_STEPS_PER_SECOND),
        ("`train-20k`, 2 envs: training time for 20,000 steps", f"{SEED_SECONDS_20K} s",
         e2e["training_seconds"], e2e["training_seconds"] / SEED_SECONDS_20K),
        ("4 envs: steps/s", f'"{SEED_4_ENVS:,}+"', four, four / SEED_4_ENVS),
    ]  # fmt: skip
    lines = ["| | seed (simulated PPO) | this project (real PPO) | ratio |", "|---|---|---|---|"]
    for name, seed, ours, ratio in rows:
        value = f"{ours:.1f} s" if name.endswith("steps") else f"{ours:,.0f}"
        lines.append(f"| {name} | {seed} | {value} | {ratio:.2f}× |")
    return "\n".join(lines) + "\n"


def blocks() -> dict[str, str]:
    variables = "| Make / environment variable | spec key |\n|---|---|\n" + "\n".join(
        f"| `{var}` | `{key}` |" for var, key in ENV_OVERRIDES.items()
    )
    bench = BenchReport.from_json(BENCH.read_text())
    return {
        "spec-reference": reference_markdown(),
        "train-variables": variables + "\n",
        "bench": f"```text\n{bench.text()}```\n",
        "bench-seed": seed_comparison(bench),
        "reliability": f"```text\n{OutageFigures.from_json(RELIABILITY.read_text()).text()}```\n",
        "replica-scaling": scaling_markdown(scaling_from_json(REPLICAS.read_text())),
    }


def render(text: str) -> str:
    for name, body in blocks().items():
        pattern = re.compile(
            rf"(<!-- BEGIN GENERATED: {name} -->\n).*?(<!-- END GENERATED: {name} -->)", re.S
        )
        if not pattern.search(text):
            raise SystemExit(f"README.md: marker for generated block {name!r} is missing")
        text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2), text)
    return text


def main() -> int:
    current = README.read_text()
    updated = render(current)
    if "--check" in sys.argv:
        if updated != current:
            print(
                "README.md is out of date: run `python scripts/update_readme.py`", file=sys.stderr
            )
            return 1
        return 0
    README.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
