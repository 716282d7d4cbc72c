"""`trainer render | launch | status | logs | cancel`: the spec on a Kubernetes cluster.

These import `trainer.kube`, `trainer.sweep` and `trainer.launcher` only (no torch, no PyBoy), so
they start fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from trainer.cli.common import (
    env_counts_callback,
    handle_errors,
    read_spec,
    set_option,
    spec_argument,
    stdout_console,
)
from trainer.spec import JobSpec, kube_rules

F = TypeVar("F", bound=Callable[..., Any])

_envs_option = click.option(
    "--envs",
    metavar="1,2,4",
    callback=env_counts_callback,
    help="Environment counts, one Job each (default: the spec's sweep.num_envs, else env.num_envs).",
)
_replicas_option = click.option(
    "--replicas",
    metavar="1,2,4",
    callback=env_counts_callback,
    help="Replica counts (pods of one run), a Job per env count and replica count "
    "(default: the spec's sweep.replicas, else distributed.replicas).",
)


def _image_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    problem = value is not None and kube_rules.image_reference_problem(value)
    if problem:
        raise click.BadParameter(f"{problem} (got {value!r})")
    return value


def _job_problem(value: str) -> str | None:
    """Why `value` cannot name a Job (kubectl refuses such a name before asking the cluster)."""
    problem = kube_rules.dns1123_label_problem(value)
    return problem and f"{value!r} is not a Job name: it {problem}"


def _job_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    problem = value and _job_problem(value)
    if problem:
        raise click.BadParameter(problem)
    return value


_image_option = click.option(
    "--image",
    metavar="IMAGE",
    callback=_image_callback,
    help="Trainer image (default: the spec's kubernetes.image, else the built-in default).",
)
_namespace_option = click.option(
    "-n",
    "--namespace",
    metavar="NS",
    help="Namespace (default: the spec's kubernetes.namespace, else the kubeconfig context's, "
    "else pyboy-trainer).",
)
_context_option = click.option(
    "--context", metavar="CTX", help="kubeconfig context to use (default: the current one)."
)


def _sweep_options(func: F) -> F:
    """SPEC, --set, --envs, --replicas, --image and -n: what `render` and `launch` both take."""
    for option in reversed(
        (
            spec_argument,
            set_option,
            _envs_option,
            _replicas_option,
            _image_option,
            _namespace_option,
        )
    ):
        func = option(func)
    return func


def _kube_spec(
    spec_path: str, overrides: tuple[str, ...], namespace: str | None, context: str | None
) -> JobSpec:
    """The spec with its namespace settled: `-n`, else the spec's, else the kubeconfig
    context's (a pod's own), else pyboy-trainer (`client.current_namespace`)."""
    if namespace:
        overrides = (*overrides, f"kubernetes.namespace={namespace}")
    return _settle_namespace(read_spec(spec_path, overrides), context)


def _settle_namespace(spec: JobSpec, context: str | None) -> JobSpec:
    if spec.kubernetes.namespace is not None:
        return spec
    from trainer.kube.client import current_namespace

    return spec.updated({"kubernetes.namespace": current_namespace(context)})


@click.command()
@_sweep_options
@_context_option
@click.option(
    "-o",
    "--output",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="yaml: a multi-document stream, as `helm template` prints; json: one v1 List, as "
    "`kubectl get -o json` prints (both go to `kubectl apply -f -`).",
)
@handle_errors
def render(
    spec_path: str,
    overrides: tuple[str, ...],
    envs: tuple[int, ...] | None,
    replicas: tuple[int, ...] | None,
    image: str | None,
    namespace: str | None,
    context: str | None,
    output: str,
) -> None:
    """Print the Kubernetes manifests of SPEC: per env count a ConfigMap and a Job (with more
    than one replica, an Indexed Job and its headless Service).

    \b
    trainer render configs/sweep.yaml | kubectl apply -f -
    trainer render configs/distributed.yaml --replicas 1,2
    trainer render configs/sweep.yaml -o json | jq '.items[].metadata.name'
    """
    from trainer.kube import manifests

    spec = _kube_spec(spec_path, overrides, namespace, context)
    objects = manifests.render(spec, envs, image, replicas_list=replicas)
    if output == "json":
        click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2))
    else:
        click.echo(manifests.to_yaml_stream(objects), nl=False)


@click.command()
@_sweep_options
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
    "--retry-failed",
    "retry",
    is_flag=True,
    help="Kubernetes: delete the sweep's Failed Jobs and create them again (they resume from "
    "their checkpoints); without it, a Job that exists is left as it is.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="With --wait: stop waiting after this long (exit 1; the Jobs keep running).",
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
    replicas: tuple[int, ...] | None,
    image: str | None,
    namespace: str | None,
    context: str | None,
    backend: str | None,
    dry_run: bool,
    wait: bool,
    retry: bool,
    timeout: float | None,
    max_cpus: int | None,
) -> None:
    """Run SPEC once per env count (and replica count), as Kubernetes Jobs or local processes.

    Idempotent: the Jobs' names derive from their spec, so launching again creates only what is
    missing and reports what already exists. Exit 1 when anything failed (the report lists what
    was created, existed or failed; run the same command again to complete the sweep).
    """
    from trainer import launcher

    if namespace:
        overrides = (*overrides, f"kubernetes.namespace={namespace}")
    spec = read_spec(spec_path, overrides)
    if timeout is not None and not wait:
        raise click.UsageError("--timeout needs --wait")
    chosen, why = launcher.explain_backend(backend)
    click.echo(f"backend: {chosen} ({why})")
    if chosen == "local":
        code = launcher.run_local(
            spec,
            envs,
            max_cpus=max_cpus,
            dry_run=dry_run,
            echo=click.echo,
            replicas_list=replicas,
        )
    else:
        code = launcher.launch_kubernetes(
            _settle_namespace(spec, context),
            envs,
            image,
            dry_run=dry_run,
            wait=wait,
            timeout=timeout,
            retry=retry,
            console=_live_console() if wait else None,
            echo=click.echo,
            client_factory=lambda: launcher.make_client(context),
            replicas_list=replicas,
        )
    sys.exit(code)


def _live_console() -> Any:
    """A rich console for `--wait`'s live table on a terminal; None (plain lines, one per
    change) when output goes to a file or pipe, or under CI (`$CI`, as CI services set it)."""
    import os

    if not sys.stdout.isatty() or os.environ.get("CI"):
        return None
    from rich.console import Console as RichConsole

    return RichConsole()


def _resolve_target(
    spec_path: str | None, overrides: tuple[str, ...], namespace: str | None, context: str | None
) -> tuple[JobSpec | None, str]:
    from trainer.kube.client import current_namespace

    spec = _kube_spec(spec_path, overrides, namespace, context) if spec_path else None
    return spec, namespace or (spec.kubernetes.namespace if spec else current_namespace(context))


@click.command()
@click.argument(
    "spec_path", metavar="[SPEC]", required=False, type=click.Path(dir_okay=False, exists=True)
)
@set_option
@_envs_option
@_replicas_option
@click.option("--sweep", "sweep", metavar="ID", help="Show the Jobs of this sweep id.")
@click.option("--all", "show_all", is_flag=True, help="Show every trainer Job in the namespace.")
@_namespace_option
@_context_option
@handle_errors
def status(
    spec_path: str | None,
    overrides: tuple[str, ...],
    envs: tuple[int, ...] | None,
    replicas: tuple[int, ...] | None,
    sweep: str | None,
    show_all: bool,
    namespace: str | None,
    context: str | None,
) -> None:
    """Table of Jobs and their pods: of SPEC's sweep, of --sweep ID, or (--all / neither) of all."""
    from rich.table import Table

    from trainer import launcher
    from trainer.kube import watch
    from trainer.kube.client import selector
    from trainer.kube.manifests import plan_pods

    spec, ns = _resolve_target(spec_path, overrides, namespace, context)
    if spec is not None and not sweep and not show_all:
        sweep = plan_pods(spec, envs, replicas_list=replicas)[0]
    label_selector = selector(sweep=None if show_all else sweep)
    rows = watch.status_rows(launcher.make_client(context), ns, label_selector)
    table = Table(title=f"namespace {ns}" + (f", sweep {sweep}" if sweep and not show_all else ""))
    columns = (
        "job",
        "envs",
        "replicas",
        "state",
        "active",
        "succeeded",
        "failed",
        "age",
        "pods",
        "why",
    )
    for column in columns:
        numeric = column in ("envs", "replicas", "active", "succeeded", "failed")
        wrap = column in ("pods", "why")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=not wrap)
    for row in rows:
        table.add_row(
            row.name,
            row.envs,
            row.replicas,
            row.state,
            str(row.active),
            str(row.succeeded),
            str(row.failed),
            row.age,
            row.pods,
            row.why or "-",
        )
    console = stdout_console()
    console.print(table if rows else f"no trainer Jobs found in namespace {ns} ({label_selector})")
    for row in rows:
        if row.events:
            console.print(f"recent warnings of {row.name}:", highlight=False)
            for line in row.events:
                console.print(f"  {line}", highlight=False, markup=False)


@click.command()
@click.argument("job", required=False, callback=_job_callback)
@click.option(
    "--sweep",
    "sweep",
    metavar="ID",
    help="Every pod of every Job of this sweep, lines prefixed [job]; with -f, retries too.",
)
@click.option("-f", "--follow", is_flag=True, help="Stream new lines until the pods end.")
@_namespace_option
@_context_option
@handle_errors
def logs(
    job: str | None, sweep: str | None, follow: bool, namespace: str | None, context: str | None
) -> None:
    """Print the trainer's log of JOB (its newest pod), or of every pod of --sweep ID.

    \b
    trainer logs sweep-e4-0d8839fb -f
    trainer logs --sweep sweep-1a2b3c4d -f     # every Job, each line prefixed [job]
    """
    from trainer import launcher
    from trainer.kube import watch
    from trainer.kube.client import KubeError, current_namespace, selector

    if bool(job) == bool(sweep):
        raise click.UsageError("give exactly one of JOB or --sweep ID")
    ns = namespace or current_namespace(context)
    client = launcher.make_client(context)
    if sweep:
        sys.exit(watch.sweep_logs(client, ns, selector(sweep=sweep), click.echo, follow))
    assert job is not None
    pod = watch.newest_pod(client, ns, job)
    if pod is None:
        raise KubeError(f"no pod of Job {job} in namespace {ns} (yet); see `trainer status`")
    for line in client.pod_logs(ns, pod, follow=follow):
        click.echo(line)


@click.command()
@click.argument("target", metavar="[SPEC|JOB]", required=False)
@set_option
@_envs_option
@_replicas_option
@click.option("--sweep", "sweep", metavar="ID", help="Cancel every Job of this sweep id.")
@_namespace_option
@_context_option
@handle_errors
def cancel(
    target: str | None,
    overrides: tuple[str, ...],
    envs: tuple[int, ...] | None,
    replicas: tuple[int, ...] | None,
    sweep: str | None,
    namespace: str | None,
    context: str | None,
) -> None:
    """Delete Jobs (their pods with them) and their ConfigMaps and Services: those of SPEC, of
    --sweep ID, or the Job named JOB. Deleting what is already gone is not an error."""
    from trainer import launcher
    from trainer.kube.client import selector
    from trainer.kube.manifests import dependents, plan_pods

    if bool(target) == bool(sweep):
        raise click.UsageError("give exactly one of SPEC, JOB or --sweep ID")
    is_spec = bool(target) and os.path.isfile(target)  # False, not OSError, for a long JOB name
    problem = target and not is_spec and _job_problem(target)
    if problem:  # a mistyped SPEC path was a Job name that "was absent": exit 0, nothing deleted
        raise click.BadParameter(f"no such file, and {problem}", param_hint="'[SPEC|JOB]'")
    spec, ns = _resolve_target(target if is_spec else None, overrides, namespace, context)
    client = launcher.make_client(context)
    if spec is not None:
        points = plan_pods(spec, envs, replicas_list=replicas)[1]
        targets = [("Job", p.job_name) for p in points] + [
            found for p in points for found in dependents(p)
        ]
    elif sweep:
        targets = launcher.sweep_objects(client, ns, selector(sweep=sweep))
    else:  # a Job of one replica has no Service: deleting it is then "absent"
        targets = [("Job", target), ("ConfigMap", target), ("Service", target)]
    sys.exit(launcher.cancel(client, ns, targets, echo=click.echo))
