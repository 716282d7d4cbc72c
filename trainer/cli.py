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
            for line in str(exc).splitlines():
                click.echo(f"error: {line}", err=True)
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


def env_counts_callback(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, ...] | None:
    """'1,2,4' → (1, 2, 4); a usage error (exit 2) otherwise."""
    if value is None:
        return None
    try:
        counts = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers like 1,2,4 (got {value!r})"
        ) from None
    if not counts or any(c < 1 for c in counts) or len(set(counts)) != len(counts):
        raise click.BadParameter(
            f"environment counts must be distinct integers ≥ 1 (got {value!r})"
        )
    return counts


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
    from trainer.train import CheckpointMismatch, Preempted, train

    try:
        train(spec, force=force, fresh=fresh)
    except CheckpointMismatch as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INVALID_INPUT)
    except Preempted as stopped:
        sys.exit(stopped.exit_code)


@main.command()
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
    help="Also write the figures as JSON.",
)
@click.option(
    "--no-train-sweep",
    is_flag=True,
    help="Run end to end training only for the spec's own env count.",
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
) -> None:
    """Measure throughput, each stage next to its baseline, in one run.

    Without SPEC: the seed's train-20k configuration (2 envs, episode length 750, 6 update
    epochs, batch 128, 20,000 steps) on the built-in game.
    """
    from rich.console import Console as RichConsole

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
    console = RichConsole()
    with console.status("benchmarking…") as status:
        report = run_bench(
            spec,
            counts,
            quick=quick,
            end_to_end_all=not no_train_sweep,
            progress=lambda m: status.update(f"benchmarking: {m}"),
        )
    for table in render_tables(report):
        console.print(table)
    from pathlib import Path

    if json_path:
        Path(json_path).write_text(report.to_json())
        console.print(f"figures written to {json_path}")
    if mlflow_experiment:
        import tempfile

        from trainer.tracking import log_benchmark

        with tempfile.TemporaryDirectory() as tmp:
            report_file = Path(tmp) / "bench.json"
            report_file.write_text(report.to_json())
            run_id = log_benchmark(None, mlflow_experiment, report.flat_figures(), report_file)
        console.print(f"figures logged to MLflow run {run_id} (experiment {mlflow_experiment})")


# ---- Kubernetes: render, launch, status, logs, cancel -----------------------------------------
# These import trainer.kube / trainer.launcher only (no torch, no PyBoy), so they start fast.


_envs_option = click.option(
    "--envs",
    metavar="1,2,4",
    callback=env_counts_callback,
    help="Environment counts, one Job each (default: the spec's sweep.num_envs, else env.num_envs).",
)
_image_option = click.option(
    "--image",
    metavar="IMAGE",
    help="Trainer image (default: the spec's kubernetes.image, else the built-in default).",
)
_namespace_option = click.option(
    "-n",
    "--namespace",
    metavar="NS",
    help="Namespace (default: the spec's kubernetes.namespace; without a spec, the kubeconfig's).",
)
_context_option = click.option(
    "--context", metavar="CTX", help="kubeconfig context to use (default: the current one)."
)


def _kube_spec(spec_path: str, overrides: tuple[str, ...], namespace: str | None) -> JobSpec:
    if namespace:
        overrides = (*overrides, f"kubernetes.namespace={namespace}")
    return read_spec(spec_path, overrides)


def _kube_failure(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_FAILURE)


@main.command()
@spec_argument
@set_option
@_envs_option
@_image_option
@_namespace_option
@handle_errors
def render(
    spec_path: str,
    overrides: tuple[str, ...],
    envs: tuple[int, ...] | None,
    image: str | None,
    namespace: str | None,
) -> None:
    """Print the Kubernetes manifests of SPEC: per env count a ConfigMap and a Job.

    \b
    trainer render configs/sweep.yaml | kubectl apply -f -
    """
    from trainer import kube

    spec = _kube_spec(spec_path, overrides, namespace)
    click.echo(kube.to_yaml_stream(kube.render(spec, envs, image)), nl=False)


@main.command()
@spec_argument
@set_option
@_envs_option
@_image_option
@_namespace_option
@_context_option
@click.option(
    "--backend",
    type=click.Choice(["kubernetes", "local"]),
    help="Where to run (default: kubernetes when a kubeconfig or in-cluster config exists, else local).",
)
@click.option("--dry-run", is_flag=True, help="Show what would run; send or start nothing.")
@click.option(
    "--wait",
    is_flag=True,
    help="Kubernetes: wait until every Job finished (local runs always wait).",
)
@click.option(
    "--max-cpus",
    type=click.IntRange(min=1),
    help="Local: CPUs to fill with concurrent runs (default: the usable CPUs).",
)
@handle_errors
def launch(
    spec_path: str,
    overrides: tuple[str, ...],
    envs: tuple[int, ...] | None,
    image: str | None,
    namespace: str | None,
    context: str | None,
    backend: str | None,
    dry_run: bool,
    wait: bool,
    max_cpus: int | None,
) -> None:
    """Run SPEC once per env count, as Kubernetes Jobs or local processes.

    Idempotent: the Jobs' names derive from their spec, so launching again creates only what is
    missing and reports what already exists. Exit 1 when anything failed (the report lists what
    was created, existed or failed; run the same command again to complete the sweep).
    """
    from trainer import launcher

    spec = _kube_spec(spec_path, overrides, namespace)
    chosen = launcher.choose_backend(backend)
    if chosen == "local":
        code = launcher.run_local(spec, envs, max_cpus=max_cpus, dry_run=dry_run, echo=click.echo)
    else:
        code = launcher.launch_kubernetes(
            spec,
            envs,
            image,
            dry_run=dry_run,
            wait=wait,
            echo=click.echo,
            client_factory=lambda: launcher.make_client(context),
        )
    sys.exit(code)


def _resolve_target(
    spec_path: str | None, overrides: tuple[str, ...], namespace: str | None, context: str | None
) -> tuple[JobSpec | None, str]:
    from trainer import kube

    spec = _kube_spec(spec_path, overrides, namespace) if spec_path else None
    return spec, namespace or (
        spec.kubernetes.namespace if spec else kube.current_namespace(context)
    )


@main.command()
@click.argument(
    "spec_path", metavar="[SPEC]", required=False, type=click.Path(dir_okay=False, exists=True)
)
@set_option
@_envs_option
@click.option("--sweep", "sweep", metavar="ID", help="Show the Jobs of this sweep id.")
@click.option("--all", "show_all", is_flag=True, help="Show every trainer Job in the namespace.")
@_namespace_option
@_context_option
@handle_errors
def status(
    spec_path: str | None,
    overrides: tuple[str, ...],
    envs: tuple[int, ...] | None,
    sweep: str | None,
    show_all: bool,
    namespace: str | None,
    context: str | None,
) -> None:
    """Table of Jobs and their pods: of SPEC's sweep, of --sweep ID, or (--all / neither) of all."""
    from rich.console import Console as RichConsole
    from rich.table import Table

    from trainer import kube, launcher

    spec, ns = _resolve_target(spec_path, overrides, namespace, context)
    if spec is not None and not sweep and not show_all:
        sweep = kube.plan(spec, envs)[0]
    label_selector = kube.selector(sweep=None if show_all else sweep)
    try:
        rows = launcher.status_rows(launcher.make_client(context), ns, label_selector)
    except kube.KubeError as exc:
        _kube_failure(exc)
    table = Table(title=f"namespace {ns}" + (f", sweep {sweep}" if sweep and not show_all else ""))
    for column in ("job", "envs", "state", "active", "succeeded", "failed", "age", "pods"):
        numeric = column in ("envs", "active", "succeeded", "failed")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=column != "pods")
    for row in rows:
        table.add_row(
            row.name,
            row.envs,
            row.state,
            str(row.active),
            str(row.succeeded),
            str(row.failed),
            row.age,
            row.pods,
        )
    RichConsole().print(
        table if rows else f"no trainer Jobs found in namespace {ns} ({label_selector})"
    )


@main.command()
@click.argument("job")
@click.option("-f", "--follow", is_flag=True, help="Stream new lines until the pod ends.")
@_namespace_option
@_context_option
@handle_errors
def logs(job: str, follow: bool, namespace: str | None, context: str | None) -> None:
    """Print the trainer's log of JOB (its newest pod)."""
    from trainer import kube, launcher

    ns = namespace or kube.current_namespace(context)
    try:
        client = launcher.make_client(context)
        pod = launcher.newest_pod(client, ns, job)
        if pod is None:
            _kube_failure(
                kube.KubeError(f"no pod of Job {job} in namespace {ns} (yet); see `trainer status`")
            )
        for line in client.pod_logs(ns, pod, follow=follow):
            click.echo(line)
    except kube.KubeError as exc:
        _kube_failure(exc)


@main.command()
@click.argument("target", metavar="[SPEC|JOB]", required=False)
@set_option
@_envs_option
@click.option("--sweep", "sweep", metavar="ID", help="Cancel every Job of this sweep id.")
@_namespace_option
@_context_option
@handle_errors
def cancel(
    target: str | None,
    overrides: tuple[str, ...],
    envs: tuple[int, ...] | None,
    sweep: str | None,
    namespace: str | None,
    context: str | None,
) -> None:
    """Delete Jobs (their pods with them) and their ConfigMaps: those of SPEC, of --sweep ID,
    or the Job named JOB. Deleting what is already gone is not an error."""
    from pathlib import Path

    from trainer import kube, launcher

    if bool(target) == bool(sweep):
        raise click.UsageError("give exactly one of SPEC, JOB or --sweep ID")
    is_spec = bool(target) and Path(target).is_file()
    spec, ns = _resolve_target(target if is_spec else None, overrides, namespace, context)
    try:
        client = launcher.make_client(context)
        if spec is not None:
            points = kube.plan(spec, envs)[1]
            targets = [("Job", p.job_name) for p in points] + [
                ("ConfigMap", p.job_name) for p in points
            ]
        elif sweep:
            targets = launcher.sweep_objects(client, ns, kube.selector(sweep=sweep))
        else:
            targets = [("Job", target), ("ConfigMap", target)]
        sys.exit(launcher.cancel(client, ns, targets, echo=click.echo))
    except kube.KubeError as exc:
        _kube_failure(exc)


@main.command()
@click.argument("sweep_id")
@click.option(
    "--experiment", help="Experiment holding the sweep (default: search every experiment)."
)
@click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else MLflow's local default).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="Where to write comparison.png and comparison.json.",
)
@click.option("--no-log", is_flag=True, help="Do not log the comparison to MLflow.")
@handle_errors
def compare(
    sweep_id: str, experiment: str | None, tracking_uri: str | None, out_dir: str, no_log: bool
) -> None:
    """Compare the runs of a sweep side by side: a table, plots, and a `compare-<SWEEP_ID>` run
    in MLflow holding both (`trainer launch` prints the sweep id; runs carry it as tag sweep_id).
    """
    from pathlib import Path

    from rich.console import Console as RichConsole

    from trainer.report import comparison_rows, comparison_table, plot_comparison
    from trainer.tracking import find_sweep_runs, log_comparison

    try:
        records = find_sweep_runs(tracking_uri, sweep_id, experiment)
    except LookupError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INVALID_INPUT)
    if not records:
        click.echo(
            f"error: no runs tagged sweep_id={sweep_id!r}; check the id (`trainer launch` prints it) and --tracking-uri",
            err=True,
        )
        sys.exit(EXIT_FAILURE)
    rows = comparison_rows(records)
    console = RichConsole()
    console.print(comparison_table(rows, sweep_id))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table_path = out / "comparison.json"
    table_path.write_text(json.dumps(rows, indent=2))
    plot_path = plot_comparison(records, rows, out / "comparison.png")
    console.print(f"wrote {plot_path} and {table_path}")
    if not no_log:
        summary = {f"sps_e{r['num_envs']}": r["sps"] for r in rows} | {
            f"return_e{r['num_envs']}": r["return_last10"] for r in rows
        }
        run_id = log_comparison(
            tracking_uri, records[0].run_id, sweep_id, [plot_path, table_path], summary
        )
        console.print(f"logged to MLflow run {run_id} (compare-{sweep_id})")
