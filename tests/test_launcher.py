"""The launcher: Kubernetes backend against a fake API at the client boundary (exact bodies,
idempotency, partial failure, unreachable cluster), the CLI's exit codes, and the local backend
with a tiny fake command instead of training."""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from test_kube_tools import ROOT

from trainer import launcher
from trainer import sweep as sweeps
from trainer.cli import main
from trainer.kube import manifests as kube
from trainer.kube import watch
from trainer.kube.client import KubeClient, selector
from trainer.spec import ENV_RDZV_ENDPOINT, ENV_RDZV_ID, validate_spec

SWEEP = {"name": "sweep", "sweep": {"num_envs": [1, 2, 4]}, "kubernetes": {"namespace": "ml"}}


class FakeApiException(Exception):
    """Shaped like kubernetes.client.exceptions.ApiException (status, reason, body)."""

    def __init__(self, status: int, reason: str, message: str = ""):
        super().__init__(f"({status}) {reason}")
        self.status, self.reason = status, reason
        self.body = json.dumps({"kind": "Status", "message": message or reason})


class FakeStream:
    """The urllib3 response of a followed log: `stream(amt)` yields chunks."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, amt: int = 4096) -> Any:
        for start in range(0, len(self.data), 5):  # small chunks: lines split across them
            yield self.data[start : start + 5]


class FakeCluster:
    """Stands in for both BatchV1Api and CoreV1Api: keeps objects, records every call with a
    deep copy of its body ("dry-run" for a create with `dry_run="All"`, which stores nothing),
    refuses the objects in `reject` (by kind and name; dry run or not, as a server that finds them invalid
    does), and raises the exception queued in `fail_on` for a given storing create (1-based)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str, dict[str, Any] | None]] = []
        self.reject: dict[tuple[str, str], BaseException] = {}  # (kind, name)
        self.fail_on: dict[int, BaseException] = {}
        self.creates = 0
        self.logs: dict[str, str] = {}

    # -- create --
    def _create(
        self, kind: str, namespace: str, body: dict[str, Any], dry_run: str | None
    ) -> dict[str, Any]:
        assert dry_run in (None, "All"), dry_run
        self.calls.append(("dry-run" if dry_run else "create", kind, copy.deepcopy(body)))
        if (kind, body["metadata"]["name"]) in self.reject:
            raise self.reject[kind, body["metadata"]["name"]]
        if not dry_run:
            self.creates += 1
            if self.creates in self.fail_on:
                raise self.fail_on[self.creates]
        key = (kind, namespace, body["metadata"]["name"])
        if key in self.objects:
            raise FakeApiException(409, "Conflict", f'{kind.lower()}s "{key[2]}" already exists')
        stored = copy.deepcopy(body)
        if not dry_run:  # the server assigns the uid
            stored["metadata"]["uid"] = f"uid-{self.creates}"
            self.objects[key] = copy.deepcopy(stored)
        return stored

    def create_namespaced_job(
        self, namespace: str, body: dict, dry_run: str | None = None, **kwargs: Any
    ) -> dict:
        return self._create("Job", namespace, body, dry_run)

    def create_namespaced_config_map(
        self, namespace: str, body: dict, dry_run: str | None = None, **kwargs: Any
    ) -> dict:
        return self._create("ConfigMap", namespace, body, dry_run)

    def create_namespaced_service(
        self, namespace: str, body: dict, dry_run: str | None = None, **kwargs: Any
    ) -> dict:
        return self._create("Service", namespace, body, dry_run)

    # -- list --
    def _list(self, kind: str, namespace: str, label_selector: str) -> dict[str, Any]:
        self.calls.append(("list", kind, {"selector": label_selector}))
        wanted = dict(part.split("=", 1) for part in label_selector.split(",") if part)
        items = [
            obj
            for (k, ns, _), obj in self.objects.items()
            if k == kind
            and ns == namespace
            and wanted.items() <= (obj["metadata"].get("labels") or {}).items()
        ]
        return {"items": copy.deepcopy(items)}

    def list_namespaced_job(self, namespace: str, label_selector: str = "", **kwargs: Any) -> dict:
        return self._list("Job", namespace, label_selector)

    def list_namespaced_config_map(
        self, namespace: str, label_selector: str = "", **kwargs: Any
    ) -> dict:
        return self._list("ConfigMap", namespace, label_selector)

    def list_namespaced_pod(self, namespace: str, label_selector: str = "", **kwargs: Any) -> dict:
        return self._list("Pod", namespace, label_selector)

    def list_namespaced_service(
        self, namespace: str, label_selector: str = "", **kwargs: Any
    ) -> dict:
        return self._list("Service", namespace, label_selector)

    def list_namespaced_event(
        self, namespace: str, field_selector: str = "", **kwargs: Any
    ) -> dict:
        self.calls.append(("list", "Event", {"selector": field_selector}))
        name = field_selector.removeprefix("involvedObject.name=")
        items = [
            obj
            for (kind, ns, _), obj in self.objects.items()
            if kind == "Event" and ns == namespace and obj["involvedObject"]["name"] == name
        ]
        return {"items": copy.deepcopy(items)}

    def read_namespaced_pod_log(
        self, name: str, namespace: str, container: str, **kwargs: Any
    ) -> Any:
        self.calls.append(("logs", "Pod", {"name": name, "container": container}))
        if kwargs.get("follow"):  # a streamed response (`_preload_content=False`)
            return FakeStream(self.logs[name].encode())
        return self.logs[name]

    # -- patch --
    def _patch(self, kind: str, name: str, namespace: str, body: dict) -> dict:
        """A strategic merge patch of `metadata.ownerReferences` (merged by uid), the one patch
        the client sends."""
        self.calls.append(("patch", kind, {"name": name, **copy.deepcopy(body)}))
        if (kind, namespace, name) not in self.objects:
            raise FakeApiException(404, "Not Found")
        meta = self.objects[kind, namespace, name]["metadata"]
        owners = {o["uid"]: o for o in meta.get("ownerReferences", [])}
        owners.update({o["uid"]: o for o in body["metadata"]["ownerReferences"]})
        meta["ownerReferences"] = list(owners.values())
        return self.objects[kind, namespace, name]

    def patch_namespaced_config_map(
        self, name: str, namespace: str, body: dict, **kwargs: Any
    ) -> dict:
        return self._patch("ConfigMap", name, namespace, body)

    def patch_namespaced_service(
        self, name: str, namespace: str, body: dict, **kwargs: Any
    ) -> dict:
        return self._patch("Service", name, namespace, body)

    # -- delete --
    def _delete(self, kind: str, name: str, namespace: str, **kwargs: Any) -> None:
        self.calls.append(
            (
                "delete",
                kind,
                {"name": name, **{k: v for k, v in kwargs.items() if not k.startswith("_")}},
            )
        )
        if self.objects.pop((kind, namespace, name), None) is None:
            raise FakeApiException(404, "Not Found")

    def delete_namespaced_job(self, name: str, namespace: str, **kwargs: Any) -> None:
        self._delete("Job", name, namespace, **kwargs)

    def delete_namespaced_config_map(self, name: str, namespace: str, **kwargs: Any) -> None:
        self._delete("ConfigMap", name, namespace, **kwargs)

    def delete_namespaced_service(self, name: str, namespace: str, **kwargs: Any) -> None:
        self._delete("Service", name, namespace, **kwargs)

    # -- helpers for tests --
    def add_pod(
        self, job: str, namespace: str, phase: str, created: str, index: int | None = None
    ) -> str:
        """A pod of `job` (with `index`: of an Indexed Job, labelled as the controller does)."""
        name = f"{job}-{len(self.objects)}"
        labels = {
            **self.objects[("Job", namespace, job)]["metadata"]["labels"],
            kube.LABEL_JOB_NAME: job,
        }
        if index is not None:
            labels[kube.LABEL_JOB_INDEX] = str(index)
        self.objects[("Pod", namespace, name)] = {
            "metadata": {"name": name, "labels": labels, "creationTimestamp": created},
            "status": {"phase": phase},
        }
        return name

    def add_event(
        self, namespace: str, about: str, kind: str, reason: str, message: str, at: str
    ) -> None:
        name = f"{about}.{len(self.objects)}"
        self.objects[("Event", namespace, name)] = {
            "metadata": {"name": name},
            "involvedObject": {"name": about},
            "type": kind,
            "reason": reason,
            "message": message,
            "lastTimestamp": at,
        }

    def created(self) -> list[tuple[str, str]]:
        return [(kind, body["metadata"]["name"]) for op, kind, body in self.calls if op == "create"]


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


def launch(
    cluster: FakeCluster, data: dict = SWEEP, envs: list[int] | None = None, **kwargs: Any
) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = launcher.launch_kubernetes(
        validate_spec(data),
        envs,
        echo=lines.append,
        client_factory=lambda: KubeClient(cluster, cluster),
        **kwargs,
    )
    return code, lines


def test_launch_dry_runs_then_sends_exactly_the_rendered_bodies(cluster: FakeCluster) -> None:
    code, lines = launch(cluster)
    assert code == 0
    expected = kube.render(validate_spec(SWEEP))
    sent = [call for call in cluster.calls if call[0] in ("dry-run", "create")]
    assert [op for op, _, _ in sent] == ["dry-run"] * 6 + ["create"] * 6
    assert [body for _, _, body in sent] == expected + expected
    assert [kind for _, kind, _ in sent] == ["ConfigMap", "Job"] * 6
    assert "Jobs: 3 created, 0 already existed (unchanged), 0 failed, 0 not attempted" in lines


def test_configmaps_are_owned_by_their_job_once_it_exists(cluster: FakeCluster) -> None:
    """Issue 12: after its Job is created, each ConfigMap it mounts gets an ownerReference to
    it (the uid exists only then), so the TTL's clean-up of the Job removes them too."""
    assert launch(cluster)[0] == 0
    jobs = {name: obj for (kind, _, name), obj in cluster.objects.items() if kind == "Job"}
    for (kind, _, name), obj in cluster.objects.items():
        if kind == "ConfigMap":
            assert obj["metadata"]["ownerReferences"] == [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": name,
                    "uid": jobs[name]["metadata"]["uid"],
                }
            ]
    patches = [body["name"] for op, _, body in cluster.calls if op == "patch"]
    assert sorted(patches) == sorted(jobs)
    cluster.calls.clear()
    assert launch(cluster)[0] == 0  # Jobs that existed: their ConfigMaps are not touched
    assert not [op for op, _, _ in cluster.calls if op == "patch"]


def test_launch_again_creates_nothing_and_reports_what_exists(cluster: FakeCluster) -> None:
    assert launch(cluster)[0] == 0
    before = copy.deepcopy(cluster.objects)
    code, lines = launch(cluster)
    assert code == 0
    assert cluster.objects == before
    assert "Jobs: 0 created, 3 already existed (unchanged), 0 failed, 0 not attempted" in lines
    assert sum("exists" in line and "exists, unchanged" in line for line in lines) == 6


SERVER_REJECTIONS = [
    # (case, error of the server for the sweep's 3rd object: the e2 ConfigMap)
    ("invalid", FakeApiException(422, "Unprocessable Entity", 'ConfigMap "x" is invalid: data')),
    (
        "forbidden",
        FakeApiException(403, "Forbidden", "configmaps is forbidden: User cannot create"),
    ),
    ("over quota", FakeApiException(403, "Forbidden", "exceeded quota: compute, requested: cpu=3")),
    ("admission webhook", FakeApiException(400, "Bad Request", 'admission webhook "p" denied it')),
]


@pytest.mark.parametrize(
    ("case", "error"), SERVER_REJECTIONS, ids=[c[0] for c in SERVER_REJECTIONS]
)
def test_a_sweep_the_server_rejects_in_dry_run_is_not_created_at_all(
    cluster: FakeCluster, case: str, error: FakeApiException
) -> None:
    """One object refused: nothing created, exit 1, the server's own message; fixed, the same
    command creates the whole sweep."""
    manifests = kube.render(validate_spec(SWEEP))
    refused = manifests[2]["metadata"]["name"]
    cluster.reject["ConfigMap", refused] = error
    code, lines = launch(cluster)
    assert code == 1
    assert cluster.objects == {} and cluster.created() == []
    assert {op for op, _, _ in cluster.calls} == {"list", "dry-run"}
    assert any(refused in line and json.loads(error.body)["message"] in line for line in lines)
    assert any(line.startswith("error:") and "nothing was created" in line for line in lines)
    assert "Jobs: 0 created, 0 already existed (unchanged), 0 failed, 3 not attempted" in lines
    del cluster.reject["ConfigMap", refused]
    assert launch(cluster)[0] == 0
    assert sorted(n for _, _, n in cluster.objects) == sorted(
        m["metadata"]["name"] for m in manifests
    )


def test_connection_lost_in_the_dry_run_creates_nothing(cluster: FakeCluster) -> None:
    job = kube.render(validate_spec(SWEEP))[3]["metadata"]["name"]
    cluster.reject["Job", job] = ConnectionRefusedError(111, "Connection refused")
    code, lines = launch(cluster)
    assert code == 1 and cluster.objects == {} and cluster.created() == []
    assert any("cannot reach the Kubernetes API server" in line for line in lines)


@pytest.mark.parametrize(
    ("name", "error", "expected_statuses"),
    [
        (
            "quota used up by another sweep between the dry run and the 3rd object",
            FakeApiException(403, "Forbidden", "exceeded quota: compute"),
            ["created", "created", "failed", "skipped", "created", "created"],
        ),
        (
            "connection drops at the 3rd object",
            ConnectionRefusedError(111, "Connection refused"),
            ["created", "created", "failed", "skipped", "skipped", "skipped"],
        ),
    ],
)
def test_failure_after_the_dry_run_reports_and_a_retry_completes_without_duplicates(
    cluster: FakeCluster, name: str, error: BaseException, expected_statuses: list[str]
) -> None:
    """What no dry run can exclude (the cluster changes, the network fails): a partial sweep,
    reported; the same command completes it."""
    cluster.fail_on[3] = error
    code, lines = launch(cluster)
    assert code == 1
    report = [
        line.split()[0]
        for line in lines
        if line.startswith("  ") and line.split()[1] in ("ConfigMap", "Job")
    ]
    assert report == expected_statuses
    assert any(line.startswith("error:") for line in lines)
    created_first = {k for k in cluster.objects}
    cluster.fail_on.clear()
    code, lines = launch(cluster)
    assert code == 0
    all_names = [(m["kind"], m["metadata"]["name"]) for m in kube.render(validate_spec(SWEEP))]
    assert sorted((k, n) for k, _, n in cluster.objects) == sorted(all_names)
    second = cluster.created()[-6:]
    assert second == all_names  # the retry tried each object once; existing ones answered 409
    assert created_first < set(cluster.objects)


def test_unreachable_cluster_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real client against a port nobody listens on: exit 1, a message, nothing else."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1", "kind": "Config", "current-context": "dead",
                "clusters": [{"name": "dead", "cluster": {"server": "http://127.0.0.1:9"}}],
                "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "nobody"}}],
                "users": [{"name": "nobody", "user": {"token": "x"}}],
            }
        )
    )  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    started = time.monotonic()
    result = CliRunner().invoke(
        main, ["launch", str(ROOT / "configs/quickstart.yaml"), "--backend", "kubernetes"]
    )
    assert result.exit_code == 1, result.output
    assert (
        "cannot reach the Kubernetes API server at http://127.0.0.1:9 (list Jobs: connection "
        "refused); check the kubeconfig's cluster and context" in result.output
    ), result.output
    assert "run the same command again" in result.output
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    "kubeconfig, message",
    [
        (None, "no usable Kubernetes configuration"),
        ("clusters: [\n", "no usable Kubernetes configuration: {path}:2 is not valid YAML"),
        ("- a\n- b\n", "no usable Kubernetes configuration"),
    ],
    ids=["absent", "not-yaml", "a-list"],
)
def test_missing_kubeconfig_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kubeconfig: str | None, message: str
) -> None:
    path = tmp_path / "kubeconfig"
    if kubeconfig is not None:
        path.write_text(kubeconfig)
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = CliRunner().invoke(
        main, ["launch", str(ROOT / "configs/quickstart.yaml"), "--backend", "kubernetes"]
    )
    assert result.exit_code == 1, result.output
    assert message.format(path=path) in result.output and "Traceback" not in result.output
    # A configuration problem: running the same command again would not help.
    assert "nothing was sent" in result.output and "same command again" not in result.output
    assert result.output.startswith("backend: kubernetes (--backend)")


@pytest.mark.parametrize("args", [["status"], ["logs", "some-job"], ["cancel", "some-job"]])
def test_commands_without_a_backend_option_do_not_suggest_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """Found by probing: status, logs and cancel said "use --backend local", an option only
    launch has (click then answers "No such option")."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "no usable Kubernetes configuration" in result.output
    assert "set KUBECONFIG (`trainer launch --backend local` trains here" in result.output
    assert "or use --backend local" not in result.output


@pytest.mark.parametrize(
    ("files", "args", "expected"),
    [
        ([], [], "backend: local (no kubeconfig ($KUBECONFIG, ~/.kube/config) and no in-cluster"),
        (["kc"], [], "backend: kubernetes (kubeconfig {tmp}/kc; --backend local to run here)"),
        (["kc"], ["--backend", "local"], "backend: local (--backend)"),
    ],
)
def test_launch_says_which_backend_and_why(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    files: list[str],
    args: list[str],
    expected: str,
) -> None:
    """Issue 12: no silent fallback to local training when no kubeconfig is found."""
    for name in files:
        (tmp_path / name).write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kc"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = CliRunner().invoke(
        main, ["launch", str(ROOT / "configs/quickstart.yaml"), "--dry-run", *args]
    )
    assert result.output.splitlines()[0].startswith(expected.format(tmp=tmp_path)), result.output


def test_wait_on_a_terminal_shows_a_live_table(cluster: FakeCluster) -> None:
    """`launch --wait` on a terminal: one live table of the Jobs (plain lines otherwise, as in
    `test_launch_wait_follows_jobs_to_the_end`)."""
    import io

    from rich.console import Console

    assert launch(cluster)[0] == 0
    names = sorted(name for kind, _, name in cluster.objects if kind == "Job")
    polls = 0
    real_list = cluster.list_namespaced_job

    def finish(namespace: str, label_selector: str = "", **kwargs: Any) -> dict:
        nonlocal polls
        polls += 1
        for (kind, _, _), obj in cluster.objects.items():
            if kind == "Job":
                done = polls >= 2
                obj["status"] = {
                    "active": 0 if done else 1,
                    "conditions": [{"type": "Complete", "status": "True"}] if done else [],
                }
        return real_list(namespace, label_selector)

    cluster.list_namespaced_job = finish  # type: ignore[method-assign]
    screen = io.StringIO()
    lines: list[str] = []
    code = watch.wait_for_jobs(
        KubeClient(cluster, cluster),
        "ml",
        names,
        lines.append,
        poll_seconds=0,
        console=Console(file=screen, force_terminal=True, width=200),
    )
    assert code == 0 and lines == ["all Jobs complete"]  # no per-change lines
    drawn = screen.getvalue()
    assert "waiting for the sweep's Jobs" in drawn
    assert all(name in drawn for name in names) and "Running" in drawn and "Complete" in drawn


def test_wait_timeout_stops_waiting_not_the_jobs(cluster: FakeCluster) -> None:
    """`launch --wait --timeout`: the Jobs never finish here; waiting ends, they are kept."""
    assert launch(cluster)[0] == 0
    ticks = iter(range(1000))
    lines: list[str] = []
    code = watch.wait_for_jobs(
        KubeClient(cluster, cluster),
        "ml",
        [name for kind, _, name in cluster.objects if kind == "Job"],
        lines.append,
        poll_seconds=0,
        timeout=5,
        clock=lambda: float(next(ticks)),
    )
    assert code == 1
    assert lines[-1].startswith("error: --timeout 5s passed; not finished: sweep-e")
    assert "(Pending)" in lines[-1] and "they keep running" in lines[-1]
    assert all(kind != "delete" for kind, _, _ in cluster.calls)


def test_cli_timeout_needs_wait(cli_cluster: FakeCluster) -> None:
    result = CliRunner().invoke(
        main, ["launch", str(ROOT / "configs/quickstart.yaml"), "--timeout", "5"]
    )
    assert result.exit_code == 2 and "--timeout needs --wait" in result.output


@pytest.fixture
def cli_cluster(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> FakeCluster:
    monkeypatch.setattr(launcher, "make_client", lambda context=None: KubeClient(cluster, cluster))
    # No kubeconfig context names a namespace here: an unset one is pyboy-trainer.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return cluster


KUBECONFIG = """
apiVersion: v1
kind: Config
current-context: team
contexts:
  - name: team
    context: {cluster: c, user: u, namespace: team-ns}
  - name: bare
    context: {cluster: c, user: u}
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
"""


@pytest.mark.parametrize(
    ("case", "spec_namespace", "args", "expected"),
    [
        ("unset: the current context's", None, [], "team-ns"),
        ("unset: the chosen context's", None, ["--context", "bare"], "pyboy-trainer"),
        ("the spec's wins", "from-spec", [], "from-spec"),
        ("-n wins", "from-spec", ["-n", "from-flag"], "from-flag"),
    ],
)
def test_one_namespace_story_for_render_launch_and_status(
    cli_cluster: FakeCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    spec_namespace: str | None,
    args: list[str],
    expected: str,
) -> None:
    """Issue 12: an unset `kubernetes.namespace` is the kubeconfig context's (else
    pyboy-trainer, where k8s/ installs), the same for render, launch, status and cancel."""
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    data = {
        "name": "ns",
        **({"kubernetes": {"namespace": spec_namespace}} if spec_namespace else {}),
    }
    spec = write_spec(tmp_path, yaml.safe_dump(data))
    rendered = CliRunner().invoke(main, ["render", spec, *args])
    assert rendered.exit_code == 0, rendered.output
    assert {d["metadata"]["namespace"] for d in yaml.safe_load_all(rendered.output)} == {expected}
    launched = CliRunner().invoke(main, ["launch", spec, "--backend", "kubernetes", *args])
    assert launched.exit_code == 0, launched.output
    assert {ns for _, ns, _ in cli_cluster.objects} == {expected}
    assert f"namespace={expected}" in launched.output
    # The same Jobs: render and launch settle the namespace alike.
    assert {d["metadata"]["name"] for d in yaml.safe_load_all(rendered.output)} == {
        name for _, _, name in cli_cluster.objects
    }
    status = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["status", spec, *args])
    assert status.exit_code == 0 and f"namespace {expected}" in status.output
    cancelled = CliRunner().invoke(main, ["cancel", spec, *args])
    assert cancelled.exit_code == 0 and cli_cluster.objects == {}


def test_without_kubeconfig_the_namespace_is_pyboy_trainer(cli_cluster: FakeCluster) -> None:
    from trainer.kube.client import current_namespace

    assert current_namespace() == "pyboy-trainer" == current_namespace("any")


def write_spec(tmp_path: Path, text: str) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("name", "text", "args", "message"),
    [
        ("invalid value", "name: s\nppo:\n  update_epochs: 0\n", [], "ppo.update_epochs"),
        ("unknown key", "name: s\nppo:\n  epochs: 3\n", [], "unknown key"),
        ("bad --envs", "name: s\n", ["--envs", "0,1"], "--envs"),
        ("empty --envs item", "name: s\n", ["--envs", "1,,2"], "an item is empty"),
        ("empty --envs", "name: s\n", ["--envs", ""], "an item is empty"),
        (
            "batch too large for an env count",
            "name: s\nppo:\n  batch_size: 256\n",
            ["--envs", "1,2"],
            "ppo.batch_size",
        ),
        ("bad --set", "name: s\n", ["--set", "ppo.totl_steps=5"], "unknown key"),
    ],
)
def test_invalid_input_exits_2_and_submits_nothing(
    cli_cluster: FakeCluster, tmp_path: Path, name: str, text: str, args: list[str], message: str
) -> None:
    spec = write_spec(tmp_path, text)
    result = CliRunner().invoke(main, ["launch", spec, "--backend", "kubernetes", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert cli_cluster.calls == []


def test_cli_launch_dry_run_sends_nothing(cli_cluster: FakeCluster) -> None:
    result = CliRunner().invoke(
        main, ["launch", str(ROOT / "configs/sweep.yaml"), "--backend", "kubernetes", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert cli_cluster.calls == []
    assert "sweep-e4-" in result.output and "dry run" in result.output


def test_cli_launch_status_logs_cancel(cli_cluster: FakeCluster) -> None:
    spec = str(ROOT / "configs/sweep.yaml")
    runner = CliRunner(env={"COLUMNS": "200"})
    result = runner.invoke(main, ["launch", spec, "--backend", "kubernetes", "-n", "ml"])
    assert result.exit_code == 0, result.output
    sweep, points = kube.plan_pods(
        validate_spec({**_load(spec), "kubernetes": {"namespace": "ml"}})
    )
    job = points[0].job_name
    cli_cluster.objects[("Job", "ml", job)]["status"] = {"active": 1}
    cli_cluster.objects[("Job", "ml", job)]["metadata"]["creationTimestamp"] = (
        "2026-01-01T00:00:00Z"
    )
    old = cli_cluster.add_pod(job, "ml", "Failed", "2026-01-01T00:00:01Z")
    new = cli_cluster.add_pod(job, "ml", "Running", "2026-01-01T00:05:00Z")
    cli_cluster.logs[new] = "step 1\nstep 2\n"

    result = runner.invoke(main, ["status", "--sweep", sweep, "-n", "ml"])
    assert result.exit_code == 0, result.output
    assert job[:20] in result.output and "Running" in result.output

    result = runner.invoke(main, ["status", spec, "-n", "ml"])  # the spec's sweep, found by its id
    assert result.exit_code == 0 and job[:20] in result.output

    result = runner.invoke(main, ["logs", job, "-n", "ml"])
    assert result.exit_code == 0, result.output
    assert result.output == "step 1\nstep 2\n"
    assert (
        "logs",
        "Pod",
        {"name": new, "container": "trainer"},
    ) in cli_cluster.calls and old != new

    result = runner.invoke(main, ["logs", "no-such-job", "-n", "ml"])
    assert result.exit_code == 1 and "no pod of Job no-such-job" in result.output

    result = runner.invoke(main, ["cancel", "--sweep", sweep, "-n", "ml"])
    assert result.exit_code == 0, result.output
    deletes = [(kind, body) for op, kind, body in cli_cluster.calls if op == "delete"]
    assert sorted(b["name"] for k, b in deletes if k == "Job") == sorted(p.job_name for p in points)
    assert all(b["propagation_policy"] == "Background" for k, b in deletes if k == "Job")
    assert not [k for k in cli_cluster.objects if k[0] in ("Job", "ConfigMap")]

    result = runner.invoke(main, ["cancel", job, "-n", "ml"])  # already gone: not an error
    assert result.exit_code == 0 and "absent" in result.output
    # Found by probing: a JOB longer than a file name may be was OSError's traceback (the
    # SPEC-or-JOB check), and a mistyped SPEC path was a Job "absent": exit 0, nothing deleted.
    calls = len(cli_cluster.calls)
    for args in (["cancel", "j" * 300], ["cancel", "configs/quickstart.yml"], ["logs", "Job_1"]):
        result = runner.invoke(main, [*args, "-n", "ml"])
        assert result.exit_code == 2, result.output
        assert "is not a Job name: it must be a DNS-1123 label" in result.output
    assert len(cli_cluster.calls) == calls, "nothing asked of the cluster"


def test_status_says_what_holds_each_job_up_with_recent_warnings(cli_cluster: FakeCluster) -> None:
    """Issue 12: ImagePullBackOff or Unschedulable must not look like Pending forever."""
    assert launch(cli_cluster)[0] == 0
    e1, e2, e4 = sorted(
        (name for kind, _, name in cli_cluster.objects if kind == "Job"),
        key=lambda n: int(n.split("-e")[1].split("-")[0]),
    )
    pulling = cli_cluster.add_pod(e1, "ml", "Pending", "2026-01-01T00:00:01Z")
    cli_cluster.objects["Pod", "ml", pulling]["status"]["containerStatuses"] = [
        {"state": {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling "x:v9"'}}}
    ]
    waiting = cli_cluster.add_pod(e2, "ml", "Pending", "2026-01-01T00:00:02Z")
    cli_cluster.objects["Pod", "ml", waiting]["status"]["conditions"] = [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient cpu.",
        }
    ]
    cli_cluster.objects["Job", "ml", e4]["status"] = {
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
        ]
    }
    for i in range(5):
        cli_cluster.add_event(
            "ml", pulling, "Warning", "Failed", f"pull failed {i}", f"2026-01-01T00:0{i}:00Z"
        )
    cli_cluster.add_event(
        "ml", e2, "Normal", "SuccessfulCreate", "Created pod", "2026-01-01T00:00:00Z"
    )
    cli_cluster.add_event(
        "ml", waiting, "Warning", "FailedScheduling", "0/3 nodes", "2026-01-01T00:00:03Z"
    )

    rows = {
        r.name: r for r in watch.status_rows(KubeClient(cli_cluster, cli_cluster), "ml", selector())
    }
    assert rows[e1].why == 'ImagePullBackOff: Back-off pulling "x:v9"'
    assert rows[e2].why == "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."
    assert rows[e4].why == "BackoffLimitExceeded: Job has reached the specified backoff limit"
    assert rows[e1].events == [f"{pulling}: Failed: pull failed {i}" for i in (2, 3, 4)]
    assert rows[e2].events == [f"{waiting}: FailedScheduling: 0/3 nodes"]  # warnings only
    assert rows[e4].events == []

    result = CliRunner(env={"COLUMNS": "250"}).invoke(main, ["status", "--all", "-n", "ml"])
    assert result.exit_code == 0, result.output
    assert "ImagePullBackOff" in result.output and "Unschedulable" in result.output
    assert f"recent warnings of {e1}:" in result.output and "pull failed 4" in result.output


def test_logs_of_a_sweep_follow_every_pod_with_a_prefix_per_job_retries_too(
    cli_cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: `trainer logs --sweep ID -f` follows every pod of every Job, including a retry
    that starts while following, until every Job has finished."""
    assert launch(cli_cluster)[0] == 0
    sweep = kube.plan_pods(validate_spec(SWEEP))[0]
    e1, e2, e4 = sorted(
        (name for kind, _, name in cli_cluster.objects if kind == "Job"),
        key=lambda n: int(n.split("-e")[1].split("-")[0]),
    )
    first = cli_cluster.add_pod(e1, "ml", "Failed", "2026-01-01T00:00:01Z")
    cli_cluster.logs[first] = "e1 first try\ncrashed\n"
    other = cli_cluster.add_pod(e2, "ml", "Running", "2026-01-01T00:00:02Z")
    cli_cluster.logs[other] = "e2 step 1\ne2 step 2"
    pending = cli_cluster.add_pod(e4, "ml", "Pending", "2026-01-01T00:00:03Z")
    polls = 0
    real_list = cli_cluster.list_namespaced_job

    def progress(namespace: str, label_selector: str = "", **kwargs: Any) -> dict:
        nonlocal polls
        polls += 1
        if polls == 2:  # e1's retry starts, e4's pod runs, then every Job ends
            retry = cli_cluster.add_pod(e1, "ml", "Running", "2026-01-01T00:01:00Z")
            cli_cluster.logs[retry] = "e1 resumed\n"
            cli_cluster.objects["Pod", "ml", pending]["status"]["phase"] = "Succeeded"
            cli_cluster.logs[pending] = "e4 done\n"
        if polls >= 3:
            for (kind, _, _), obj in cli_cluster.objects.items():
                if kind == "Job":
                    obj["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
        return real_list(namespace, label_selector)

    cli_cluster.list_namespaced_job = progress  # type: ignore[method-assign]
    monkeypatch.setattr(launcher.time, "sleep", lambda s: None)
    result = CliRunner().invoke(main, ["logs", "--sweep", sweep, "-f", "-n", "ml"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for job, text in [
        (e1, "e1 first try"),
        (e1, "crashed"),
        (e1, "e1 resumed"),
        (e2, "e2 step 1"),
        (e2, "e2 step 2"),
        (e4, "e4 done"),
    ]:
        assert f"[{job}] {text}" in lines, result.output
    assert len(lines) == 6  # each pod once: the retry is followed, the first try not again

    result = CliRunner().invoke(main, ["logs", "-n", "ml"])
    assert result.exit_code == 2 and "exactly one of JOB or --sweep" in result.output


def test_cli_cancel_by_spec_deletes_its_jobs_and_configmaps(cli_cluster: FakeCluster) -> None:
    spec = str(ROOT / "configs/quickstart.yaml")
    assert CliRunner().invoke(main, ["launch", spec, "--backend", "kubernetes"]).exit_code == 0
    assert len(cli_cluster.objects) == 2
    result = CliRunner().invoke(main, ["cancel", spec])
    assert result.exit_code == 0, result.output
    assert cli_cluster.objects == {}
    assert CliRunner().invoke(main, ["cancel"]).exit_code == 2  # nothing named


def _load(path: str) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def test_launch_wait_follows_jobs_to_the_end(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    polls = 0
    real_list = cluster.list_namespaced_job

    def list_and_progress(namespace: str, label_selector: str = "", **kwargs: Any) -> dict:
        nonlocal polls
        if kube.LABEL_RUN_ID in label_selector:  # the launch's look for Jobs of the same run
            return real_list(namespace, label_selector)
        polls += 1
        for (kind, _, name), obj in cluster.objects.items():
            if kind == "Job" and polls >= 2:
                failed = name.startswith("sweep-e4")
                obj["status"] = {
                    "conditions": [{"type": "Failed" if failed else "Complete", "status": "True"}]
                }
        return real_list(namespace, label_selector)

    cluster.list_namespaced_job = list_and_progress  # type: ignore[method-assign]
    code, lines = launch(cluster, wait=True, poll_seconds=0)
    assert code == 1
    assert any("not successful: sweep-e4-" in line for line in lines)
    assert polls == 2


def _set_state(cluster: FakeCluster, state: str) -> None:
    conditions = {"Complete": [{"type": "Complete", "status": "True"}], "Running": []}[state]
    for (kind, _, _), obj in cluster.objects.items():
        if kind == "Job":
            obj["status"] = {"conditions": conditions, "active": int(state == "Running")}


def test_a_larger_budget_makes_new_jobs_that_continue_the_finished_runs(
    cluster: FakeCluster,
) -> None:
    """Issue 12: the Jobs' names change with the spec, their run id does not; the launch says so."""
    assert launch(cluster)[0] == 0
    old = {name for kind, _, name in cluster.objects if kind == "Job"}
    _set_state(cluster, "Complete")
    further = copy.deepcopy(SWEEP)
    further["ppo"] = {**further.get("ppo", {}), "total_steps": 10**6}
    code, lines = launch(cluster, further)
    assert code == 0, lines
    jobs = [obj for (kind, _, _), obj in cluster.objects.items() if kind == "Job"]
    new = {j["metadata"]["name"] for j in jobs} - old
    assert len(new) == 3
    run_ids = {j["metadata"]["labels"][kube.LABEL_RUN_ID] for j in jobs}
    assert len(run_ids) == 3  # one run per env count, shared by its old and new Job
    notes = [line for line in lines if "note: Job" in line]
    assert len(notes) == 3 and all("(Complete)" in n and "continues its run" in n for n in notes)
    assert "Jobs: 3 created, 0 already existed (unchanged), 0 failed, 0 not attempted" in lines


def test_an_active_job_of_the_same_run_stops_the_launch_before_anything_is_sent(
    cluster: FakeCluster,
) -> None:
    assert launch(cluster)[0] == 0
    _set_state(cluster, "Running")
    before = copy.deepcopy(cluster.objects)
    further = copy.deepcopy(SWEEP)
    further["kubernetes"] = {**further.get("kubernetes", {}), "ttl_seconds_after_finished": 60}
    code, lines = launch(cluster, further)
    assert code == 1
    assert cluster.objects == before
    errors = [line for line in lines if line.startswith("error: Job ")]
    assert len(errors) == 3 and all("(Running)" in e and "trainer cancel" in e for e in errors)
    assert lines[-1] == "nothing was created"


def test_a_queued_sweep_is_created_suspended_for_kueue_and_shown_so(
    cluster: FakeCluster,
) -> None:
    """Issue 12: `kubernetes.queue` → Kueue's label, Jobs created suspended; until Kueue admits
    them, `--wait` reports them Suspended, not Pending."""
    queued = copy.deepcopy(SWEEP)
    queued["kubernetes"] = {**queued["kubernetes"], "queue": "team-a", "priority_class": "low"}
    polls = 0
    real_list = cluster.list_namespaced_job

    def admit_later(namespace: str, label_selector: str = "", **kwargs: Any) -> dict:
        nonlocal polls
        if kube.LABEL_RUN_ID not in label_selector:
            polls += 1
            for (kind, _, _), obj in cluster.objects.items():
                if kind == "Job" and polls == 2:  # Kueue admits, the Job runs and completes
                    obj["spec"]["suspend"] = False
                    obj["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
        return real_list(namespace, label_selector)

    cluster.list_namespaced_job = admit_later  # type: ignore[method-assign]
    code, lines = launch(cluster, queued, wait=True, poll_seconds=0)
    assert code == 0, lines
    jobs = [body for op, kind, body in cluster.calls if op == "create" and kind == "Job"]
    assert len(jobs) == 3
    for job in jobs:
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        assert job["spec"]["suspend"] is True
        assert job["spec"]["template"]["spec"]["priorityClassName"] == "low"
    assert sum(line.endswith(": Suspended") for line in lines) == 3
    assert sum(line.endswith(": Complete") for line in lines) == 3


def test_retry_failed_recreates_only_the_failed_jobs_of_the_sweep(cluster: FakeCluster) -> None:
    """Issue 12: launching again leaves a Failed Job as it is ("exists, unchanged");
    `--retry-failed` deletes it with its ConfigMaps and creates it again (same name and run)."""
    assert launch(cluster)[0] == 0
    jobs = sorted(name for kind, _, name in cluster.objects if kind == "Job")
    failed = jobs[1]
    cluster.objects["Job", "ml", failed]["status"] = {
        "conditions": [{"type": "Failed", "status": "True"}]
    }
    old_uid = cluster.objects["Job", "ml", failed]["metadata"]["uid"]
    code, lines = launch(cluster)
    assert code == 0 and "Jobs: 0 created, 3 already existed (unchanged)" in " ".join(lines)
    assert "status" in cluster.objects["Job", "ml", failed]  # still the failed one

    cluster.calls.clear()
    code, lines = launch(cluster, retry=True)
    assert code == 0, lines
    deletes = [(kind, body["name"]) for op, kind, body in cluster.calls if op == "delete"]
    assert deletes == [("Job", failed), ("ConfigMap", failed)]
    assert [line for line in lines if line.startswith("  retry ")] == [
        f"  retry    Job       {failed}  (Failed: deleted with its ConfigMaps, created again)"
    ]
    assert sorted(name for kind, _, name in cluster.objects if kind == "Job") == jobs
    again = cluster.objects["Job", "ml", failed]
    assert "status" not in again and again["metadata"]["uid"] != old_uid
    cm = cluster.objects["ConfigMap", "ml", failed]["metadata"]
    assert cm["ownerReferences"][0]["uid"] == again["metadata"]["uid"]
    assert "Jobs: 1 created, 2 already existed (unchanged)" in " ".join(lines)


def test_another_learning_rate_is_another_run(cluster: FakeCluster) -> None:
    assert launch(cluster)[0] == 0
    _set_state(cluster, "Running")
    other = copy.deepcopy(SWEEP)
    other["ppo"] = {**other.get("ppo", {}), "learning_rate": 0.001}
    code, lines = launch(cluster, other)
    assert code == 0 and not any("same" in line for line in lines)


@pytest.mark.parametrize(
    ("environ", "files", "expected"),
    [
        ({}, [], "local"),
        ({"KUBECONFIG": "{tmp}/kc"}, ["kc"], "kubernetes"),
        ({"KUBECONFIG": "{tmp}/missing"}, [], "local"),
        ({"HOME": "{tmp}"}, [".kube/config"], "kubernetes"),
    ],
)
def test_backend_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environ: dict, files: list[str], expected: str
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("apiVersion: v1\nkind: Config\n")
    env = {k: v.format(tmp=tmp_path) for k, v in environ.items()}
    if "HOME" in env:
        monkeypatch.setenv("HOME", env.pop("HOME"))
    assert launcher.choose_backend(None, env) == expected
    assert launcher.choose_backend("local", env) == "local"


# ---- local backend ----------------------------------------------------------------------------

# A stand-in for `trainer run SPEC`: prints what a run sees, records when it ran, exits with
# the code named in the spec's mlflow tags (so a test can make one point fail).
FAKE_RUN = r"""
import json, os, sys, time, yaml
spec = yaml.safe_load(open(sys.argv[1]))
record = {k: os.environ.get(k) for k in ("TRAINER_JOB_NAME", "TRAINER_SWEEP_ID", "OMP_NUM_THREADS", "TRAIN_ENVS", "MLFLOW_TRACKING_URI")}
record["num_envs"] = spec["env"]["num_envs"]
record["start"] = time.time()
print("hello from", spec["env"]["num_envs"], "envs", flush=True)
time.sleep(0.3)
record["end"] = time.time()
with open(os.path.join(os.environ["FAKE_RUN_OUT"], os.environ["TRAINER_JOB_NAME"] + ".json"), "w") as f:
    json.dump(record, f)
sys.exit(int(spec["mlflow"]["tags"].get("exit_e%d" % spec["env"]["num_envs"], "0")))
"""


def fake_command(script: Path):
    return lambda spec_path: [sys.executable, str(script), str(spec_path)]


def run_local(
    tmp_path: Path, data: dict, max_cpus: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, list[str], list[dict]]:
    script = tmp_path / "fake_run.py"
    script.write_text(FAKE_RUN)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("FAKE_RUN_OUT", str(out))
    monkeypatch.setenv("TRAIN_ENVS", "7")  # already applied by the parent: children must not see it
    lines: list[str] = []
    code = launcher.run_local(
        validate_spec(data), command=fake_command(script), max_cpus=max_cpus, echo=lines.append
    )
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    return code, lines, records


LOCAL = {"name": "local", "sweep": {"num_envs": [1, 2, 3]}, "mlflow": {"enabled": False}}


def test_local_runs_each_point_with_the_pod_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, lines, records = run_local(tmp_path, LOCAL, max_cpus=64, monkeypatch=monkeypatch)
    assert code == 0, lines
    sweep, points = sweeps.plan(validate_spec(LOCAL))
    assert sorted(r["num_envs"] for r in records) == [1, 2, 3]
    for record in records:
        assert record["TRAINER_SWEEP_ID"] == sweep
        assert record["TRAINER_JOB_NAME"] in {p.job_name for p in points}
        assert record["OMP_NUM_THREADS"] == "1"
        assert record["TRAIN_ENVS"] is None
        assert record["MLFLOW_TRACKING_URI"] is None
    assert "[local-e2] hello from 2 envs" in lines
    assert lines[-1] == "3 of 3 run(s) succeeded"  # no MLflow: nothing to compare
    starts, ends = [r["start"] for r in records], [r["end"] for r in records]
    assert max(starts) < min(ends), "with CPUs to spare, the runs overlap"


def test_local_runs_no_more_than_fit_the_cpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each point needs num_envs + 1 CPUs: with 4 CPUs, e1 (2) and e2 (3) cannot run together.
    code, lines, records = run_local(tmp_path, LOCAL, max_cpus=4, monkeypatch=monkeypatch)
    assert code == 0, lines
    spans = sorted((r["start"], r["end"]) for r in records)
    assert all(
        prev_end <= start for (_, prev_end), (start, _) in zip(spans, spans[1:], strict=False)
    )


def test_local_failure_exits_1_and_names_the_failed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = {**LOCAL, "mlflow": {"enabled": False, "tags": {"exit_e2": "3"}}}
    code, lines, records = run_local(tmp_path, data, max_cpus=64, monkeypatch=monkeypatch)
    assert code == 1
    assert len(records) == 3  # the others still ran
    assert "failed: local-e2-" in lines[-1] and lines[-1].startswith("2 of 3")


def test_local_dry_run_starts_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    code = launcher.run_local(validate_spec(LOCAL), dry_run=True, echo=lines.append)
    assert code == 0
    assert sum("-m trainer run" in line for line in lines) == 3


# ---- several replicas: an Indexed Job and its headless Service -------------------------------

REPLICAS = {
    "name": "group",
    "ppo": {"batch_size": 64},
    "kubernetes": {"namespace": "ml"},
    "sweep": {"num_envs": [2], "replicas": [1, 2]},
}


def test_several_replicas_make_a_service_owned_by_its_indexed_job(cluster: FakeCluster) -> None:
    code, lines = launch(cluster, REPLICAS)
    assert code == 0, lines
    _, points = kube.plan_pods(validate_spec(REPLICAS))
    single, group = points
    assert (single.replicas, group.replicas) == (1, 2) and "-e2x2-" in group.job_name
    sent = [
        ("ConfigMap", single.job_name),
        ("Job", single.job_name),
        ("ConfigMap", group.job_name),
        ("Service", group.job_name),
        ("Job", group.job_name),
    ]
    assert cluster.created() == sent
    # the server dry-runs every object, the Service too, before anything is stored
    dry = [(kind, body["metadata"]["name"]) for op, kind, body in cluster.calls if op == "dry-run"]
    ops = [op for op, _, _ in cluster.calls]
    assert dry == sent and ops.index("create") > max(i for i, o in enumerate(ops) if o == "dry-run")
    job = cluster.objects["Job", "ml", group.job_name]
    service = cluster.objects["Service", "ml", group.job_name]
    owners = service["metadata"]["ownerReferences"]
    assert owners == [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": group.job_name,
            "uid": job["metadata"]["uid"],
        }
    ]
    assert service["spec"]["selector"] == {kube.LABEL_JOB_NAME: group.job_name}
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"]
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    assert (spec["backoffLimitPerIndex"], spec["maxFailedIndexes"], spec["backoffLimit"]) == (
        3,
        0,
        6,
    )
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == group.job_name
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env[ENV_RDZV_ENDPOINT] == f"{group.job_name}-0.{group.job_name}:29400"
    assert env[ENV_RDZV_ID] == group.job_name
    plain = cluster.objects["Job", "ml", single.job_name]["spec"]
    assert "completionMode" not in plain and "subdomain" not in plain["template"]["spec"]
    assert not {ENV_RDZV_ENDPOINT, ENV_RDZV_ID} & {
        e["name"] for e in plain["template"]["spec"]["containers"][0]["env"]
    }
    assert any("replicas=2 (each:" in line for line in lines)


def test_a_service_that_was_not_created_holds_its_job_back(cluster: FakeCluster) -> None:
    """A Job whose pods would find no rank 0 is not created (as for a missing ConfigMap); the
    rest of the sweep is, and launching again completes it."""
    cluster.fail_on[4] = FakeApiException(403, "Forbidden", 'services is forbidden: "create"')
    code, lines = launch(cluster, REPLICAS)
    assert code == 1
    text = "\n".join(lines)
    assert "failed   Service" in text and "its Service was not created" in text
    group = kube.plan_pods(validate_spec(REPLICAS))[1][1].job_name
    assert ("Job", "ml", group) not in cluster.objects
    code, lines = launch(cluster, REPLICAS)
    assert code == 0, lines
    assert ("Job", "ml", group) in cluster.objects and ("Service", "ml", group) in cluster.objects


def test_cancel_and_retry_failed_remove_the_service_too(cli_cluster: FakeCluster, tmp_path: Path):
    assert launch(cli_cluster, REPLICAS)[0] == 0
    sweep, points = kube.plan_pods(validate_spec(REPLICAS))
    group = points[1].job_name
    cli_cluster.objects["Job", "ml", group]["status"] = {
        "conditions": [{"type": "Failed", "status": "True"}]
    }
    cli_cluster.calls.clear()
    code, lines = launch(cli_cluster, REPLICAS, retry=True)
    assert code == 0, lines
    deletes = [(kind, body["name"]) for op, kind, body in cli_cluster.calls if op == "delete"]
    assert deletes == [("Job", group), ("ConfigMap", group), ("Service", group)]
    assert (
        f"  retry    Job       {group}  (Failed: deleted with its ConfigMaps and Services, created again)"
        in lines
    )
    assert ("Service", "ml", group) in cli_cluster.objects  # created again, owned by the new Job

    spec = write_spec(tmp_path, yaml.safe_dump(REPLICAS))
    result = CliRunner().invoke(main, ["cancel", spec, "-n", "ml"])
    assert result.exit_code == 0, result.output
    assert not [k for k in cli_cluster.objects if k[0] in ("Job", "ConfigMap", "Service")]
    assert launch(cli_cluster, REPLICAS)[0] == 0
    result = CliRunner().invoke(main, ["cancel", "--sweep", sweep, "-n", "ml"])
    assert result.exit_code == 0 and "deleted  Service" in result.output, result.output
    assert not [k for k in cli_cluster.objects if k[0] in ("Job", "ConfigMap", "Service")]


def test_status_and_logs_show_each_index_of_a_group(
    cli_cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert launch(cli_cluster, REPLICAS)[0] == 0
    sweep, points = kube.plan_pods(validate_spec(REPLICAS))
    group = points[1].job_name
    lost = cli_cluster.add_pod(group, "ml", "Failed", "2026-01-01T00:00:01Z", index=1)
    rank0 = cli_cluster.add_pod(group, "ml", "Running", "2026-01-01T00:00:02Z", index=0)
    again = cli_cluster.add_pod(group, "ml", "Pending", "2026-01-01T00:00:03Z", index=1)
    rows = {
        r.name: r for r in watch.status_rows(KubeClient(cli_cluster, cli_cluster), "ml", selector())
    }
    assert rows[group].pods == "0 Running, 1 Pending (1 failed)"
    assert rows[group].replicas == "2" and rows[points[0].job_name].replicas == "1"

    result = CliRunner(env={"COLUMNS": "250"}).invoke(
        main, ["status", "--sweep", sweep, "-n", "ml"]
    )
    assert result.exit_code == 0, result.output
    assert "replicas" in result.output and "0 Running, 1 Pending (1 failed)" in result.output

    cli_cluster.logs.update({lost: "lost\n", rank0: "rank 0 step 1\n", again: ""})
    cli_cluster.objects["Pod", "ml", again]["status"]["phase"] = "Running"
    result = CliRunner().invoke(main, ["logs", "--sweep", sweep, "-n", "ml"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"[{group}/1] lost", f"[{group}/0] rank 0 step 1"]


def test_a_local_run_of_several_replicas_needs_all_their_cpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`trainer run` starts every replica of a point: e1 needs 2 CPUs, e1x2 twice that, so on
    4 CPUs they run one after the other (2 + 2 would have fit)."""
    data = {**LOCAL, "ppo": {"batch_size": 64}, "sweep": {"num_envs": [1], "replicas": [1, 2]}}
    code, lines, records = run_local(tmp_path, data, max_cpus=4, monkeypatch=monkeypatch)
    assert code == 0, lines
    assert any(
        line.startswith("[local-e1x2] start local-e1x2-") and "(4 CPUs)" in line for line in lines
    )
    (first, second) = sorted((r["start"], r["end"]) for r in records)
    assert first[1] <= second[0]
