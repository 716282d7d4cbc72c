"""What every command shares: error handling with the exit-code table, spec loading, options."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from trainer.errors import ExitCode, InvalidInput, Stopped, TrainerError, exit_code_for
from trainer.spec import JobSpec, check_env_counts, load_spec, tracking_uri_problem

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Our exceptions → a message on stderr and the exit code of `trainer.errors`' table.

    Invalid input prints one `error:` line per problem; a run-time failure prints its message
    (a worker's traceback included) after one `error:`; a stop (SIGTERM) prints nothing more,
    the loop already said what it saved. An OSError that reaches here (a file the system
    refused where no check was made first, e.g. an output file) is one `error:` line naming
    the file, exit 1 (an I/O failure in the table), not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Stopped as exc:
            sys.exit(exc.exit_code)
        except InvalidInput as exc:
            for line in exc.problems:
                click.echo(f"error: {line}", err=True)
            sys.exit(exit_code_for(exc))
        except TrainerError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exit_code_for(exc))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        except BrokenPipeError:
            raise  # stdout closed by the reader (`| head`): not ours to report
        except OSError as exc:  # the system refused a file no check caught first: still one line
            named = f": {exc.filename}" if exc.filename else ""
            click.echo(f"error: {exc.strerror or exc}{named}", err=True)
            sys.exit(ExitCode.FAILURE)

    return wrapper  # type: ignore[return-value]


spec_argument = click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override any spec key, e.g. --set ppo.total_steps=50000, or a list's item, "
    "--set game.ram.rewards[0].scale=2 (wins over TRAIN_* variables and the file).",
)


def env_counts_callback(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, ...] | None:
    """'1,2,4' → (1, 2, 4); a usage error (exit 2) otherwise."""
    if value is None:
        return None
    try:
        parts = value.split(",")
        if not all(part.strip() for part in parts):
            raise ValueError("an item is empty")
        counts = [int(part) for part in parts]
        return tuple(check_env_counts(counts))
    except ValueError as exc:
        raise click.BadParameter(
            f"expected distinct comma-separated integers ≥ 1 like 1,2,4 (got {value!r}: {exc})"
        ) from None


def read_spec(spec_path: str, overrides: tuple[str, ...]) -> JobSpec:
    """Load SPEC with the TRAIN_* environment and --set overrides (file < environment < CLI)."""
    return load_spec(spec_path, overrides)


def _tracking_uri_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """A URI MLflow has no store for is a usage error (exit 2) before anything is read."""
    problem = value and tracking_uri_problem(value)
    if problem:
        raise click.BadParameter(f"{problem} (got {value!r})")
    return value


def tracking_uri_option(purpose: str = "") -> Callable[[F], F]:
    """`--tracking-uri`, defaulting to $MLFLOW_TRACKING_URI like MLflow's own CLI."""
    return click.option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        callback=_tracking_uri_callback,
        help=f"MLflow tracking URI{purpose} (default: $MLFLOW_TRACKING_URI, else MLflow's local "
        "default).",
    )


def output_file_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """An output file's folder is made now (as `play` and `make-state` do), so a path that cannot
    be written is a usage error before the work, not a traceback after it."""
    if value is None:
        return None
    parent = Path(value).expanduser().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise click.BadParameter(f"{parent} is a file, not a folder") from None
    except OSError as exc:
        raise click.BadParameter(f"cannot create its folder {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise click.BadParameter(f"its folder {parent} is not writable")
    return value


def gif_file_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """An animated GIF to write: a name ending in .gif (Pillow picks the format from the
    extension: `.mp4` was a traceback after the episode, `.png` an APNG), its folder made now."""
    if value is not None and Path(value).suffix.lower() != ".gif":
        raise click.BadParameter(f"{value}: give a file name ending in .gif (an animated GIF)")
    return output_file_callback(ctx, param, value)


#: Width of a console whose output is not a terminal: wide enough for any of our tables. Rich
#: tables take only the width they need, so nothing is padded to it.
UNBOUNDED_WIDTH = 1000


def stdout_console() -> Any:
    """The rich console a command prints its tables with. On a terminal, the terminal's width;
    redirected or piped (a file, a CI log, `| grep`), no column is cut to 80 characters, as
    kubectl's tables are never cut. `$COLUMNS`, when set, wins as it does for Rich."""
    from rich.console import Console as RichConsole

    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return RichConsole()
    return RichConsole(width=UNBOUNDED_WIDTH)
