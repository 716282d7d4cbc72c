"""`trainer bench | compare`: measure throughput, and compare the runs of a sweep."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from trainer.cli.common import (
    env_counts_callback,
    handle_errors,
    output_file_callback,
    read_spec,
    set_option,
    stdout_console,
    tracking_uri_option,
)
from trainer.spec import environment_tracking_uri


@click.command()
@click.argument("spec_path", metavar="[SPEC]", required=False, type=click.Path(dir_okay=False))
@set_option
@click.option(
    "--envs",
    "envs",
    metavar="1,2,4",
    callback=env_counts_callback,
    help="Environment counts to measure (default 1,2,4).",
)
@click.option("--quick", is_flag=True, help="A short smoke run (seconds; the figures mean little).")
@click.option(
    "--mlflow",
    "mlflow_experiment",
    metavar="EXPERIMENT",
    help="Also log the figures to MLflow ($MLFLOW_TRACKING_URI, else the local default) in EXPERIMENT.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, writable=True),
    callback=output_file_callback,
    help="Also write the figures as JSON.",
)
@click.option(
    "--no-train-sweep",
    is_flag=True,
    help="Run end to end training only for the spec's own env count.",
)
@click.option(
    "--reliability",
    is_flag=True,
    help="Instead: train the quickstart game for 240,000 steps against a local MLflow server "
    "that is SIGKILLed 12 s in and restarted 25 s later; show what the outage cost "
    "(throughput and CPU per phase, metric steps lost). About 2 minutes.",
)
@click.option(
    "--replicas",
    "replica_counts",
    metavar="1,2,4",
    callback=env_counts_callback,
    help="Instead: train SPEC (default: the train-20k configuration) as one run over each of "
    "these replica counts (torchrun on loopback), each beside one process with the same total "
    "envs; global steps/s and the ratio.",
)
@click.option(
    "--peer",
    "peer_seeds",
    default=None,
    metavar="SEEDS",
    help="Also train Stable-Baselines3's PPO beside ours on each built-in game, with these "
    "comma-separated seeds (e.g. 1,2,3); needs the bench extra.",
)
@handle_errors
def bench(
    spec_path: str | None,
    overrides: tuple[str, ...],
    envs: tuple[int, ...] | None,
    quick: bool,
    mlflow_experiment: str | None,
    json_path: str | None,
    no_train_sweep: bool,
    reliability: bool,
    replica_counts: tuple[int, ...] | None,
    peer_seeds: str | None,
) -> None:
    """Measure throughput, each stage next to its baseline, in one run.

    Without SPEC: the seed's train-20k configuration (2 envs, episode length 750, 6 update
    epochs, batch 128, 20,000 steps) on the built-in game. With --reliability: the MLflow outage
    benchmark instead (docs/reliability.json holds the README's figures); with --replicas: how
    one run scales over replicas.
    """

    if reliability:
        if spec_path or overrides or envs or mlflow_experiment or no_train_sweep or peer_seeds:
            raise click.UsageError(
                "--reliability takes no SPEC, --set, --envs, --mlflow, --no-train-sweep or --peer"
            )
        return bench_reliability(quick, json_path)
    if mlflow_experiment:  # refused now, not after minutes of measuring
        uri = environment_tracking_uri(os.environ)
        if uri:
            from trainer.tracking.client import check_server_reachable

            check_server_reachable(uri)

    from trainer.bench import render_tables, run_bench
    from trainer.spec import validate_spec

    counts = envs or (1, 2, 4)
    if spec_path:
        spec = read_spec(spec_path, overrides)
    else:
        from trainer.bench import SEED_TRAIN_20K

        spec = validate_spec(SEED_TRAIN_20K)
        if overrides:
            raise click.UsageError("--set needs a SPEC")
    from trainer.envs.env import check_game

    check_game(spec)  # a ROM or state that cannot be used: exit 2 before any measuring
    if replica_counts:
        if envs or mlflow_experiment or no_train_sweep or peer_seeds or quick:
            raise click.UsageError(
                "--replicas takes no --envs, --quick, --mlflow, --no-train-sweep or --peer "
                "(set the envs per replica and the steps in SPEC or with --set)"
            )
        return bench_replica_scaling(spec, replica_counts, json_path)
    console = stdout_console()
    with console.status("benchmarking…") as status:
        report = run_bench(
            spec,
            counts,
            quick=quick,
            end_to_end_all=not no_train_sweep,
            progress=lambda m: status.update(f"benchmarking: {m}"),
            peer_seeds=parse_seeds(peer_seeds),
        )
    for table in render_tables(report):
        console.print(table)
    if json_path:
        Path(json_path).write_text(report.to_json())
        console.print(f"figures written to {json_path}")
    if mlflow_experiment:
        import tempfile

        from trainer.tracking.queries import log_benchmark

        with tempfile.TemporaryDirectory() as tmp:
            report_file = Path(tmp) / "bench.json"
            report_file.write_text(report.to_json())
            run_id = log_benchmark(None, mlflow_experiment, report.flat_figures(), report_file)
        console.print(f"figures logged to MLflow run {run_id} (experiment {mlflow_experiment})")


def bench_reliability(quick: bool, json_path: str | None) -> None:
    """`trainer bench --reliability` (`--quick`: 60,000 steps, server down 6 s after 4 s)."""

    from trainer.bench.reliability import QUICKSTART_LONG, bench_mlflow_outage, outage_tables

    data, timing = QUICKSTART_LONG, {"kill_after_s": 12.0, "outage_s": 25.0}
    if quick:
        data = {**data, "ppo": {**data["ppo"], "total_steps": 60000}}
        timing = {"kill_after_s": 4.0, "outage_s": 6.0}
    console = stdout_console()
    with console.status("benchmarking an MLflow outage…") as status:
        figures = bench_mlflow_outage(
            data, progress=lambda m: status.update(f"MLflow outage: {m}"), **timing
        )
    for table in outage_tables(figures):
        console.print(table)
    if json_path:
        Path(json_path).write_text(figures.to_json())
        console.print(f"figures written to {json_path}")


def bench_replica_scaling(spec, counts: tuple[int, ...], json_path: str | None) -> None:
    """`trainer bench --replicas 1,2,4`."""

    from trainer.bench.replicas import bench_replicas, scaling_table

    console = stdout_console()
    with console.status("benchmarking replicas…") as status:
        scaling = bench_replicas(spec, counts, progress=lambda m: status.update(f"replicas: {m}"))
    console.print(scaling_table(scaling))
    if json_path:
        Path(json_path).write_text(scaling.to_json())
        console.print(f"figures written to {json_path}")


def parse_seeds(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: comma-separated integers, e.g. 1,2,3", param_hint="--peer"
        ) from None


@click.command()
@click.argument("targets", nargs=-1, metavar="[SWEEP_ID | RUN_ID…]")
@click.option(
    "--experiment",
    help="Experiment to search (with a SWEEP_ID), or to compare every training run of (alone).",
)
@tracking_uri_option()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="Where to write comparison.png and comparison.json.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown"]),
    default="table",
    show_default=True,
    help="How to print the table (markdown: for reports and pull requests).",
)
@click.option("--no-log", is_flag=True, help="Do not log the comparison to the sweep's run.")
@handle_errors
def compare(
    targets: tuple[str, ...],
    experiment: str | None,
    tracking_uri: str | None,
    out_dir: str,
    fmt: str,
    no_log: bool,
) -> None:
    """Compare runs side by side: a table, and plots of return against steps and against
    wall-clock time, and of steps/s against env count.

    \b
    trainer compare SWEEP_ID          the runs of a sweep (`trainer launch` prints the id);
                                      the table and plots are logged to the sweep's run
    trainer compare --experiment X    every training run of an experiment
    trainer compare RUN_ID RUN_ID…    these runs
    """

    from trainer.errors import InvalidInput, TrainerError
    from trainer.report import (
        comparison_markdown,
        comparison_rows,
        comparison_table,
        plot_comparison,
    )
    from trainer.tracking.queries import find_runs, log_comparison

    if not targets and not experiment:
        raise InvalidInput("give a SWEEP_ID, RUN_IDs, or --experiment NAME")
    sweep = targets[0] if len(targets) == 1 and not _looks_like_run_id(targets[0]) else None
    run_ids = () if sweep else targets
    records = find_runs(tracking_uri, sweep=sweep, experiment=experiment, run_ids=run_ids)
    if not records:
        what = f"tagged sweep_id={sweep!r}" if sweep else f"in experiment {experiment!r}"
        raise TrainerError(
            f"no runs {what}; check the id (`trainer launch` prints it) and --tracking-uri"
        )
    rows = comparison_rows(records)
    title = f"Sweep {sweep}: runs side by side" if sweep else "Runs side by side"
    console = stdout_console()
    if fmt == "markdown":
        click.echo(comparison_markdown(rows, title), nl=False)
    else:
        console.print(comparison_table(rows, title))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table_path = out / "comparison.json"
    table_path.write_text(json.dumps(rows, indent=2))
    markdown_path = out / "comparison.md"
    markdown_path.write_text(comparison_markdown(rows, title))
    plot_path = plot_comparison(records, rows, out / "comparison.png")
    click.echo(f"wrote {plot_path}, {table_path} and {markdown_path}", err=fmt == "markdown")
    if sweep and not no_log:
        summary = {f"sps_{_point(r)}": r["sps"] for r in rows} | {
            f"return_{_point(r)}": r["return_last10"] for r in rows
        }
        files = [plot_path, table_path, markdown_path]
        run_id, page = log_comparison(tracking_uri, records, sweep, files, summary)
        where = f"{run_id} ({page})" if page else run_id
        click.echo(f"logged to the sweep's MLflow run {where}", err=fmt == "markdown")


def _point(row: dict) -> str:
    """`e<num_envs>`, `e<num_envs>x<replicas>` for several: a row's key in the summary."""
    replicas = int(row.get("replicas", 1))
    return f"e{row['num_envs']}" + (f"x{replicas}" if replicas > 1 else "")


def _looks_like_run_id(text: str) -> bool:
    """MLflow run ids are 32 hex digits; sweep ids are `<name>-<8 hex>`."""
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)
