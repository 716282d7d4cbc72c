"""Which MLflow tracking URIs can work: the spec's `mlflow.tracking_uri`, `$MLFLOW_TRACKING_URI`
and the `--tracking-uri` options are checked here, so a URI MLflow could never open is refused
before anything starts (no Job submitted, no emulator started) rather than as a traceback.

The schemes are MLflow's own tracking-store registry (`mlflow/tracking/_tracking_service/
utils.py`: the file store, REST, Databricks, Unity Catalog and the SQLAlchemy engines) plus the
schemes of installed plugins (the `mlflow.tracking_store` entry-point group). Importing MLflow
here would cost a second per `trainer validate`; the list is tested against MLflow's registry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import unquote, urlparse

from trainer.errors import InvalidInput

BUILTIN_SCHEMES = frozenset(
    {"file", "http", "https", "databricks", "databricks-uc", "uc"}
    | {"sqlite", "postgresql", "mysql", "mssql"}  # SQLAlchemy engines (MLflow's DATABASE_ENGINES)
)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


@cache
def plugin_schemes() -> frozenset[str]:
    """Schemes that installed MLflow plugins register (mlflow/utils/plugins.py reads this group)."""
    return frozenset(entry.name for entry in entry_points(group="mlflow.tracking_store"))


def tracking_uri_scheme(uri: str) -> str:
    """The scheme MLflow dispatches on ('' for a plain path; 'postgresql' for
    'postgresql+psycopg2://…': SQLAlchemy's dialect+driver form)."""
    match = _SCHEME.match(uri)
    if match is None or len(match.group(1)) == 1:  # no scheme, or a Windows drive (C:/…)
        return ""
    return match.group(1).lower().split("+", 1)[0]


def tracking_uri_problem(uri: str) -> str | None:
    """What is wrong with `uri` as a tracking URI (None: MLflow has a store for its scheme)."""
    scheme = tracking_uri_scheme(uri)
    if not scheme or scheme in BUILTIN_SCHEMES or scheme in plugin_schemes():
        return None
    return (
        f"MLflow has no tracking store for the scheme '{scheme}:': use http(s)://host:port for a "
        "tracking server, or a database: sqlite:///mlflow.db for a local file, postgresql://…, "
        "mysql://…, mssql://… (MLflow 3 opens a folder store, a path or file:///path, only with "
        "MLFLOW_ALLOW_FILE_STORE=true)"
    )


def environment_tracking_uri(environ: Mapping[str, str]) -> str | None:
    """`$MLFLOW_TRACKING_URI` if set; `InvalidInput` naming the variable when MLflow cannot
    open it (checked when a command starts, not when it first logs)."""
    uri = environ.get("MLFLOW_TRACKING_URI") or None
    problem = uri and tracking_uri_problem(uri)
    if problem:
        raise InvalidInput(f"$MLFLOW_TRACKING_URI: {problem} (got {uri!r})")
    return uri


def tracking_uri_source(spec_uri: str | None, environ: Mapping[str, str]) -> str:
    """Where a run's tracking URI came from (`mlflow.tracking_uri`, else the environment, else
    MLflow's default), for messages that say what to fix."""
    if spec_uri:
        return "mlflow.tracking_uri"
    if environ.get("MLFLOW_TRACKING_URI"):
        return "$MLFLOW_TRACKING_URI"
    return "MLflow's default store (or set mlflow.tracking_uri)"


def local_store_path(uri: str) -> Path | None:
    """The file or folder a local tracking store keeps its runs in: a SQLite database's file
    (`sqlite:///mlflow.db`), a file store's folder (a plain path or `file:///…`). None for a
    server, another database, or SQLite in memory or through a `file:` URI."""
    scheme = tracking_uri_scheme(uri)
    if scheme == "":
        return Path(uri)
    if scheme == "file":
        return Path(unquote(urlparse(uri).path))
    if scheme == "sqlite":
        # sqlite:///relative.db, sqlite:////absolute.db (SQLAlchemy's URL form)
        database = uri.split("://", 1)[1][1:].split("?", 1)[0] if "://" in uri else ""
        if database and database != ":memory:" and not database.startswith("file:"):
            return Path(unquote(database))
    return None


def missing_store_problem(uri: str) -> str | None:
    """What a command that only reads runs should say when `uri` is a local store that does
    not exist: opening it would create an empty one (MLflow makes the database or folder on
    first use) and then report nothing found, which hides a mistyped path."""
    path = local_store_path(uri)
    if path is None or os.path.exists(path):  # False, not OSError, for a name too long
        return None
    return (
        f"no MLflow tracking store at {path} ({uri}): nothing was tracked there; run from the "
        "folder you trained in, or point --tracking-uri or $MLFLOW_TRACKING_URI at the store"
    )
