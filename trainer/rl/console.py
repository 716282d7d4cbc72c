"""The seed's console lines, echoed to a stream and kept for the run's log artifact."""

from __future__ import annotations

import sys
from typing import Any, TextIO


class Console:
    """Lines to a stream, kept in `lines` (uploaded as the run's console log).

    On a terminal a progress bar (steps done, rate, time left) stays below the lines; in a pod
    or a pipe there is none, so logs stay plain text.
    """

    def __init__(self, stream: TextIO | None = None, progress_bar: bool | None = None):
        self.stream = stream or sys.stdout
        self.lines: list[str] = []
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self._bar_wanted = isatty if progress_bar is None else progress_bar
        self._bar: Any = None
        self._task: Any = None

    def print(self, line: str = "") -> None:
        self.lines.append(line)
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False, emoji=False)
        else:
            print(line, file=self.stream, flush=True)

    def start_progress(self, total: int, completed: int) -> None:
        if not self._bar_wanted:
            return
        from rich.console import Console as RichConsole
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as ProgressBar

        self._bar = ProgressBar(
            TextColumn("[bold]training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeRemainingColumn(),
            console=RichConsole(file=self.stream),
            transient=True,
        )
        self._task = self._bar.add_task("training", total=total, completed=completed)
        self._bar.start()

    def progress(self, completed: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=completed)

    def stop_progress(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.stop()

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
