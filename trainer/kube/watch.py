"""Reading a sweep on the cluster: each Job's state and what holds it up (`trainer status`),
waiting for the Jobs to finish (`launch --wait`), and their pods' logs (`trainer logs`).

A Job of several replicas (an Indexed Job) has one pod per index at a time: its pods are shown
per index (`0 Running, 1 Pending`) and its log lines prefixed `[<job>/<index>]`.

Imports `trainer.kube.manifests` and `trainer.kube.client` only (rich lazily, for tables).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from trainer.errors import ExitCode
from trainer.kube import manifests
from trainer.kube.client import KubeClient, KubeError, event_time, selector

Echo = Callable[[str], None]


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
                pods = pods_by_job(client.list_pods(namespace, selector()))
                live.update(_wait_table(states, jobs, pods), refresh=True)
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


def _wait_table(
    states: Mapping[str, str],
    jobs: Mapping[str, Any],
    pods: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> Any:
    """The live table of `launch --wait` on a terminal: Job, state, pod counts, its pods (per
    index for several replicas), why."""
    from rich.table import Table

    table = Table(title="waiting for the sweep's Jobs (Ctrl-C stops waiting, not the Jobs)")
    for column in ("job", "state", "active", "succeeded", "failed", "pods", "why"):
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
            pods_summary((pods or {}).get(name, [])),
            job_reason(jobs[name]) if name in jobs else "deleted",
        )
    return table


def _created(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


def pod_index(pod: Mapping[str, Any]) -> str | None:
    """The index of a pod of an Indexed Job (a Job of several replicas); None otherwise."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return labels.get(manifests.LABEL_JOB_INDEX)


def pods_by_job(pods: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Pods by the Job that made them (the label the Job controller sets), oldest first."""
    by_job: dict[str, list[Mapping[str, Any]]] = {}
    for pod in sorted(pods, key=_created):
        labels = (pod.get("metadata") or {}).get("labels") or {}
        owner = labels.get(manifests.LABEL_JOB_NAME) or labels.get("job-name", "")
        by_job.setdefault(owner, []).append(pod)
    return by_job


def pods_summary(pods: Sequence[Mapping[str, Any]]) -> str:
    """One Job's pods: `name Phase, ...`; for an Indexed Job, per index its newest pod's
    phase and how many pods that index lost before (`0 Running, 1 Pending (1 failed)`)."""
    if not pods:
        return "-"
    if not any(pod_index(p) is not None for p in pods):
        return ", ".join(
            f"{(p.get('metadata') or {}).get('name', '?')} {(p.get('status') or {}).get('phase', '?')}"
            for p in pods
        )
    by_index: dict[str, list[Mapping[str, Any]]] = {}
    for pod in sorted(pods, key=_created):
        by_index.setdefault(pod_index(pod) or "?", []).append(pod)
    parts = []
    for index in sorted(by_index, key=lambda i: (not i.isdigit(), int(i) if i.isdigit() else 0)):
        *before, newest = by_index[index]
        lost = sum((p.get("status") or {}).get("phase") == "Failed" for p in before)
        note = f" ({lost} failed)" if lost else ""
        parts.append(f"{index} {(newest.get('status') or {}).get('phase', '?')}{note}")
    return ", ".join(parts)


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
    replicas: str
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
    by_job = pods_by_job(client.list_pods(namespace, label_selector))
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
                replicas=job_labels.get(manifests.LABEL_REPLICAS, "1"),
                sweep=job_labels.get(manifests.LABEL_SWEEP, "-"),
                state=job_state(job),
                active=int(status.get("active") or 0),
                succeeded=int(status.get("succeeded") or 0),
                failed=int(status.get("failed") or 0),
                age=_age(meta.get("creationTimestamp"), now),
                pods=pods_summary(its_pods),
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
    Job (`[<job>]`, `[<job>/<index>]` for a pod of several replicas), oldest pods first. With `follow`, every pod is streamed at once, and pods
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
            index = pod_index(pod)
            job = job if index is None else f"{job}/{index}"
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
