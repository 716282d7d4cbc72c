"""Exit codes and the error types behind them: the one table scripts can trust.

| exit | meaning                                         | raised as                                  |
|------|-------------------------------------------------|--------------------------------------------|
| 0    | success                                         |                                            |
| 1    | a failure at run time (cluster, workers, I/O)   | `TrainerError` (KubeError, WorkerError, …) |
| 2    | invalid input: spec, override, argument, game   | `InvalidInput` (SpecError, GameError, …)   |
| 130  | interrupted (Ctrl-C) before anything was saved  | `KeyboardInterrupt`                        |
| 143  | SIGTERM: a checkpoint was written; retry resumes| `Stopped` (128 + the signal number)        |

Every layer raises these types (or subclasses); only the CLI turns them into exit codes, through
`exit_code_for`. This module imports nothing, so any layer may import it (spec/ included).
"""

from __future__ import annotations

import signal
import stat
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    INVALID_INPUT = 2
    INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class TrainerError(Exception):
    """A failure at run time with a user-facing message (one problem per line)."""

    exit_code: int = ExitCode.FAILURE


class InvalidInput(TrainerError, ValueError):
    """Invalid input. `str()` is the user-facing message, one problem per line; `problems` lists
    them. Nothing was started or sent when this is raised."""

    exit_code = ExitCode.INVALID_INPUT

    def __init__(self, problems: str | Sequence[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class Stopped(TrainerError):
    """SIGTERM (or a first Ctrl-C) arrived; a checkpoint was written. The exit code is 128 + the
    signal: non-zero, so a Job counts the pod as failed and its retry resumes (a clean 0 would
    mark unfinished training as succeeded)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.exit_code = 128 + int(signum)


def exit_code_for(exc: BaseException) -> int:
    """The exit code for an exception that reached the command line."""
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, TrainerError):
        return int(exc.exit_code)
    return ExitCode.FAILURE


def path_problem(path: Path, what: str, suffixes: Sequence[str]) -> str | None:
    """Why `path` cannot be the WHAT file, before anything opens it: it cannot be looked at (a
    name too long, a folder on the way without permission, a symlink loop), or it is a
    directory: "PATH is a directory; give the WHAT file's path (it holds a.gb, …)", naming the
    files in it that end with one of `suffixes`. None for a file, or when nothing is there
    (the caller says "not found" in its own words)."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # Path.is_file() raises these (Python 3.11) instead of answering
        return f"cannot look at {path} ({exc.strerror or exc}); give the {what} file's path"
    if not stat.S_ISDIR(mode):
        return None
    try:
        found = sorted(p.name for p in path.iterdir() if p.suffix.lower() in suffixes)
    except OSError:
        found = []
    shown = ", ".join(found[:5]) + (", …" if len(found) > 5 else "")
    return f"{path} is a directory; give the {what} file's path" + (
        f" (it holds {shown})" if found else ""
    )


def read_input_file(path: Path, key: str, error: type[InvalidInput] = InvalidInput) -> bytes:
    """The bytes of a file the user named (a ROM, a save state, a checkpoint); `error` "KEY:
    cannot read PATH (why)" when the file is there but cannot be read (no permission for the
    pod's user, an I/O error), instead of a traceback."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise error(f"{key}: cannot read {path} ({exc.strerror or exc})") from None


#: What a failed request's long message boils down to, for one console line.
_FAILURE_GIST = (
    ("Connection refused", "connection refused"),
    ("timed out", "timed out"),
    ("Name or service not known", "unknown host"),
    ("Temporary failure in name resolution", "name resolution failed"),
    ("RemoteDisconnected", "connection closed by the server"),
    ("Connection reset", "connection reset"),
)


def describe_failure(exc: BaseException, limit: int = 160) -> str:
    """A short description of a failed call: "connection refused", or its first words."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for needle, gist in _FAILURE_GIST:
        if needle in text:
            return gist
    return text if len(text) <= limit else text[: limit - 1] + "…"
