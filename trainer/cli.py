"""`trainer`: the command line. Each command imports what it needs when it runs, so that
`trainer --help`, `validate` and the Kubernetes commands start fast without torch or PyBoy.

Exit codes scripts can trust: 0 success, 1 a failure at run time, 2 invalid input (spec, override,
argument), 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from trainer.spec import EXIT_INVALID_INPUT, JobSpec, SpecError, load_spec

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


def _invalid_input_types() -> tuple[type[BaseException], ...]:
    # GameError lives with the games; import lazily and only its light module.
    from trainer.games.base import GameError

    return (SpecError, GameError)


def handle_errors(func: F) -> F:
    """Map our exceptions to messages on stderr and exit codes (2 for invalid input)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except _invalid_input_types() as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID_INPUT)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper  # type: ignore[return-value]


spec_argument = click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override any spec key, e.g. --set ppo.total_steps=50000 (wins over TRAIN_* variables and the file).",
)


def read_spec(spec_path: str, overrides: tuple[str, ...]) -> JobSpec:
    """Load SPEC with the TRAIN_* environment and --set overrides (file < environment < CLI)."""
    return load_spec(spec_path, overrides)


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


@main.command()
@spec_argument
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@handle_errors
def validate(spec_path: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Check SPEC and print it normalized, with every default filled in.

    Exits 2 with one line per problem (file:line: key: what is wrong) when SPEC is invalid.
    """
    spec = read_spec(spec_path, overrides)
    if as_json:
        click.echo(json.dumps(spec.model_dump(mode="json"), indent=2))
    else:
        click.echo(spec.to_yaml(), nl=False)


@main.command()
def schema() -> None:
    """Print the JSON Schema of the job spec (for editors and CI checks)."""
    from trainer.spec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@main.command()
@spec_argument
@set_option
@click.option("--no-mlflow", is_flag=True, help="Do not track in MLflow (same as --set mlflow.enabled=false).")
@click.option("--fresh", is_flag=True, help="Ignore an existing checkpoint of this job and start over.")
@click.option("--force", is_flag=True, help="Resume even if the checkpoint was written for a different spec.")
@handle_errors
def run(spec_path: str, overrides: tuple[str, ...], no_mlflow: bool, fresh: bool, force: bool) -> None:
    """Train the PPO agent described by SPEC (what a Kubernetes pod runs).

    Resumes from the job's latest checkpoint when one exists, in the same MLflow run. SIGTERM
    writes a checkpoint and exits with 143 so the Job's retry continues from it.

    \b
    Environment overrides (the seed's Make variables): TRAIN_STEPS, TRAIN_ENVS,
    TRAIN_EPISODE_LENGTH, TRAIN_UPDATE_EPOCHS, TRAIN_BATCH_SIZE, TRAIN_OUTPUT_DIR.
    """
    if no_mlflow:
        overrides = (*overrides, "mlflow.enabled=false")
    spec = read_spec(spec_path, overrides)
    from trainer.train import EXIT_PREEMPTED, CheckpointMismatch, Preempted, train

    try:
        train(spec, force=force, fresh=fresh)
    except CheckpointMismatch as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INVALID_INPUT)
    except Preempted:
        sys.exit(EXIT_PREEMPTED)
