"""Sweep → one JobSpec per env count → Kubernetes Jobs, or local processes.

Both backends run the same thing: `trainer run SPEC` with the same run identity
(`TRAINER_JOB_NAME`, `TRAINER_SWEEP_ID`) and thread count (`OMP_NUM_THREADS`). The sweep id is
derived from the spec and the env list, so launching the same sweep twice is idempotent: the
Kubernetes backend finds its objects already there and creates nothing.

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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainer.errors import ExitCode
from trainer.kube import manifests
from trainer.kube.client import (
    ApplyReport,
    KubeClient,
    KubeError,
    event_time,
    kube_config_source,
    selector,
)
from trainer.spec import ENV_OVERRIDES, JobSpec, available_cpus
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
        echo(
            f"  {point.job_name}  envs={point.num_envs}  cpu={res['cpu']}  memory={res['memory']}  "
            f"namespace={spec.kubernetes.namespace}"
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
    """Delete the sweep's Failed Jobs and their ConfigMaps, and wait until they are gone, so
    that the launch creates them again (a Job cannot be restarted; the new one resumes the run
    from its checkpoint). False when they are still there after `patience_s`."""
    by_name = {p.job_name: p for p in points}
    failed = [
        j["metadata"]["name"]
        for j in client.list_jobs(namespace, selector())
        if j["metadata"]["name"] in by_name and job_state(j) == "Failed"
    ]
    doomed: dict[str, set[str]] = {"Job": set(), "ConfigMap": set()}
    for name in failed:
        echo(f"  retry    Job       {name}  (Failed: deleted with its ConfigMaps, created again)")
        client.delete("Job", namespace, name)
        doomed["Job"].add(name)
        for configmap in manifests.configmap_names(by_name[name]):
            client.delete("ConfigMap", namespace, configmap)
            doomed["ConfigMap"].add(configmap)
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
    sweep, points = manifests.plan_pods(spec, num_envs_list, image)
    objects = manifests.render(spec, num_envs_list, image, sweep)
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


def job_state(job: Mapping[str, Any]) -> str:
    """Complete, Failed, Running, Pending or Suspended, from a Job's status."""
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "Complete"
        if cond.get("status") == "True" and cond.get("type") in ("Failed", "FailureTarget"):
            return "Failed"
    if (job.get("spec") or {}).get("suspend"):
        return "Suspended"
    if status.get("active") or status.get("ready"):
        return "Running"
    return "Pending"


def wait_for_jobs(
    client: KubeClient,
    namespace: str,
    names: Sequence[str],
    echo: Echo,
    poll_seconds: float = 10.0,
    timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    console: Any = None,
) -> int:
    """Poll until every named Job is Complete or Failed; 1 when any failed or vanished, or when
    `timeout` seconds passed first (the Jobs keep running: only the waiting ends). A line per
    change of state; with a rich `console` (a terminal), a live table of the Jobs instead."""
    last: dict[str, str] = {}
    deadline = None if timeout is None else clock() + timeout
    live = None
    if console is not None:
        from rich.live import Live

        live = Live(console=console, auto_refresh=False, transient=False)
        live.start()
    try:
        while True:
            try:
                jobs = {j["metadata"]["name"]: j for j in client.list_jobs(namespace, selector())}
            except KubeError as exc:
                echo(f"error: {exc}")
                return ExitCode.FAILURE
            states = {n: job_state(jobs[n]) if n in jobs else "Missing" for n in names}
            if live is not None:
                live.update(_wait_table(states, jobs), refresh=True)
            else:
                for name, state in states.items():
                    if last.get(name) != state:
                        echo(f"  {name}: {state}")
            last = states
            if all(s in ("Complete", "Failed", "Missing") for s in states.values()):
                if live is not None:
                    live.stop()
                    live = None
                bad = [n for n, s in states.items() if s != "Complete"]
                echo("all Jobs complete" if not bad else f"error: not successful: {', '.join(bad)}")
                return ExitCode.FAILURE if bad else ExitCode.OK
            if deadline is not None and clock() >= deadline:
                if live is not None:
                    live.stop()
                    live = None
                open_jobs = [f"{n} ({s})" for n, s in states.items() if s not in ("Complete",)]
                echo(
                    f"error: --timeout {timeout:g}s passed; not finished: {', '.join(open_jobs)} "
                    "(they keep running: trainer status, or trainer cancel)"
                )
                return ExitCode.FAILURE
            time.sleep(poll_seconds)
    finally:
        if live is not None:
            live.stop()


def _wait_table(states: Mapping[str, str], jobs: Mapping[str, Any]) -> Any:
    """The live table of `launch --wait` on a terminal: Job, state, pods, why."""
    from rich.table import Table

    table = Table(title="waiting for the sweep's Jobs (Ctrl-C stops waiting, not the Jobs)")
    for column in ("job", "state", "active", "succeeded", "failed", "why"):
        table.add_column(
            column, justify="right" if column in ("active", "succeeded", "failed") else "left"
        )
    for name, state in states.items():
        status = (jobs.get(name) or {}).get("status") or {}
        table.add_row(
            name,
            state,
            str(status.get("active") or 0),
            str(status.get("succeeded") or 0),
            str(status.get("failed") or 0),
            job_reason(jobs[name]) if name in jobs else "deleted",
        )
    return table


def _age(timestamp: Any, now: datetime | None = None) -> str:
    if not timestamp:
        return "-"
    if isinstance(timestamp, str):
        timestamp = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int(((now or datetime.now(UTC)) - timestamp).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


@dataclass
class JobRow:
    name: str
    envs: str
    sweep: str
    state: str
    active: int
    succeeded: int
    failed: int
    age: str
    pods: str
    why: str = ""  # what holds the Job up or ended it (a waiting reason, a condition)
    events: list[str] = field(default_factory=list)  # its and its pods' recent warnings


#: Warnings shown per Job by `trainer status`.
RECENT_EVENTS = 3


def _short(text: Any, limit: int = 120) -> str:
    line = " ".join(str(text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def pod_reason(pod: Mapping[str, Any]) -> str:
    """Why a pod is not running as it should: its container waiting (ImagePullBackOff,
    CrashLoopBackOff, CreateContainerConfigError...) or terminated with an error, or the pod not
    scheduled (Unschedulable, with the scheduler's message); "" otherwise."""
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if state.get("waiting") and state["waiting"].get("reason") not in (
            None,
            "ContainerCreating",
        ):
            waiting = state["waiting"]
            return _short(f"{waiting.get('reason')}: {waiting.get('message') or ''}".rstrip(": "))
        done = state.get("terminated")
        if done and done.get("exitCode"):
            return _short(f"exit {done['exitCode']} ({done.get('reason') or 'Error'})")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return _short(f"{cond.get('reason') or 'Unschedulable'}: {cond.get('message') or ''}")
    return ""


def job_reason(job: Mapping[str, Any]) -> str:
    """Why a Job ended or waits: its Failed condition's reason (BackoffLimitExceeded,
    DeadlineExceeded, PodFailurePolicy) and message, or a suspension (Kueue's queue)."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Failed", "FailureTarget"):
            return _short(f"{cond.get('reason') or 'Failed'}: {cond.get('message') or ''}")
    if (job.get("spec") or {}).get("suspend"):
        queue = ((job.get("metadata") or {}).get("labels") or {}).get(manifests.LABEL_QUEUE)
        return f"waiting for admission by queue {queue}" if queue else "suspended"
    return ""


def status_rows(
    client: KubeClient,
    namespace: str,
    label_selector: str,
    now: datetime | None = None,
    events: bool = True,
) -> list[JobRow]:
    """One row per Job matching the selector, with its pods' phases and what holds them up,
    and (with `events`) the recent warnings about the Job and its pods (newest Jobs last)."""
    jobs = client.list_jobs(namespace, label_selector)
    pods = client.list_pods(namespace, label_selector)
    by_job: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(manifests.LABEL_JOB_NAME) or (
            meta.get("labels") or {}
        ).get("job-name", "")
        by_job.setdefault(owner, []).append(pod)
    rows = []
    for job in sorted(
        jobs, key=lambda j: str((j.get("metadata") or {}).get("creationTimestamp") or "")
    ):
        meta, status = job.get("metadata") or {}, job.get("status") or {}
        job_labels = meta.get("labels") or {}
        name = meta.get("name", "?")
        its_pods = by_job.get(name, [])
        reasons = [r for r in (pod_reason(p) for p in its_pods) if r]
        warnings: list[str] = []
        if events:
            objects = [name] + [(p.get("metadata") or {}).get("name", "") for p in its_pods]
            found = [e for o in objects for e in client.list_events(namespace, o)]
            warnings = [
                _short(
                    f"{(e.get('involvedObject') or {}).get('name', '?')}: {e.get('reason')}: "
                    f"{e.get('message') or ''}"
                )
                for e in sorted(found, key=event_time)
                if e.get("type") == "Warning"
            ][-RECENT_EVENTS:]
        rows.append(
            JobRow(
                name=name,
                envs=job_labels.get(manifests.LABEL_NUM_ENVS, "?"),
                sweep=job_labels.get(manifests.LABEL_SWEEP, "-"),
                state=job_state(job),
                active=int(status.get("active") or 0),
                succeeded=int(status.get("succeeded") or 0),
                failed=int(status.get("failed") or 0),
                age=_age(meta.get("creationTimestamp"), now),
                pods=", ".join(
                    f"{(p.get('metadata') or {}).get('name', '?')} "
                    f"{(p.get('status') or {}).get('phase', '?')}"
                    for p in its_pods
                )
                or "-",
                why=job_reason(job) or (reasons[-1] if reasons else ""),
                events=warnings,
            )
        )
    return rows


#: Pod phases whose container has started, so its log can be read or streamed.
_LOGGABLE = ("Running", "Succeeded", "Failed")


def sweep_logs(
    client: KubeClient,
    namespace: str,
    label_selector: str,
    echo: Echo,
    follow: bool = False,
    poll_seconds: float = 5.0,
) -> int:
    """The logs of every pod of the Jobs matching `label_selector`, each line prefixed with its
    Job (`[<job>]`), oldest pods first. With `follow`, every pod is streamed at once, and pods
    that start later (a Job's retries) are followed too, until every Job has finished and every
    stream has ended. 1 when no Job matches."""
    lock = threading.Lock()
    followed: set[str] = set()
    streams: list[threading.Thread] = []

    def say(line: str) -> None:
        with lock:
            echo(line)

    def pump(job: str, pod: str) -> None:
        try:
            for line in client.pod_logs(namespace, pod, follow=follow):
                say(f"[{job}] {line}")
        except KubeError as exc:  # one pod's log lost is reported, the others go on
            say(f"[{job}] (log of {pod} ended: {exc})")

    while True:
        jobs = client.list_jobs(namespace, label_selector)
        if not jobs:
            echo(f"error: no trainer Jobs in namespace {namespace} ({label_selector})")
            return ExitCode.FAILURE
        pods = sorted(
            client.list_pods(namespace, label_selector),
            key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""),
        )
        for pod in pods:
            meta = pod.get("metadata") or {}
            name = meta.get("name", "")
            phase = (pod.get("status") or {}).get("phase")
            if name in followed or phase not in _LOGGABLE:
                continue
            followed.add(name)
            job = (meta.get("labels") or {}).get(manifests.LABEL_JOB_NAME, "?")
            if not follow:
                pump(job, name)
                continue
            thread = threading.Thread(target=pump, args=(job, name), daemon=True)
            thread.start()
            streams.append(thread)
        if not follow:
            return ExitCode.OK
        finished = all(job_state(j) in ("Complete", "Failed") for j in jobs)
        if finished and not any(t.is_alive() for t in streams):
            return ExitCode.OK
        time.sleep(poll_seconds)


def newest_pod(client: KubeClient, namespace: str, job: str) -> str | None:
    pods = client.list_pods(namespace, f"{manifests.LABEL_JOB_NAME}={job}")
    if not pods:
        return None
    pods.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
    return pods[-1]["metadata"]["name"]


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
    """(kind, name) of our Jobs and ConfigMaps that match a selector, Jobs first."""
    jobs = [("Job", j["metadata"]["name"]) for j in client.list_jobs(namespace, label_selector)]
    maps = [
        ("ConfigMap", c["metadata"]["name"])
        for c in client.list_configmaps(namespace, label_selector)
    ]
    return jobs + maps


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
) -> int:
    """Run each sweep point as `trainer run <spec file>` locally, as many at once as fit the
    usable CPUs (a point larger than the machine runs alone). Output lines are prefixed with
    the point's name. Returns 1 when any run failed, else 0."""
    sweep, points = plan(spec, num_envs_list)
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
                need = point.spec.requested_cpus()
                used = sum(n for _, n, _ in running.values())
                if running and used + need > cpus:
                    break
                pending.pop(0)
                prefix = f"{point.spec.name}-e{point.num_envs}"
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
