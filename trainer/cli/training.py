"""`trainer validate | schema | run`: check a spec, describe it, train it."""

from __future__ import annotations

import json
import sys

import click

from trainer.cli.common import (
    gif_file_callback,
    handle_errors,
    read_spec,
    set_option,
    spec_argument,
    tracking_uri_option,
)
from trainer.errors import InvalidInput


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
    Ctrl-C (exit 130), a second one stops at once. One trainer per job: while another one runs
    it (the job folder's lock), this one exits 1 naming it; in a pod it waits for it first.

    With distributed.replicas > 1 it starts torchrun (all replicas on this machine, or in a
    multi-replica Job's pods one per pod, joined at $TRAINER_RDZV_ENDPOINT), which restarts the
    group up to distributed.max_restarts times, each time from the last checkpoint.

    \b
    Environment overrides (the seed's Make variables): TRAIN_STEPS, TRAIN_ENVS,
    TRAIN_EPISODE_LENGTH, TRAIN_UPDATE_EPOCHS, TRAIN_BATCH_SIZE, TRAIN_OUTPUT_DIR.
    """
    if no_mlflow:
        overrides = (*overrides, "mlflow.enabled=false")
    spec = read_spec(spec_path, overrides)
    from trainer.rl.distributed import launch_replicas, under_torchrun

    if spec.distributed.replicas > 1 and not under_torchrun():
        flags = [f"--set={o}" for o in overrides] + ["--fresh"] * fresh + ["--force"] * force
        sys.exit(launch_replicas(spec, ["run", spec_path, *flags]))
    from trainer.rl.train import train

    train(spec, force=force, fresh=fresh)


@click.command()
@click.argument("source", metavar="RUN_ID|CHECKPOINT")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    callback=gif_file_callback,
    help="Write the episode as an animated GIF, FILE.gif (default when there is no display).",
)
@click.option(
    "--window/--no-window",
    default=None,
    help="Watch in a PyBoy window at real speed (default: when $DISPLAY is set and no --out).",
)
@click.option("--greedy", is_flag=True, help="Take the most likely action instead of sampling.")
@click.option("--steps", type=click.IntRange(min=1), help="Stop after this many steps.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the action sampler.")
@tracking_uri_option(", for a RUN_ID")
@handle_errors
def play(
    source: str,
    out: str | None,
    window: bool | None,
    greedy: bool,
    steps: int | None,
    seed: int,
    tracking_uri: str | None,
) -> None:
    """Replay a trained policy: from a checkpoint file, or the latest checkpoint of an MLflow run.

    \b
    trainer play training_runs/quickstart-e2-1a2b3c4d/checkpoints/latest.pt --out agent.gif
    trainer play 3f2c9e0d7a6b4c1e8f0a --window
    """
    import os
    import tempfile
    from pathlib import Path

    import torch

    from trainer.envs.env import GameBoyEnv
    from trainer.errors import path_problem
    from trainer.rl.evaluate import load_policy, open_checkpoint, play_episode, write_gif

    with tempfile.TemporaryDirectory(prefix="trainer-play-") as tmp:
        path = Path(source).expanduser()
        problem = path_problem(path, "checkpoint", (".pt",))
        if problem:
            raise InvalidInput(f"CHECKPOINT: {problem}")
        if not path.is_file() and (path.suffix == ".pt" or "/" in source):
            raise InvalidInput(f"CHECKPOINT: {source}: no such file")
        if not path.is_file():
            from trainer.tracking.queries import download_latest_checkpoint

            path = download_latest_checkpoint(tracking_uri, source, Path(tmp))
        checkpoint, spec = open_checkpoint(path)
    if window is None:
        window = bool(os.environ.get("DISPLAY")) and out is None
    env = GameBoyEnv(spec, render_screen=True, window="SDL2" if window else "null")
    try:
        agent = load_policy(checkpoint, env, torch.device("cpu"))
        recording = play_episode(
            env, agent, torch.device("cpu"), seed=seed, greedy=greedy, max_steps=steps
        )
    finally:
        env.close()
    step = int(checkpoint["global_step"])
    click.echo(
        f"{spec.name} at step {step:,}: return {recording.ret:.2f} in {recording.length} steps "
        f"({recording.ended})"
    )
    if out or not window:
        target = write_gif(recording, Path(out or recording.file_name(step)))
        click.echo(f"wrote {target} ({len(recording.frames)} frames)")
