"""Run a rendered Job's pod on this machine as the kubelet would: a test helper, not a product.

No cluster runs here, but the pod's contract can: `Pod` takes the manifests of one Job (from
`trainer render` or `helm template`) and starts its container with Debian's bubblewrap:

- the image: the package installed NON-editable into a fresh virtual environment from the
  Docker build context (`.dockerignore` applied), as the Dockerfile's `pip install --no-deps .`
  does, so a file missing from the wheel fails; the heavy dependencies come from `.venv`
  through a `.pth` line. The image's ENTRYPOINT, ENV, WORKDIR and user come from the
  Dockerfile's final stage (`/opt/venv` is that venv), its /etc/passwd entry too;
- the container's args and env (plus what the kubelet adds: HOSTNAME, KUBERNETES_SERVICE_*),
  with MLFLOW_TRACKING_URI pointed at an MLflow server on loopback instead of the Service;
- ConfigMaps (data and binaryData, as a volume or projected) written to files and mounted
  read-only at their mountPaths; each emptyDir a fresh
  folder (`medium: Memory`: a tmpfs of its `sizeLimit`); PVCs as host folders kept across pods,
  group-owned by `fsGroup` as the kubelet makes them; everything else read-only: the host's
  root bound read-only, folders created for mount points remounted read-only, /dev too;
- `runAsUser`/`runAsGroup` (+ `fsGroup` as a supplementary group) as the real uid (setpriv),
  in new user, PID, IPC, UTS and cgroup namespaces, no capabilities, no_new_privs. PID 1 is
  bwrap's reaper when the pod has `shareProcessNamespace` (as the pause container is), else the
  entrypoint itself (then a signal it has no handler for is dropped, as in a container);
- stopping as the kubelet does: SIGTERM to PID 1, SIGKILL after terminationGracePeriodSeconds;
- a pod of an Indexed Job (`index`): the hostname `<job>-<index>`, `JOB_COMPLETION_INDEX`, and
  the names the cluster DNS gives its headless Service's pods (`<job>-<i>.<subdomain>`, with
  `.<namespace>.svc.cluster.local`) in the pod's /etc/hosts, pod i at 127.0.0.(10+i): the pods
  of one Job run side by side on loopback, each at its own address;
- a pod of a Kubeflow PyTorchJob (`index` 0 the Master, i ≥ 1 Worker i − 1), as the training
  operator makes it (kubeflow/training-operator v1.9, pkg/controller.v1/pytorch): the hostname
  `<job>-master-0` / `<job>-worker-<i>`, the Service of each pod by that name in /etc/hosts
  (the same loopback addresses), and the variables the operator adds to every container
  (MASTER_ADDR/PORT and their PET_ twins, WORLD_SIZE, RANK, PET_NODE_RANK, PET_NNODES,
  PYTHONUNBUFFERED).

What differs from a real node (docs/kubernetes.md): the network namespace is the host's (the
MLflow server is reached on loopback); no seccomp profile (RuntimeDefault), no cgroup CPU or
memory limits, no image pull, scheduling or admission.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "pod-harness"
INSTALL_HINT = (
    "install it with `make tools` (scripts/fetch_tools.sh runs apt-get install bubblewrap)"
)
#: A Linux default PATH, for `$PATH` in the Dockerfile's ENV (the base image's own).
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMAGE_VENV = "/opt/venv"


def require(tool: str) -> str:
    """A system tool the harness needs; the test fails (never skips) saying how to install it."""
    path = shutil.which(tool) or (
        f"/usr/bin/{tool}" if os.path.exists(f"/usr/bin/{tool}") else None
    )
    if path is None:
        pytest.fail(f"{tool} is not installed: {INSTALL_HINT}")
    return path


# ---- the image ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Image:
    venv: Path
    entrypoint: list[str]
    env: dict[str, str]
    workdir: str
    user: tuple[int, int]
    passwd_line: str  # the Dockerfile's useradd, as /etc/passwd has it


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match, plus '**' for any number of folders)."""
    out, rest = "", pattern.strip().strip("/")
    while rest:
        for token, regex in (("**/", "(.*/)?"), ("**", ".*"), ("*", "[^/]*"), ("?", "[^/]")):
            if rest.startswith(token):
                out, rest = out + regex, rest[len(token) :]
                break
        else:
            out, rest = out + re.escape(rest[0]), rest[1:]
    return re.compile(out)


def _docker_context_files() -> list[str]:
    """The files `docker build .` sends: last matching .dockerignore line wins, and a line that
    matches a folder covers what is in it (Docker's fileutils)."""
    rules = [
        (line.startswith("!"), _ignore_regex(line.lstrip("!")))
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(rel: str) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        keep = True
        for negated, regex in rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                keep = negated
        return not keep

    reincluded = {r.pattern.split("/")[0] for negated, r in rules if negated}
    files = []
    for folder, dirs, names in os.walk(ROOT):
        rel_dir = Path(folder).relative_to(ROOT).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        # Skip folders nothing can come back from (.git, .venv, ...), as Docker does.
        dirs[:] = [d for d in dirs if not (rel_dir == "" and ignored(d) and d not in reincluded)]
        files += [rel_dir + n for n in names if not ignored(rel_dir + n)]
    return sorted(files)


def build_context(dest: Path) -> str:
    """Copy the Docker build context to `dest`; its digest (paths and contents)."""
    digest = hashlib.sha256()
    for rel in _docker_context_files():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
        digest.update(rel.encode() + b"\0" + (ROOT / rel).read_bytes() + b"\0")
    return digest.hexdigest()


def pod_python(uid: int) -> str:
    """A python of this minor version that the pod's user can run (ours may live under a private
    home): the base image's /usr/local/bin, the distribution's, else this interpreter's base."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    for candidate in (f"/usr/local/bin/{version}", f"/usr/bin/{version}", base):
        if os.path.exists(candidate) and _runs_as(candidate, uid):
            return candidate
    pytest.fail(f"no {version} that uid {uid} may run (install Debian's {version})")


def _runs_as(python: str, uid: int, code: str = "pass") -> bool:
    if os.geteuid() != 0:
        return True
    args = [require("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups", python]
    return subprocess.run([*args, "-c", code], capture_output=True).returncode == 0


def image_dependencies() -> Path:
    """Where the image's heavy dependencies (torch, MLflow, PyBoy) come from: .venv's packages,
    the real path (in a git worktree .venv may be a symlink, which bwrap cannot bind over)."""
    return next((ROOT / ".venv").glob("lib/python*/site-packages")).resolve()


def build_image() -> Image:
    """The package as the image has it, cached under build/pod-harness/ until the build context
    changes (a fresh clone builds it once: a few seconds)."""
    context = CACHE / "context"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    venv = CACHE / "venv"
    python = pod_python(dockerfile_image(venv).user[0])
    digest = f"{python} {image_dependencies()} {build_context(context)}"
    stamp = venv / ".build-context-sha256"
    if not (stamp.exists() and stamp.read_text() == digest):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
        # The heavy dependencies from .venv (torch, MLflow, PyBoy): a path line, so .venv's own
        # .pth files (its editable install of this package) are not read.
        site = next(venv.glob("lib/python*/site-packages"))
        (site / "zz-image-dependencies.pth").write_text(f"{image_dependencies()}\n")
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps"]
        built = subprocess.run(
            [*pip, "--no-build-isolation", "--no-cache-dir", str(context)], capture_output=True
        )
        assert built.returncode == 0, built.stdout.decode() + built.stderr.decode()
        stamp.write_text(digest)
    image = dockerfile_image(venv)
    # The pod's uid must reach the venv and .venv's packages: a clone under a private home
    # (/root is 0700) would otherwise fail inside the pod with a confusing ImportError.
    if not _runs_as(str(venv / "bin" / "python"), image.user[0], "import trainer, yaml"):
        pytest.fail(
            f"uid {image.user[0]} cannot import from {venv} and {ROOT / '.venv'}: clone the "
            "repository where other users may read it (its parent folders need o+x)"
        )
    return image


def dockerfile_image(venv: Path) -> Image:
    """ENTRYPOINT, ENV, WORKDIR, USER and the user of the Dockerfile's final stage."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    env, entrypoint, workdir, user = {"PATH": BASE_PATH}, ["sh"], "/", (0, 0)
    passwd = ""
    for line in final:
        word, _, rest = line.partition(" ")
        if word == "ENV":
            for key, value in (item.split("=", 1) for item in shlex.split(rest)):
                env[key] = value.replace("$PATH", env["PATH"]).replace(IMAGE_VENV, str(venv))
        elif word == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif word == "WORKDIR":
            workdir = rest
        elif word == "USER":
            uid, _, gid = rest.partition(":")
            user = (int(uid), int(gid or uid))
        elif word == "RUN" and "useradd" in rest:
            words = shlex.split(rest[rest.index("useradd") :].split("&&")[0])
            opt = {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}
            fields = [opt["--uid"], opt["--gid"], "", opt["--home-dir"], opt["--shell"]]
            passwd = ":".join([words[-1], "x", *fields])
    return Image(venv, entrypoint, env, workdir, user, passwd)


# ---- the pod -----------------------------------------------------------------------------------
@dataclass
class PodResult:
    exit_code: int
    seconds: float  # from SIGTERM to exit (terminate), or from start (wait)
    killed: bool  # SIGKILL after the grace period


@dataclass
class Pod:
    """One pod of the Job in `manifests` (the Job and the ConfigMaps it mounts)."""

    manifests: Sequence[Mapping[str, Any]]
    workdir: Path
    tracking_uri: str
    pvcs: Mapping[str, Path] = field(default_factory=dict)  # claimName → host folder
    image: Image | None = None
    volumes: dict[str, Path] = field(default_factory=dict)  # volume name → host folder
    index: int | None = None  # the completion index, for a pod of an Indexed Job
    name: str = ""

    def __post_init__(self) -> None:
        self.job = next(m for m in self.manifests if m["kind"] in ("Job", "PyTorchJob"))
        job, token = self.job["metadata"]["name"], secrets.token_hex(3)[:5]
        self.pytorchjob = self.job["kind"] == "PyTorchJob"
        if self.pytorchjob:
            if self.index is None:
                raise AssertionError("a pod of a PyTorchJob needs its index (0: the Master)")
            kind, number = ("Master", 0) if self.index == 0 else ("Worker", self.index - 1)
            template = self.job["spec"]["pytorchReplicaSpecs"][kind]["template"]
            self.name = pytorchjob_pod(job, self.index)
        else:
            template = self.job["spec"]["template"]
            indexed = self.job["spec"].get("completionMode") == "Indexed"
            if indexed != (self.index is not None):
                raise AssertionError("a pod of an Indexed Job needs its index, and only such a pod")
            # The Job controller names an Indexed Job's pod host `<job>-<index>` (Job docs).
            self.name = f"{job}-{self.index}" if indexed else f"{job}-{token}"
        self.spec = template["spec"]
        (self.container,) = self.spec["containers"]
        self.image = self.image or build_image()
        self.root = self.workdir / f"{self.name}-{token}"
        self.root.mkdir(parents=True)
        self.log_path = self.root / "pod.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.started = 0.0

    @property
    def grace(self) -> int:
        return int(self.spec.get("terminationGracePeriodSeconds", 30))

    # -- what the kubelet sets up --
    def user(self) -> tuple[int, int, int | None]:
        pod, ctr = self.spec.get("securityContext", {}), self.container.get("securityContext", {})
        assert self.image is not None
        uid = ctr.get("runAsUser", pod.get("runAsUser", self.image.user[0]))
        gid = ctr.get("runAsGroup", pod.get("runAsGroup", self.image.user[1]))
        if ctr.get("runAsNonRoot", pod.get("runAsNonRoot")) and uid == 0:
            raise AssertionError("runAsNonRoot with uid 0: the kubelet refuses to start it")
        return uid, gid, pod.get("fsGroup")

    def environment(self) -> dict[str, str]:
        assert self.image is not None
        env = {**self.image.env, "HOSTNAME": self.name}
        env.update(KUBERNETES_SERVICE_HOST="10.96.0.1", KUBERNETES_SERVICE_PORT="443")
        if self.index is not None and not self.pytorchjob:
            env["JOB_COMPLETION_INDEX"] = str(self.index)
        if self.container.get("envFrom"):
            raise AssertionError("envFrom (Secrets) is not emulated: render without mlflow_secret")
        env.update({e["name"]: e["value"] for e in self.container.get("env", [])})
        if self.pytorchjob:
            env.update(self.operator_environment())
        if "MLFLOW_TRACKING_URI" in env:
            env["MLFLOW_TRACKING_URI"] = self.tracking_uri  # the loopback server for the Service
        return env

    def pod_count(self) -> int:
        if self.pytorchjob:
            return sum(r["replicas"] for r in self.job["spec"]["pytorchReplicaSpecs"].values())
        return int(self.job["spec"]["completions"])

    def operator_environment(self) -> dict[str, str]:
        """What the training operator appends to every container of a PyTorchJob's pod
        (pkg/controller.v1/pytorch/envvar.go and master.go, v1.9; no elasticPolicy)."""
        (port,) = [
            p["containerPort"] for p in self.container["ports"] if p["name"] == "pytorchjob-port"
        ]
        master, pods = pytorchjob_pod(self.job["metadata"]["name"], 0), self.pod_count()
        return {
            "PYTHONUNBUFFERED": "1",
            "MASTER_PORT": str(port),
            "PET_MASTER_PORT": str(port),
            "MASTER_ADDR": master,
            "PET_MASTER_ADDR": master,
            "WORLD_SIZE": str(pods),
            "RANK": str(self.index),
            "PET_NODE_RANK": str(self.index),
            "PET_NNODES": str(pods),
        }

    def mount_args(self, fs_group: int | None) -> list[str]:
        """bwrap arguments for the container's volumeMounts, parents first (as containerd
        sorts them), with mount points created as the runtime does in the image's root."""
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        maps = {m["metadata"]["name"]: m for m in self.manifests if m["kind"] == "ConfigMap"}
        args: list[str] = []
        mounts = sorted(self.container["volumeMounts"], key=lambda m: m["mountPath"].count("/"))
        for mount in mounts:
            volume, path = volumes[mount["name"]], mount["mountPath"]
            bind = "--ro-bind" if mount.get("readOnly") else "--bind"
            host = self.root / "volumes" / mount["name"]
            if "configMap" in volume or "projected" in volume:
                host.mkdir(parents=True, exist_ok=True)
                for name in _configmaps_of(volume):
                    for key, text in maps[name].get("data", {}).items():
                        (host / key).write_text(text)
                    for key, data in maps[name].get("binaryData", {}).items():
                        (host / key).write_bytes(base64.b64decode(data))
                for key in os.listdir(host):
                    os.chmod(host / key, 0o644)  # defaultMode
                args += ["--ro-bind", str(host), path]
            elif "emptyDir" in volume and volume["emptyDir"].get("medium") == "Memory":
                size = _bytes(volume["emptyDir"].get("sizeLimit", "64Mi"))
                args += ["--perms", "1777", "--size", str(size), "--tmpfs", path]
            elif "emptyDir" in volume:
                host.mkdir(parents=True, exist_ok=True)
                os.chmod(host, 0o777)  # the kubelet's emptyDir mode
                args += [bind, str(host), path]
            elif "persistentVolumeClaim" in volume:
                host = self.pvcs[volume["persistentVolumeClaim"]["claimName"]]
                _own_by_fs_group(host, fs_group)
                args += [bind, str(host), path]
            else:
                raise AssertionError(f"volume type of {volume} is not emulated")
            self.volumes[mount["name"]] = host
        return args

    def hosts(self) -> Path:
        """The pod's /etc/hosts. An Indexed Job's pod i stands at its own loopback address
        127.0.0.(10+i) (as each pod has its own IP), under its hostname and, in a subdomain,
        the DNS names the headless Service gives every pod of the Job, FQDN first as the
        kubelet writes it. A PyTorchJob's pods likewise, under the names of the operator's
        Services. Any other pod under its hostname at 127.0.0.1."""
        lines = ["127.0.0.1\tlocalhost"]
        if self.index is None:
            lines.append(f"127.0.0.1\t{self.name}")
        else:
            job, namespace = self.job["metadata"]["name"], self.job["metadata"]["namespace"]
            subdomain = self.spec.get("subdomain")
            for i in range(self.pod_count()):
                names = [f"{job}-{i}"]
                if self.pytorchjob:  # the operator's Service of each pod, named like it
                    short = pytorchjob_pod(job, i)
                    names = [f"{short}.{namespace}.svc.cluster.local", short]
                elif subdomain:
                    short = f"{job}-{i}.{subdomain}"
                    names = [f"{short}.{namespace}.svc.cluster.local", short, *names]
                lines.append(f"{loopback_address(i)}\t{' '.join(names)}")
        path = self.root / "hosts"
        path.write_text("\n".join(lines) + "\n")
        return path

    def command(self) -> list[str]:
        assert self.image is not None
        uid, gid, fs_group = self.user()
        passwd = self.root / "passwd"
        passwd.write_text(Path("/etc/passwd").read_text() + self.image.passwd_line + "\n")
        group = self.root / "group"
        name = self.image.passwd_line.split(":")[0]
        group.write_text(Path("/etc/group").read_text() + f"{name}:x:{gid}:\n")
        sandbox = [require("bwrap"), "--unshare-user", "--uid", str(uid), "--gid", str(gid)]
        sandbox += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        sandbox += ["--hostname", self.name, "--die-with-parent", "--new-session"]
        if not self.spec.get("shareProcessNamespace"):
            sandbox.append("--as-pid-1")  # else bwrap's reaper is PID 1, as pause would be
        sandbox += ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
        image_files = [
            "--ro-bind",
            str(passwd),
            "/etc/passwd",
            "--ro-bind",
            str(group),
            "/etc/group",
            "--ro-bind",
            str(self.hosts()),
            "/etc/hosts",
        ]
        sandbox += _with_mount_points(image_files + self.mount_args(fs_group))
        # The image's files are this machine's: bound again over the pod's volumes, so a clone
        # under /tmp (a CI checkout) stays visible below the pod's /tmp emptyDir.
        for path in (self.image.venv, image_dependencies()):
            sandbox += ["--ro-bind", str(path), str(path)]
        sandbox += ["--remount-ro", "/dev", "--chdir", self.image.workdir, "--clearenv"]
        env = self.environment()
        for key, value in env.items():
            sandbox += ["--setenv", key, value]
        argv = self.container.get("command", self.image.entrypoint) + self.container.get("args", [])
        argv[0] = shutil.which(argv[0], path=env["PATH"]) or argv[0]
        drop = []
        if os.geteuid() == 0:  # the real uid, as on a node (else: this user, mapped to uid)
            groups = ",".join(str(g) for g in {gid, fs_group} if g is not None)
            drop = [require("setpriv"), f"--reuid={uid}", f"--regid={gid}", f"--groups={groups}"]
        return [*drop, *sandbox, "--", *argv]

    # -- running it --
    def start(self) -> Pod:
        read, write = os.pipe()
        command = self.command()
        at = command.index("--")
        command[at:at] = ["--info-fd", str(write)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, pass_fds=(write,)
            )
        os.close(write)
        self.started = time.monotonic()
        with os.fdopen(read) as info:  # bwrap writes {"child-pid": N} and closes it
            text = info.read()
        if not text:
            raise AssertionError(f"the sandbox did not start:\n{self.log()}")
        self.pid = json.loads(text)["child-pid"]  # PID 1 in the pod
        if self.spec.get("shareProcessNamespace"):
            self.pid = _first_child(self.pid)  # the entrypoint, under the reaper
        if self.pid <= 0:  # os.kill(0, …) would signal the test run's own process group
            raise AssertionError(f"the pod ended as it started:\n{self.log()[-3000:]}")
        return self

    def wait(self, timeout: float) -> PodResult:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        return PodResult(code, time.monotonic() - self.started, killed=False)

    def terminate(self) -> PodResult:
        """What the kubelet does on deletion, eviction or preemption: SIGTERM to the container's
        PID 1, SIGKILL when it is still there after terminationGracePeriodSeconds."""
        assert self.proc is not None
        sent = time.monotonic()
        os.kill(self.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=self.grace)
            return PodResult(code, time.monotonic() - sent, killed=False)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            return PodResult(self.proc.wait(timeout=30), time.monotonic() - sent, killed=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 120.0) -> None:
        """Until the pod's log matches `pattern` (a regular expression)."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.log()):
            assert self.proc is not None and self.proc.poll() is None, (
                f"the pod exited ({self.proc.returncode if self.proc else '?'}) before "
                f"printing {pattern!r}:\n{self.log()[-3000:]}"
            )
            assert time.monotonic() < deadline, f"no {pattern!r} within {timeout} s"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def pytorchjob_pod(job: str, index: int) -> str:
    """The operator's name of a PyTorchJob's pod `index` (0: the Master): its hostname and its
    Service's name."""
    return f"{job}-master-0" if index == 0 else f"{job}-worker-{index - 1}"


def loopback_address(index: int) -> str:
    """Pod `index`'s own address: Linux answers on all of 127.0.0.0/8."""
    return f"127.0.0.{10 + index}"


def _configmaps_of(volume: Mapping[str, Any]) -> list[str]:
    """The ConfigMaps a configMap volume, or a projected volume of configMap sources, shows."""
    if "configMap" in volume:
        return [volume["configMap"]["name"]]
    sources = volume["projected"]["sources"]
    if not all("configMap" in source for source in sources):
        raise AssertionError(f"projected sources other than ConfigMaps are not emulated: {volume}")
    return [source["configMap"]["name"] for source in sources]


def _first_child(pid: int, timeout: float = 10.0) -> int:
    """The entrypoint under the sandbox's PID 1 (0 if the pod already ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except FileNotFoundError:
            return 0
        if children:
            return int(children[0])
        time.sleep(0.001)
    raise AssertionError(f"the sandbox's PID 1 ({pid}) started no entrypoint")


def _bytes(quantity: str) -> int:
    from trainer.spec import parse_quantity

    return int(parse_quantity(quantity))


def _own_by_fs_group(folder: Path, fs_group: int | None) -> None:
    """fsGroup on a volume: group-owned, group-writable, setgid folders (the kubelet's
    SetVolumeOwnership with fsGroupChangePolicy Always)."""
    if fs_group is None:
        return
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, -1, fs_group)
        os.chmod(path, path.stat().st_mode | (0o2070 if path.is_dir() else 0o060))


def _with_mount_points(args: list[str]) -> list[str]:
    """The image's root is read-only here (the host's), so a mount point that does not exist
    (/etc/trainer, /var/lib/trainer/checkpoints) gets a tmpfs on its nearest existing folder,
    the folder's entries bound back read-only, and the tmpfs remounted read-only at the end."""
    prefix: list[str] = []
    suffix: list[str] = []
    covered: set[str] = set()
    destinations = [args[i + 2] for i, a in enumerate(args) if a in ("--bind", "--ro-bind")]
    destinations += [args[i + 1] for i, a in enumerate(args) if a == "--tmpfs"]
    for dest in destinations:
        parent = os.path.dirname(dest)
        while not os.path.isdir(parent):
            parent = os.path.dirname(parent)
        if os.path.exists(dest) or parent in covered or parent == "/dev":
            continue
        covered.add(parent)
        prefix += ["--tmpfs", parent]
        for entry in sorted(os.listdir(parent)):
            source = os.path.join(parent, entry)
            if os.path.islink(source):
                prefix += ["--symlink", os.readlink(source), source]
            else:
                prefix += ["--ro-bind", source, source]
        suffix += ["--remount-ro", parent]
    return prefix + args + suffix


def pod_failure_action(job: Mapping[str, Any], exit_code: int) -> str | None:
    """The Job controller's reading of `podFailurePolicy` for a pod whose trainer container
    exited with `exit_code`: the first matching rule's action, None when no rule matches (the
    failure then counts against backoffLimit)."""
    container = job["spec"]["template"]["spec"]["containers"][0]["name"]
    for rule in job["spec"].get("podFailurePolicy", {}).get("rules", []):
        codes = rule.get("onExitCodes")
        if not codes or codes.get("containerName", container) != container:
            continue
        inside = exit_code in codes["values"]
        if inside == (codes["operator"] == "In"):
            return rule["action"]
    return None
