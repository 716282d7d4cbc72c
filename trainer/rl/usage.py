"""What the run costs in CPU: the trainer process and its worker processes together, so a sweep
over env counts shows the cores each count keeps busy (not just the steps it makes per second).
"""

from __future__ import annotations

import time

import psutil


class CpuMeter:
    """CPU seconds of this process and all its descendants per wall-clock second, since
    construction (workers that died and were replaced count until their death)."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._start_cpu = self._cpu_seconds()
        self._start = time.perf_counter()

    def _cpu_seconds(self) -> float:
        total = 0.0
        for process in [self._process, *self._process.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.Error:  # exited between listing and reading
                continue
            total += times.user + times.system
        return total

    def cores(self) -> float:
        elapsed = time.perf_counter() - self._start
        return (self._cpu_seconds() - self._start_cpu) / elapsed if elapsed > 0 else 0.0
