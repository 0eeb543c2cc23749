"""Time as a port, and the hand-driven clock for tests and replays (wall time: `runtime.adapters.system_clock`).

A clock tells the time and calls back at a moment. Callbacks must be quick (the actors' timers
only post a message), because a clock runs them on its own thread (`SystemClock`) or on the
thread that moves time (`ManualClock`).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from loguru import logger

from runtime.validation import aware_datetime

__all__ = ["Clock", "Scheduled", "Schedule", "ManualClock", "run_scheduled"]

# Seconds as a float hold every microsecond exactly below 2**52 of them (142 years): within that
# of its start, a clock set to a moment reads back that very moment.
_EXACT_SECONDS = 2**52 / 1e6


class Scheduled:
    """A callback waiting for its moment; `cancel` makes sure it never runs."""

    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Stop the callback from running, if it has not run yet."""
        self.cancelled = True


class Clock(Protocol):
    """What every time-dependent part asks of time.

    ``virtual`` is True for a clock that moves only when told (a replay or a test): its time
    passes in steps, not while a thread is busy, so "late" means nothing there.
    """

    virtual: bool

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Scheduled:
        """Run ``callback`` once `monotonic` reaches ``when``: a real clock runs an overdue one at
        once, a manual clock at its next `advance` or `set`."""
        ...


class Schedule:
    """The heap of waiting callbacks a clock keeps, ordered by time, then by arrival."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Scheduled]] = []
        self._order = itertools.count()

    def push(self, item: Scheduled) -> None:
        """Queue ``item``."""
        heapq.heappush(self._heap, (item.when, next(self._order), item))

    def next_time(self) -> float | None:
        """When the earliest live callback is due, or None when none waits."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> Scheduled | None:
        """The earliest callback due at ``now``, taken off the heap, or None."""
        when = self.next_time()
        if when is None or when > now:
            return None
        return heapq.heappop(self._heap)[2]


def run_scheduled(item: Scheduled) -> None:
    """Run ``item`` unless cancelled; a failing callback is logged, never raised."""
    if item.cancelled:
        return
    try:
        item.callback()
    except Exception:  # a failing callback must not stop time for everyone else
        logger.exception("clock callback {} failed", item.callback)


class ManualClock:
    """A clock that moves only when told: tests advance it by hand, a replay sets it to each bar.

    `advance` and `set` move time to the target first, then run every callback that fell due,
    in time order, on the calling thread: a callback sees the time it runs at, as a late callback
    on a real clock would, so a jump over many timer deadlines looks like a pause, not a burst.
    """

    virtual = True

    def __init__(self, start: datetime | None = None) -> None:
        start = aware_datetime("start", start or datetime(2024, 1, 1, tzinfo=UTC))
        self._origin = start.astimezone(UTC)
        self._elapsed = 0.0
        # (elapsed, the time then): the last `now`, kept, since time is asked far more often than it moves.
        self._now: tuple[float | None, datetime] = (None, self._origin)
        self._schedule = Schedule()
        self._lock = threading.RLock()

    def now(self) -> datetime:
        """The clock's current time, UTC."""
        elapsed = self._elapsed
        known, moment = self._now
        if known != elapsed:
            moment = self._origin + timedelta(seconds=elapsed)
            self._now = (elapsed, moment)
        return moment

    def monotonic(self) -> float:
        """Seconds since the clock was made."""
        return self._elapsed

    def call_at(self, when: float, callback: Callable[[], None]) -> Scheduled:
        """Queue ``callback`` for when the clock is moved to ``when`` or past it."""
        item = Scheduled(when, callback)
        with self._lock:
            self._schedule.push(item)
        return item

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (>= 0), running what falls due on the way."""
        if not seconds >= 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        self._move_to(self._elapsed + seconds)

    def set(self, moment: datetime, *, before_callbacks: Callable[[], None] | None = None) -> int:
        """Move time forward to ``moment``; moving backwards is refused (time never goes back).
        Returns how many callbacks fell due and ran. ``before_callbacks`` is called once before
        the first of them (a replay sends what it holds, so that it arrives before any tick)."""
        utc = moment
        if type(utc) is not datetime or utc.tzinfo is not UTC:  # (a replay's bars are in UTC already)
            utc = aware_datetime("moment", moment).astimezone(UTC)
        target = (utc - self._origin).total_seconds()
        if target < self._elapsed:
            raise ValueError(f"moment {moment.isoformat()} is before the clock's time {self.now().isoformat()}")
        if target < _EXACT_SECONDS and type(utc) is datetime and type(self._origin) is datetime and not utc.fold:
            self._now = (target, utc)  # the time `now` would compute for ``target``: it need not
        return self._move_to(target, before_callbacks)

    def _move_to(self, target: float, before_callbacks: Callable[[], None] | None = None) -> int:
        with self._lock:
            if target > self._elapsed:  # (another thread may have moved it further meanwhile)
                self._elapsed = target
            due = self._schedule.next_time()
        if before_callbacks is not None and due is not None and due <= self._elapsed:
            before_callbacks()  # (before anything is taken off the schedule: if it raises, nothing is lost)
        with self._lock:
            item = self._schedule.pop_due(self._elapsed)
        ran = 0
        while item is not None:
            run_scheduled(item)
            ran += 1
            with self._lock:
                item = self._schedule.pop_due(self._elapsed)
        return ran
