"""Real servers on loopback for the tests and the reliability benchmark: an `mlflow server`
subprocess (SQLite or PostgreSQL backend, proxied artifacts) that can be SIGKILLed and started
again on the same store, and a throwaway PostgreSQL cluster (Debian's `initdb`/`pg_ctl`), as
`k8s/mlflow.yaml` deploys MLflow on PostgreSQL.

Each server runs in its own process group, so a kill takes its workers (uvicorn) with it.
Nothing here imports MLflow: the server is a separate process.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from trainer.errors import TrainerError

START_TIMEOUT_S = 90.0
POSTGRES_INSTALL = "apt-get install -y postgresql (or `make tools`, which does it)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"<no log at {path}>"


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal `proc`'s process group (SIGKILL when SIGTERM is not enough within 15 s); wait."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    proc.wait()


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with `backend_uri` (default: SQLite in `root`); artifacts
    under `root/artifacts`. `start()` waits for /health; `kill()` is SIGKILL of the group;
    `start()` again reuses the port and the store (a restart, as a pod would)."""

    def __init__(self, root: Path, backend_uri: str | None = None, workers: int = 1):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.backend_uri = backend_uri or f"sqlite:///{self.root / 'mlflow.db'}"
        self.workers = workers
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log_path = self.root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = START_TIMEOUT_S) -> float:
        """Start and wait until healthy; returns the seconds it took."""
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_uri,
            "--artifacts-destination", str(self.root / "artifacts"),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", str(self.workers),
        ]  # fmt: skip
        # The job runner (huey consumers) outlives a killed parent: off.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        started = time.monotonic()
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                command,
                cwd=self.root,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while not self.healthy():
            if self.proc.poll() is not None:
                raise TrainerError(
                    f"mlflow server exited with {self.proc.returncode}:\n{tail(self.log_path)}"
                )
            if time.monotonic() - started > timeout:
                self.stop()
                raise TrainerError(
                    f"mlflow server not healthy after {timeout:.0f} s:\n{tail(self.log_path)}"
                )
            time.sleep(0.1)
        return time.monotonic() - started

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL the server and its workers (an outage: nothing is flushed or closed)."""
        if self.proc is not None:
            stop_group(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)

    def __enter__(self) -> MlflowServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def postgres_bin() -> Path:
    """The directory holding `initdb` and `pg_ctl` (Debian: /usr/lib/postgresql/<v>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise TrainerError(f"PostgreSQL's initdb is not installed: {POSTGRES_INSTALL}")


def _version_key(path: str) -> int:
    version = Path(path).parents[1].name
    return int(version) if version.isdigit() else 0


class Postgres:
    """A PostgreSQL cluster of its own on 127.0.0.1 (trust auth, one database `mlflow`).

    PostgreSQL refuses to run as root; as root the cluster runs as the `postgres` user (created
    by Debian's package) in a directory it owns, outside pytest's 0700 temporary folders."""

    def __init__(self, database: str = "mlflow"):
        self.bin = postgres_bin()
        self.database = database
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                raise TrainerError(
                    f"running as root needs the `postgres` user: {POSTGRES_INSTALL}"
                ) from None
        self.root = Path(tempfile.mkdtemp(prefix="trainer-pg-"))
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.uri = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        kwargs = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        proc = subprocess.run(
            args, capture_output=True, text=True, cwd=self.root, check=False, **kwargs
        )
        if proc.returncode != 0:
            raise TrainerError(
                f"{Path(args[0]).name} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )

    def start(self) -> None:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--no-sync",
        )  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-o",
            options, "-w", "-t", "60", "start",
        )  # fmt: skip
        self._run(
            str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            self.database,
        )  # fmt: skip

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(TrainerError):
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Postgres:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
