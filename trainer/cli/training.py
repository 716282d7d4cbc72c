"""`trainer validate | schema | run`: check a spec, describe it, train it."""

from __future__ import annotations

import json

import click

from trainer.cli.common import handle_errors, read_spec, set_option, spec_argument


@click.command()
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


@click.command()
def schema() -> None:
    """Print the JSON Schema of the job spec (for editors and CI checks)."""
    from trainer.spec.reference import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@click.command()
@spec_argument
@set_option
@click.option(
    "--no-mlflow", is_flag=True, help="Do not track in MLflow (same as --set mlflow.enabled=false)."
)
@click.option(
    "--fresh", is_flag=True, help="Ignore an existing checkpoint of this job and start over."
)
@click.option(
    "--force", is_flag=True, help="Resume even if the checkpoint was written for a different spec."
)
@handle_errors
def run(
    spec_path: str, overrides: tuple[str, ...], no_mlflow: bool, fresh: bool, force: bool
) -> None:
    """Train the PPO agent described by SPEC (what a Kubernetes pod runs).

    Resumes from the job's latest checkpoint when one exists, in the same MLflow run. SIGTERM
    writes a checkpoint and exits with 143 so the Job's retry continues from it; so does a first
    Ctrl-C (exit 130), a second one stops at once.

    \b
    Environment overrides (the seed's Make variables): TRAIN_STEPS, TRAIN_ENVS,
    TRAIN_EPISODE_LENGTH, TRAIN_UPDATE_EPOCHS, TRAIN_BATCH_SIZE, TRAIN_OUTPUT_DIR.
    """
    if no_mlflow:
        overrides = (*overrides, "mlflow.enabled=false")
    spec = read_spec(spec_path, overrides)
    from trainer.rl.train import train

    train(spec, force=force, fresh=fresh)
