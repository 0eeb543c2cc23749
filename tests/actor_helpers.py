"""Shared pieces for the actor tests: an event recorder to wait on, small test actors, and
brokers that fail the way real ones do (the outside world, not our code, is what is faked)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from loguru import logger

from actors.supervision.base import SupervisedActor
from actors.supervision.context import ChildContext
from runtime.adapters.paper import PaperBroker
from runtime.alerts import Alert
from runtime.broker import BrokerError, Fill, Order
from runtime.events import Event, EventType

WAIT = 10.0


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Wait for ``predicate`` to hold, looking every few milliseconds, for at most ``timeout``:
    for state that no event announces (a timer's missed count, a slot's ref)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.005)
    return True


class AlertInbox:
    """An alert sink standing in for Telegram: keeps what it was sent."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> None:
        with self.cond:
            self.sent.append(alert)
            self.cond.notify_all()

    def wait_for(self, title_part: str) -> Alert:
        with self.cond:
            assert self.cond.wait_for(lambda: any(title_part in a.title for a in self.sent), WAIT), self.sent
            return next(a for a in self.sent if title_part in a.title)


class EventLog:
    """A subscriber that records events and lets a test wait for what it expects."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def of(self, event_type: EventType) -> list[Event]:
        with self._cond:
            return [e for e in self.events if e.event_type is event_type]

    def wait_for(self, predicate: Callable[[list[Event]], bool], timeout: float = WAIT) -> list[Event]:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.events), timeout):
                seen = [e.event_type.value for e in self.events]
                raise AssertionError(f"timed out after {timeout}s waiting; events seen: {seen}")
            return list(self.events)

    def wait_count(self, event_type: EventType, count: int, timeout: float = WAIT) -> list[Event]:
        self.wait_for(lambda events: sum(e.event_type is event_type for e in events) >= count, timeout)
        return self.of(event_type)


class Journal:
    """A thread-safe list of what test actors did, in order, with a way to wait on it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.entries: list[Any] = []

    def add(self, entry: Any) -> None:
        with self._cond:
            self.entries.append(entry)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = WAIT) -> list[Any]:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.entries), timeout):
                raise AssertionError(f"timed out after {timeout}s; entries: {self.entries}")
            return list(self.entries)

    def snapshot(self) -> list[Any]:
        with self._cond:
            return list(self.entries)


class LogLines(Journal):
    """Inside ``with``, records every log line at ``level`` or above as "LEVEL message"."""

    def __init__(self, level: str = "WARNING") -> None:
        super().__init__()
        self._level = level
        self._sink: int | None = None

    def __enter__(self) -> LogLines:
        self._sink = logger.add(lambda m: self.add(m.rstrip("\n")), level=self._level, format="{level} {message}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sink is not None:
            logger.remove(self._sink)


class Recorder(SupervisedActor):
    """A test child: records starts, stops and every message it handles into a journal.

    Messages: ("echo", x) answers x with its incarnation; ("fail_start_next", n) makes the next n
    starts of this name fail; "stop_self" stops it normally; anything else is recorded.
    """

    start_failures: dict[str, int] = {}

    def __init__(self, context: ChildContext, journal: Journal) -> None:
        super().__init__(context)
        self.journal = journal

    def prepare(self) -> None:
        remaining = Recorder.start_failures.get(self.context.name, 0)
        if remaining > 0:
            Recorder.start_failures[self.context.name] = remaining - 1
            self.journal.add(("start_failed", self.context.name, self.context.incarnation))
            raise RuntimeError(f"{self.context.name} refuses to start")
        self.journal.add(("started", self.context.name, self.context.incarnation))

    def cleanup(self) -> None:
        self.journal.add(("ended", self.context.name, self.context.incarnation, self.exit_kind))

    def handle(self, message: Any) -> Any:
        if message == "stop_self":
            self.stop()
            return None
        if isinstance(message, tuple) and message and message[0] == "echo":
            return (message[1], self.context.incarnation)
        self.journal.add(("got", self.context.name, self.context.incarnation, message))
        return None


class UnreachableBroker(PaperBroker):
    """A paper account whose equity cannot be read while ``down`` is set (its trade server
    unreachable: ``why`` says so in the `BrokerError`); orders still reach the paper account."""

    def __init__(self, cash: float, *, down: bool = False, why: str = "trade server unreachable") -> None:
        super().__init__(cash)
        self.down = down
        self.why = why

    def account_snapshot(self):
        if self.down:
            raise BrokerError(self.why)
        return super().account_snapshot()

    def account_equity(self) -> float:
        if self.down:
            raise BrokerError(self.why)
        return super().account_equity()


class FlakyBroker:
    """A paper broker whose close_position fails its first ``close_failures`` calls, as a broker
    with a dropped connection would, and which counts every call. With ``hold_submit`` each
    order waits for that event before it reaches the paper account (a trade server that is slow
    to answer); ``submit_started`` is set when an order is waiting."""

    def __init__(self, inner: PaperBroker, close_failures: int = 0, hold_submit: threading.Event | None = None) -> None:
        self.inner = inner
        self.close_failures = close_failures
        self.hold_submit = hold_submit
        self.submit_started = threading.Event()
        self.close_calls = 0
        self.submit_calls = 0
        self._lock = threading.Lock()

    def account_equity(self) -> float:
        return self.inner.account_equity()

    def open_positions(self):
        return self.inner.open_positions()

    def submit_order(self, order: Order) -> Fill:
        with self._lock:
            self.submit_calls += 1
        if self.hold_submit is not None:
            self.submit_started.set()
            if not self.hold_submit.wait(WAIT):
                raise BrokerError("trade server did not answer")
        return self.inner.submit_order(order)

    def find_fill(self, client_id: str) -> Fill | None:
        return self.inner.find_fill(client_id)

    def close_position(self, position_id: str, client_id: str | None = None) -> Fill:
        with self._lock:
            self.close_calls += 1
            if self.close_failures > 0:
                self.close_failures -= 1
                raise BrokerError("connection to trade server lost")
        return self.inner.close_position(position_id, client_id)
