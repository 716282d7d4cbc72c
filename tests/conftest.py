"""Shared fixtures. Append new fixtures below; keep each one self-contained."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import pytest

from trainer.bench.servers import MlflowServer, Postgres
from trainer.errors import TrainerError


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server (SQLite backend, proxied artifacts) for the session: its URI.

    One uvicorn worker; the server's job runner (huey consumers, which outlive a killed parent)
    is disabled. The server runs in its own process group so teardown stops all of it.
    """
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    try:
        seconds = server.start()
    except TrainerError as exc:
        pytest.fail(str(exc))
    sys.stderr.write(f"\n[mlflow_server] {server.uri} healthy after {seconds:.1f}s\n")
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server on a PostgreSQL cluster of its own, as `k8s/mlflow.yaml`
    deploys it (two uvicorn workers): its URI. PostgreSQL comes from Debian's package (`make
    tools` installs it); without it the test fails saying how to install it."""
    started = time.monotonic()
    try:
        with Postgres() as postgres:
            server = MlflowServer(
                tmp_path_factory.mktemp("mlflow-postgres"), postgres.uri, workers=2
            )
            server.start()
            sys.stderr.write(
                f"\n[mlflow_postgres_server] {server.uri} on PostgreSQL, healthy after "
                f"{time.monotonic() - started:.1f}s\n"
            )
            try:
                yield server.uri
            finally:
                server.stop()
    except TrainerError as exc:
        pytest.fail(str(exc))
