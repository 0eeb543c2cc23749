"""Wall time: the system clock, whose callbacks run on one daemon thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from runtime.clock import Schedule, Scheduled, run_scheduled

__all__ = ["SystemClock"]


class SystemClock:
    """Wall time, with callbacks run on one daemon thread started on first use.

    `SystemClock.shared()` is the one instance most code should use, so that one thread serves
    every timer in the process.
    """

    virtual = False
    _shared: SystemClock | None = None
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls) -> SystemClock:
        """The process-wide system clock."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def __init__(self) -> None:
        self._schedule = Schedule()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def now(self) -> datetime:
        """The wall-clock time, UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def call_at(self, when: float, callback: Callable[[], None]) -> Scheduled:
        """Run ``callback`` on the clock's thread once ``time.monotonic()`` reaches ``when``."""
        item = Scheduled(when, callback)
        with self._wake:
            self._schedule.push(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="tradewarden-clock", daemon=True)
                self._thread.start()
            self._wake.notify()
        return item

    def _serve(self) -> None:
        while True:
            with self._wake:
                while True:
                    item = self._schedule.pop_due(time.monotonic())
                    if item is not None:
                        break
                    when = self._schedule.next_time()
                    self._wake.wait(None if when is None else max(0.0, when - time.monotonic()))
            run_scheduled(item)
