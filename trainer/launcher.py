"""Sweep → one JobSpec per env count → Kubernetes Jobs, or local processes.

Both backends run the same thing: `trainer run SPEC` with the same Job name and sweep id
(`TRAINER_JOB_NAME`, `TRAINER_SWEEP_ID`; the run id comes from the spec itself) and thread count
(`OMP_NUM_THREADS`). The sweep id is derived from the spec and the env list, so launching the
same sweep twice is idempotent: the Kubernetes backend finds its objects already there and
creates nothing. Reading the sweep back (status, --wait, logs) is `trainer.kube.watch`.

Imports `trainer.spec`, `trainer.sweep` and `trainer.kube` only: no torch, no PyBoy (the
launcher starts fast).
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from trainer.errors import ExitCode
from trainer.kube import manifests, pytorchjob
from trainer.kube.client import ApplyReport, KubeClient, KubeError, kube_config_source, selector
from trainer.kube.watch import job_state, wait_for_jobs
from trainer.spec import ENV_OVERRIDES, JobSpec, SpecError, available_cpus
from trainer.sweep import SweepPoint, plan

Echo = Callable[[str], None]
CommandFactory = Callable[[Path], list[str]]


def default_command(spec_path: Path) -> list[str]:
    """The command of one local run: the trainer CLI of this interpreter."""
    return [sys.executable, "-m", "trainer", "run", str(spec_path)]


def compare_command(sweep: str, out_dir: Path) -> list[str]:
    """After a local sweep: its comparison, logged to the sweep's MLflow run."""
    # Markdown: the output goes to a log, not a terminal wide enough for the rich table.
    return [
        *[sys.executable, "-m", "trainer", "compare", sweep],
        *["--out", str(out_dir), "--format", "markdown"],
    ]


def make_client(context: str | None = None) -> KubeClient:
    """The client the CLI uses (tests replace this function to pass a fake API)."""
    return KubeClient.from_config(context)


def choose_backend(backend: str | None, environ: Mapping[str, str] | None = None) -> str:
    """`kubernetes` when a kubeconfig or in-cluster config exists, else `local`."""
    return explain_backend(backend, environ)[0]


def explain_backend(
    backend: str | None, environ: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """(backend, why): `--backend` when given, else `kubernetes` with the configuration found,
    else `local`, saying that no configuration was found (never a silent fallback)."""
    if backend:
        return backend, "--backend"
    source = kube_config_source(environ)
    if source:
        return "kubernetes", f"{source}; --backend local to run here"
    return "local", (
        "no kubeconfig ($KUBECONFIG, ~/.kube/config) and no in-cluster service account; "
        "--backend kubernetes to insist"
    )


# ---- Kubernetes -----------------------------------------------------------------------------


def describe_plan(sweep: str, points: Sequence[SweepPoint], echo: Echo) -> None:
    echo(f"sweep {sweep}: {len(points)} job(s)")
    for point in points:
        spec = point.spec
        res = manifests.pod_resources(spec)["requests"]
        pods = f"  replicas={point.replicas} (each:" if point.replicas > 1 else ""
        echo(
            f"  {point.job_name}  envs={point.num_envs}{pods}  cpu={res['cpu']}  "
            f"memory={res['memory']}{')' if pods else ''}  namespace={spec.kubernetes.namespace}"
        )


def print_report(report: ApplyReport, echo: Echo) -> None:
    for result in report.results:
        note = f"  ({result.message})" if result.message and result.status != "created" else ""
        echo(f"  {result.status:<8} {result.kind:<9} {result.name}{note}")
    jobs = [r for r in report.results if r.kind == "Job"]
    counts = {
        s: sum(1 for r in jobs if r.status == s) for s in ("created", "exists", "failed", "skipped")
    }
    echo(
        f"Jobs: {counts['created']} created, {counts['exists']} already existed (unchanged), "
        f"{counts['failed']} failed, {counts['skipped']} not attempted"
    )


#: Job states in which a Job's pods may still write checkpoints.
ACTIVE_STATES = ("Running", "Pending", "Suspended")


def same_run_jobs(
    client: KubeClient, namespace: str, points: Sequence[SweepPoint]
) -> list[tuple[SweepPoint, str, str]]:
    """(point, other Job's name, its state) for each Job of the same training run (label
    `pyboy-trainer/run-id`) under another name: a Job made from a different spec."""
    found = []
    for point in points:
        run_selector = f"{selector()},{manifests.LABEL_RUN_ID}={point.run_id}"
        for job in client.list_jobs(namespace, run_selector):
            name = (job.get("metadata") or {}).get("name", "?")
            if name != point.job_name:
                found.append((point, name, job_state(job)))
    return found


def check_same_run_jobs(
    client: KubeClient, namespace: str, points: Sequence[SweepPoint], echo: Echo
) -> bool:
    """Say which existing Jobs train the same run with a different spec (the new Job continues
    their checkpoints and MLflow run); False when one is still active, as two pods would then
    write the same checkpoints."""
    ok = True
    for point, name, state in same_run_jobs(client, namespace, points):
        if state in ACTIVE_STATES:
            ok = False
            echo(
                f"error: Job {name} ({state}) trains the same run {point.run_id} with a different "
                f"spec; {point.job_name} would write the same checkpoints at the same time. Wait "
                f"for it to finish or delete it (trainer cancel {name} -n {namespace}), then "
                "launch again"
            )
        else:
            echo(
                f"  note: Job {name} ({state}) has a different spec but the same training "
                f"settings: {point.job_name} continues its run {point.run_id} (checkpoints and "
                "MLflow run)"
            )
    return ok


def retry_failed(
    client: KubeClient,
    namespace: str,
    points: Sequence[SweepPoint],
    echo: Echo,
    patience_s: float = 60.0,
    poll_seconds: float = 1.0,
) -> bool:
    """Delete the sweep's Failed Jobs and their ConfigMaps (and Services), and wait until they
    are gone, so that the launch creates them again (a Job cannot be restarted; the new one
    resumes the run from its checkpoint). False when they are still there after `patience_s`."""
    by_name = {p.job_name: p for p in points}
    failed = [
        j["metadata"]["name"]
        for j in client.list_jobs(namespace, selector())
        if j["metadata"]["name"] in by_name and job_state(j) == "Failed"
    ]
    doomed: dict[str, set[str]] = {"Job": set()}
    for name in failed:
        dependents = manifests.dependents(by_name[name])
        what = " and ".join(sorted({f"{kind}s" for kind, _ in dependents}))
        echo(f"  retry    Job       {name}  (Failed: deleted with its {what}, created again)")
        client.delete("Job", namespace, name)
        doomed["Job"].add(name)
        for kind, dependent in dependents:
            client.delete(kind, namespace, dependent)
            doomed.setdefault(kind, set()).add(dependent)
    deadline = time.monotonic() + patience_s
    while failed:
        left = {
            n
            for kind, names in doomed.items()
            for n in (o["metadata"]["name"] for o in client.list(kind, namespace, selector()))
            if n in names
        }
        if not left:
            break
        if time.monotonic() >= deadline:
            echo(f"error: still being deleted after {patience_s:g}s: {', '.join(sorted(left))}")
            return False
        time.sleep(poll_seconds)
    return True


def refuse_pytorchjob(spec: JobSpec) -> None:
    """`trainer launch` creates and watches batch/v1 Jobs only: a PyTorchJob is rendered for
    `kubectl apply` or the chart, and refused here before anything is sent."""
    if pytorchjob.is_pytorchjob(spec):
        raise SpecError(
            [
                "kubernetes.distributed_backend: pytorchjob: `trainer launch` creates batch/v1 "
                "Jobs only; apply the PyTorchJobs with `trainer render SPEC | kubectl apply -f -` "
                "or the Helm chart (the Kubeflow training operator must be installed), or unset "
                "it to launch Indexed Jobs"
            ]
        )


def launch_kubernetes(
    spec: JobSpec,
    num_envs_list: Sequence[int] | None = None,
    image: str | None = None,
    dry_run: bool = False,
    wait: bool = False,
    echo: Echo = print,
    client_factory: Callable[[], KubeClient] | None = None,
    poll_seconds: float = 10.0,
    timeout: float | None = None,
    retry: bool = False,
    console: Any = None,
    replicas_list: Sequence[int] | None = None,
) -> int:
    """Create the sweep's ConfigMaps and Jobs, whole or not at all: the API server dry-runs
    every object first (`KubeClient.apply`); objects that exist are left unchanged.

    Returns 0 when every object was created or existed (and, with `wait`, every Job succeeded),
    1 otherwise, and 1 before creating anything when a Job of the same training run (other
    spec, same `run_id`) is still active. With `retry`, the sweep's Failed Jobs are deleted
    (with their ConfigMaps) and created again. The report says which Jobs were created, existed or failed; running the same
    command again completes a partial sweep without duplicates. Invalid input raises `SpecError`
    before anything is sent.
    """
    refuse_pytorchjob(spec)
    sweep, points = manifests.plan_pods(spec, num_envs_list, image, replicas_list=replicas_list)
    objects = manifests.render(spec, num_envs_list, image, sweep, replicas_list)
    namespace = points[0].spec.kubernetes.namespace or manifests.DEFAULT_NAMESPACE
    describe_plan(sweep, points, echo)
    if dry_run:
        echo("dry run: nothing was sent (`trainer render` prints the manifests)")
        return ExitCode.OK
    try:
        client = (client_factory or make_client)()
    except KubeError as exc:  # a configuration problem: running again would not help
        echo(f"error: {exc}")
        echo("nothing was sent")
        return ExitCode.FAILURE
    try:
        if not check_same_run_jobs(client, namespace, points, echo):
            echo("nothing was created")
            return ExitCode.FAILURE
        if retry and not retry_failed(client, namespace, points, echo):
            return ExitCode.FAILURE
        report = client.apply(objects)
    except KubeError as exc:
        partial = getattr(exc, "report", None)
        if partial is not None:
            print_report(partial, echo)
        echo(f"error: {exc}")
        if partial is not None and partial.of("created"):
            echo("nothing else was changed; run the same command again to complete the sweep")
        else:
            echo("nothing was created; run the same command again once the API server answers")
        return ExitCode.FAILURE
    print_report(report, echo)
    if report.rejected_in_dry_run:
        echo(
            "error: the API server rejected the sweep in a dry run (dryRun=All), so nothing was "
            "created; fix the cause above and run the same command again"
        )
        return ExitCode.FAILURE
    if not report.ok:
        echo(
            "error: some objects were not created; fix the cause and run the same command again "
            "(existing objects are kept, missing ones are created)"
        )
        return ExitCode.FAILURE
    echo(f"follow with: trainer status --sweep {sweep} -n {namespace}")
    echo(f"compare the runs in MLflow: trainer compare {sweep}")
    if wait:
        names = [p.job_name for p in points]
        return wait_for_jobs(client, namespace, names, echo, poll_seconds, timeout, console=console)
    return ExitCode.OK


def cancel(
    client: KubeClient, namespace: str, targets: Iterable[tuple[str, str]], echo: Echo = print
) -> int:
    """Delete (kind, name) objects; Jobs with Background propagation, so their pods go too."""
    count = 0
    for kind, name in targets:
        result = client.delete(kind, namespace, name)
        echo(f"  {result:<8} {kind:<9} {name}")
        count += result == "deleted"
    echo(f"{count} object(s) deleted")
    return ExitCode.OK


def sweep_objects(client: KubeClient, namespace: str, label_selector: str) -> list[tuple[str, str]]:
    """(kind, name) of our Jobs, ConfigMaps and Services that match a selector, Jobs first."""
    return [
        (kind, item["metadata"]["name"])
        for kind in ("Job", "ConfigMap", "Service")
        for item in client.list(kind, namespace, label_selector)
    ]


# ---- local processes ------------------------------------------------------------------------


def child_environment(
    point: SweepPoint, sweep: str, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The parent's environment, less `TRAIN_*` overrides (already applied to the spec file:
    applying `TRAIN_ENVS` again would undo the sweep), plus what a pod gets."""
    env = {
        k: v for k, v in (os.environ if base is None else base).items() if k not in ENV_OVERRIDES
    }
    env.update(manifests.run_env(point.spec, point.job_name, sweep, tracking_uri=None))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_local(
    spec: JobSpec,
    num_envs_list: Sequence[int] | None = None,
    command: CommandFactory = default_command,
    max_cpus: int | None = None,
    dry_run: bool = False,
    echo: Echo = print,
    environ: Mapping[str, str] | None = None,
    replicas_list: Sequence[int] | None = None,
) -> int:
    """Run each sweep point as `trainer run <spec file>` locally, as many at once as fit the
    usable CPUs (a point larger than the machine runs alone; one of several replicas needs
    their CPUs together, as `trainer run` starts them all). Output lines are prefixed with the
    point's name. Returns 1 when any run failed, else 0."""
    sweep, points = plan(spec, num_envs_list, replicas_list=replicas_list)
    cpus = max_cpus or available_cpus()
    echo(f"sweep {sweep}: {len(points)} local run(s) on {cpus} CPU(s)")
    with tempfile.TemporaryDirectory(prefix="trainer-sweep-") as tmp:
        paths = {}
        for point in points:
            paths[point.job_name] = path = Path(tmp) / f"{point.job_name}.yaml"
            path.write_text(point.spec.to_yaml())
        if dry_run:
            for point in points:
                echo(f"  {point.job_name}: {' '.join(command(paths[point.job_name]))}")
            echo("dry run: nothing was started")
            return ExitCode.OK
        code = _schedule(points, sweep, paths, command, cpus, echo, environ)
    if code == ExitCode.OK and spec.mlflow.enabled:
        _compare(points[0], sweep, Path(spec.checkpoint.dir) / sweep, echo, environ)
    return code


def _compare(
    point: SweepPoint, sweep: str, out_dir: Path, echo: Echo, environ: Mapping[str, str] | None
) -> None:
    """Run `trainer compare` on the finished sweep (same MLflow settings as its runs). Its
    failure is reported, not fatal: the runs themselves succeeded."""
    args = compare_command(sweep, out_dir)
    if point.spec.mlflow.tracking_uri:
        args += ["--tracking-uri", point.spec.mlflow.tracking_uri]
    done = subprocess.run(
        args, capture_output=True, text=True, env=child_environment(point, sweep, environ)
    )
    for line in (done.stdout + done.stderr).splitlines():
        echo(f"[compare] {line}")
    if done.returncode != 0:
        echo(f"[compare] failed with exit {done.returncode}: run `trainer compare {sweep}` again")


def _schedule(
    points: Sequence[SweepPoint],
    sweep: str,
    paths: Mapping[str, Path],
    command: CommandFactory,
    cpus: int,
    echo: Echo,
    environ: Mapping[str, str] | None,
) -> int:
    lock = threading.Lock()
    done: queue.Queue[tuple[str, int]] = queue.Queue()
    pending = list(points)
    running: dict[str, tuple[subprocess.Popen[str], float, str]] = {}
    codes: dict[str, int] = {}

    def say(line: str) -> None:
        with lock:
            echo(line)

    def pump(name: str, prefix: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            say(f"[{prefix}] {line.rstrip()}")
        done.put((name, proc.wait()))

    try:
        while pending or running:
            while pending:
                point = pending[0]
                need = point.spec.requested_cpus() * point.replicas
                used = sum(n for _, n, _ in running.values())
                if running and used + need > cpus:
                    break
                pending.pop(0)
                prefix = f"{point.spec.name}-{point.label}"
                say(f"[{prefix}] start {point.job_name} ({need:g} CPUs)")
                proc = subprocess.Popen(
                    command(paths[point.job_name]),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    bufsize=1,
                    env=child_environment(point, sweep, environ),
                )
                running[point.job_name] = (proc, need, prefix)
                threading.Thread(
                    target=pump, args=(point.job_name, prefix, proc), daemon=True
                ).start()
            name, code = done.get()
            _, _, prefix = running.pop(name)
            codes[name] = code
            say(f"[{prefix}] {'done' if code == 0 else 'FAILED'}: {name} exited with {code}")
    except KeyboardInterrupt:
        for proc, _, _ in running.values():
            proc.terminate()
        for proc, _, _ in running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise
    failed = [n for n, c in codes.items() if c != 0]
    say(
        f"{len(codes) - len(failed)} of {len(codes)} run(s) succeeded"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return ExitCode.FAILURE if failed else ExitCode.OK
