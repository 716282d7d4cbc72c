"""`trainer`: the command line. Each command imports what it needs when it runs, so that
`trainer --help`, `validate` and the Kubernetes commands start fast without torch or PyBoy.

Exit codes scripts can trust are in one table, `trainer.errors`: 0 success, 1 a failure at run
time, 2 invalid input (spec, override, argument), 130 interrupted, 143 stopped by SIGTERM after
writing a checkpoint.
"""

from __future__ import annotations

import click

from trainer.cli import analysis, games, kubernetes, training


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="pyboy-trainer", prog_name="trainer")
def main() -> None:
    """Train PPO agents on Game Boy games with PyBoy, many emulators in parallel.

    One YAML job spec drives everything: `trainer run` trains (locally or inside a Kubernetes
    pod), `trainer render`/`launch` turn the spec into Kubernetes Jobs, one per environment
    count, and every run is tracked in MLflow.

    \b
    Quick start:
      trainer validate configs/quickstart.yaml
      trainer run configs/quickstart.yaml
      mlflow ui            # then open http://127.0.0.1:5000
    """


for command in (
    training.validate,
    training.schema,
    training.run,
    training.play,
    games.ram_search,
    games.make_state,
    analysis.bench,
    kubernetes.render,
    kubernetes.launch,
    kubernetes.status,
    kubernetes.logs,
    kubernetes.cancel,
    analysis.compare,
):
    main.add_command(command)

__all__ = ["main"]
