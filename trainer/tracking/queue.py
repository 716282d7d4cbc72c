"""`SendQueue`: everything a run sends to its tracking server goes through one bounded queue,
sent in order by one background thread, with retry and exponential backoff. The training thread
only appends; it never waits on the network.

What is queued: metric points (appended to the tail, sent in batches of at most
`MAX_METRICS_PER_BATCH`, every `interval_s` or as soon as a batch is full or an upload waits
behind them) and tasks (params, tags, texts, checkpoint and model uploads: closures, each with a
name for messages). Order is kept: a checkpoint's upload is sent after every point logged
before it, which is what a resume from MLflow relies on (`Trainer.resume` skips steps up to the
run's last logged step).

Outages. A transient failure (`is_transient`: connection refused, timeout, 5xx, 429) puts the
item back at the front and waits (0.5 s doubling to `backoff_max_s`, with jitter: "Exponential
Backoff And Jitter", AWS Architecture Blog, 2015); one line says the server is unreachable and
one says when it is back, after how long and with how much queued. A permanent failure (a 4xx:
the server understood and refused) drops that item with a warning: retrying cannot help.

Bounds. At most `max_points` metric points wait; beyond that the oldest are dropped and the
count goes out as the metric `tracking/dropped_points` once a send succeeds again. A task with
a `key` replaces a waiting task with the same key (only the newest checkpoint upload waits).
`close(timeout)` sends what it can within `timeout` and reports the rest.

Batches end at a step boundary where they can, so "every point at or below the run's last
step is stored" holds after any failure (MLflow stores a `log_batch` in one transaction).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from trainer import metrics

log = logging.getLogger(__name__)

#: (key, value, timestamp in ms, step): one metric point.
Point = tuple[str, float, int, int]

MAX_METRICS_PER_BATCH = 1000  # MLflow's limit per log_batch (mlflow/utils/validation.py)
BACKOFF_START_S = 0.5
MAX_REFUSAL_LINES = 3


@dataclass
class Task:
    name: str  # for messages: "checkpoint at step 8,000", "console.log"
    send: Callable[[], None]
    key: str | None = None  # a newer task with this key replaces this one while it waits
    discard: Callable[[], None] | None = None  # cleanup when replaced or never sent


@dataclass
class Leftover:
    """What `close()` could not send."""

    points: int = 0
    tasks: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.points or self.tasks)

    def describe(self) -> str:
        parts = [f"{self.points:,} metric points"] if self.points else []
        return ", ".join(parts + self.tasks)


class SendQueue:
    """See the module docstring. `send_points(points)` sends one batch; `is_transient(exc)`
    tells an outage from a refusal; `notify(line)` prints the outage lines (the console);
    `describe(exc)` shortens a failure for them."""

    def __init__(
        self,
        send_points: Callable[[Sequence[Point]], None],
        *,
        is_transient: Callable[[BaseException], bool],
        notify: Callable[[str], None],
        target: str,
        describe: Callable[[BaseException], str] = lambda exc: str(exc),
        max_points: int = 100_000,
        interval_s: float = 5.0,
        backoff_max_s: float = 10.0,
    ):
        self._send_points = send_points
        self._is_transient = is_transient
        self._notify = notify
        self._describe = describe
        self.target = target  # what is unreachable, for messages (no credentials)
        self.max_points = max_points
        self.interval_s = interval_s
        self.backoff_max_s = backoff_max_s
        self._items: deque[list[Point] | Task] = deque()
        self._in_flight: list[Point] | Task | None = None
        self._cond = threading.Condition()
        self._closing = self._abandoned = False
        self._flushing = 0
        self._last_send = time.monotonic()
        self._failures = 0
        self._outage_since: float | None = None
        self.newest_step = -1
        self.sent_points = 0
        self.dropped_points = 0
        self._dropped_unreported = 0
        self.rejected: list[str] = []
        self._thread = threading.Thread(target=self._run, name="tracking-queue", daemon=True)
        self._thread.start()

    # ---- producers (the training thread) ------------------------------------------------------
    def put_points(self, points: Sequence[Point]) -> None:
        if not points:
            return
        with self._cond:
            if self._items and isinstance(self._items[-1], list):
                self._items[-1].extend(points)
            else:
                self._items.append(list(points))
            self.newest_step = max(self.newest_step, max(p[3] for p in points))
            self._trim()
            if self._queued_points() >= MAX_METRICS_PER_BATCH:
                self._cond.notify_all()

    def put(self, task: Task) -> None:
        with self._cond:
            if task.key is not None:
                for old in [i for i in self._items if isinstance(i, Task) and i.key == task.key]:
                    self._items.remove(old)
                    _discard(old)
            self._items.append(task)
            self._cond.notify_all()

    def drop_points(self, held: Callable[[str, int], bool]) -> int:
        """Drop waiting points the run already holds (`held(key, step)`); returns how many."""
        with self._cond:
            dropped = 0
            for item in self._items:
                if isinstance(item, list):
                    kept = [p for p in item if not held(p[0], p[3])]
                    dropped += len(item) - len(kept)
                    item[:] = kept
            self._items = deque(i for i in self._items if not (isinstance(i, list) and not i))
            return dropped

    def unsent_points(self) -> list[Point]:
        """Points not yet confirmed by the server, oldest first (a checkpoint keeps them)."""
        with self._cond:
            batches = [self._in_flight, *self._items]
            return [p for b in batches if isinstance(b, list) for p in b]

    def pending(self) -> Leftover:
        with self._cond:
            items = [self._in_flight, *self._items] if self._in_flight is not None else self._items
            return Leftover(
                sum(len(i) for i in items if isinstance(i, list)),
                [i.name for i in items if isinstance(i, Task)],
            )

    @property
    def outage(self) -> bool:
        return self._outage_since is not None

    def begin_outage(self) -> None:
        """The caller already said the server is unreachable: no second line, but one when it
        is back."""
        with self._cond:
            if self._outage_since is None:
                self._outage_since = time.monotonic()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued has been sent (at most `timeout` s); True if it was."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while (self._items or self._in_flight is not None) and self._thread.is_alive():
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(left if left is not None else 1.0)
                return not self._items and self._in_flight is None
            finally:
                self._flushing -= 1

    def close(self, timeout: float) -> Leftover:
        """Send what is queued within `timeout` seconds, stop the thread, return what is left
        (its uploads' staging files are removed)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self.flush(timeout)
        with self._cond:
            self._abandoned = True
            self._cond.notify_all()
        self._thread.join(timeout=1.0)  # a request in progress is left to its daemon thread
        left = self.pending()
        with self._cond:
            for item in self._items:
                if isinstance(item, Task):
                    _discard(item)
            self._items.clear()
        return left

    # ---- the sending thread ---------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            try:
                if isinstance(item, Task):
                    item.send()
                else:
                    self._send_points(item)
            except Exception as exc:
                if self._is_transient(exc):
                    self._failed(item, exc)
                else:
                    self._refused(item, exc)
            else:
                self._succeeded(item)

    def _next(self) -> list[Point] | Task | None:
        with self._cond:
            while not self._abandoned:
                if self._items:
                    head = self._items[0]
                    if isinstance(head, Task):
                        self._in_flight = self._items.popleft()
                        return self._in_flight
                    wait = self._last_send + self.interval_s - time.monotonic()
                    urgent = self._closing or self._flushing or len(self._items) > 1
                    if urgent or wait <= 0 or len(head) >= MAX_METRICS_PER_BATCH:
                        self._in_flight = _take_batch(self._items)
                        return self._in_flight
                    self._cond.wait(wait)
                elif self._closing:
                    return None
                else:
                    self._cond.wait()
            return None

    def _failed(self, item: list[Point] | Task, exc: BaseException) -> None:
        now = time.monotonic()
        with self._cond:
            self._in_flight = None
            if isinstance(item, Task):
                newer = item.key is not None and any(
                    isinstance(i, Task) and i.key == item.key for i in self._items
                )
                if newer:
                    _discard(item)
                else:
                    self._items.appendleft(item)
            elif self._items and isinstance(self._items[0], list):
                self._items[0][:0] = item
            else:
                self._items.appendleft(item)
            self._trim()
            first = self._outage_since is None
            if first:
                self._outage_since = now
            self._failures += 1
            delay = min(self.backoff_max_s, BACKOFF_START_S * 2 ** (self._failures - 1))
            queued = self._queued_points()
            self._cond.notify_all()
        if first:
            self._notify(
                f"⚠️  MLflow unreachable at {self.target} ({self._describe(exc)}): training goes "
                f"on, tracking is queued and retried ({queued:,} metric points waiting, at most "
                f"{self.max_points:,} kept)"
            )
        with self._cond:  # back off; close() cuts the wait short only when giving up
            self._cond.wait_for(lambda: self._abandoned, delay * random.uniform(0.8, 1.2))

    def _refused(self, item: list[Point] | Task, exc: BaseException) -> None:
        name = item.name if isinstance(item, Task) else f"{len(item):,} metric points"
        self.rejected.append(name)
        if len(self.rejected) <= MAX_REFUSAL_LINES:
            more = (
                "; further refusals are only counted"
                if len(self.rejected) == MAX_REFUSAL_LINES
                else ""
            )
            self._notify(f"⚠️  MLflow refused {name} ({self._describe(exc)}); not retried{more}")
        if isinstance(item, Task):
            _discard(item)
        self._succeeded(None)

    def _succeeded(self, item: list[Point] | Task | None) -> None:
        with self._cond:
            since, self._outage_since, self._failures = self._outage_since, None, 0
            # What was queued when the server came back: the item just sent included.
            pending = self.pending() if since is not None else None
            self._in_flight = None
            self._last_send = time.monotonic()
            if isinstance(item, list):
                self.sent_points += len(item)
            dropped, self._dropped_unreported = self._dropped_unreported, 0
            self._cond.notify_all()
        if pending is not None:
            assert since is not None
            note = (
                f"; the {self.dropped_points:,} oldest points were dropped (buffer full), "
                f"logged as {metrics.DROPPED_POINTS}"
                if self.dropped_points
                else ""
            )
            self._notify(
                f"✅ MLflow reachable again at {self.target} after {time.monotonic() - since:.1f} s: "
                f"sending {pending.points:,} queued metric points and {len(pending.tasks)} "
                f"queued uploads{note}"
            )
        if dropped:
            stamp = int(time.time() * 1000)
            point = (metrics.DROPPED_POINTS, float(self.dropped_points), stamp, self.newest_step)
            with self._cond:  # past the bound by one point: trimming here would drop another
                self._items.append([point])
                self._cond.notify_all()

    # ---- helpers (hold the lock) -----------------------------------------------------------
    def _queued_points(self) -> int:
        return sum(len(i) for i in self._items if isinstance(i, list))

    def _trim(self) -> None:
        """Drop the oldest waiting points beyond `max_points`."""
        excess = self._queued_points() - self.max_points
        while excess > 0:
            first = next(i for i in self._items if isinstance(i, list))
            cut = min(excess, len(first))
            del first[:cut]
            if not first:
                self._items.remove(first)
            excess -= cut
            self.dropped_points += cut
            self._dropped_unreported += cut


def _take_batch(items: deque[list[Point] | Task]) -> list[Point]:
    """Up to `MAX_METRICS_PER_BATCH` points off the head list, ending at a step boundary."""
    head = items[0]
    assert isinstance(head, list)
    size = min(len(head), MAX_METRICS_PER_BATCH)
    if size < len(head):
        boundary = size
        while boundary > 0 and head[boundary - 1][3] == head[boundary][3]:
            boundary -= 1
        size = boundary or size  # one step with more points than a batch: split it anyway
    batch = head[:size]
    del head[:size]
    if not head:
        items.popleft()
    return batch


def _discard(task: Task) -> None:
    if task.discard is not None:
        try:
            task.discard()
        except OSError as exc:
            log.warning("cleaning up after %s failed: %s", task.name, exc)
