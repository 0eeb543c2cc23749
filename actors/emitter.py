"""The emitter: fans every analytics event out to sinks and subscribers, each on its own worker,
so a failing or slow one never blocks or breaks the others."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pykka
from loguru import logger

from actors.messages import Publish, Subscribe, Unsubscribe
from actors.supervision.address import Address
from actors.supervision.base import SupervisedActor
from actors.supervision.context import ChildContext
from runtime.clock import Clock
from runtime.events import Event, EventType
from runtime.metrics import MetricNames, MetricsSink, NullMetrics
from runtime.payloads import Payload
from runtime.store import StateStore

__all__ = ["EmitterActor", "Publisher", "Subscribers", "log_sink", "journal_sink", "EventSink", "deliver_to_subscribers"]

EventSink = Callable[[Event], None]

_COUNTER_NAMES = {t: f"{MetricNames.ANALYTICS_EVENTS_TOTAL}.{t.value}" for t in EventType}


def log_sink(event: Event) -> None:
    """Write the event as one log line with its loop and type bound as context."""
    logger.bind(loop_id=event.loop_id, event=event.event_type.value).info(
        "event {} {}", event.event_type.value, event.metadata
    )


def journal_sink(store: StateStore) -> EventSink:
    """A sink that appends each event to ``store``'s journal (once per event id)."""

    def append(event: Event) -> None:
        store.append_event(event)

    append.__qualname__ = f"journal_sink({type(store).__name__})"
    return append


class Publisher:
    """How every actor publishes: builds the `Event` (stamped with the clock's time, so a replay's
    events carry data time) and tells the emitter. Never raises: a lost event is logged."""

    def __init__(self, emitter: Address | None, loop_id: str, clock: Clock) -> None:
        self._emitter = emitter
        self._loop_id = loop_id
        self._clock = clock

    def __call__(self, payload: Payload) -> None:
        """Publish one event carrying ``payload``."""
        if self._emitter is not None:
            self.send(self.make(payload))

    def make(self, payload: Payload) -> Event:
        """The event that publishing ``payload`` would send, stamped now but not sent: for an
        event that must be journaled first (an order, before the broker sees it)."""
        return payload.event(self._loop_id, self._clock.now())

    def send(self, event: Event) -> None:
        """Publish an event made by `make` (the journal keeps it once, however often it is sent)."""
        if self._emitter is None:
            return
        try:
            self._emitter.tell(Publish(event))
        except Exception as exc:
            logger.bind(loop_id=self._loop_id).error("event {} lost: {!r}", event.event_type.value, exc)


class Subscribers:
    """The subscribers of a trading system, kept across emitter restarts; thread-safe.

    A subscriber is a callable taking an `Event`, a pykka ``ActorRef`` (told each event), or an
    `Address`.
    """

    def __init__(self, initial: Sequence[Any] = ()) -> None:
        self._lock = threading.Lock()
        self._items: list[Any] = list(initial)

    def add(self, subscriber: Any) -> None:
        """Add ``subscriber`` (once)."""
        with self._lock:
            if subscriber not in self._items:
                self._items.append(subscriber)

    def remove(self, subscriber: Any) -> None:
        """Remove ``subscriber`` if present."""
        with self._lock:
            if subscriber in self._items:
                self._items.remove(subscriber)

    def snapshot(self) -> list[Any]:
        """The subscribers now."""
        with self._lock:
            return list(self._items)


def deliver_to_subscribers(
    subscribers: Iterable[Any],
    event: Event,
    log: Any,
    *,
    call: Callable[[Any, Event], None] | None = None,
    level: str = "WARNING",
) -> int:
    """Deliver ``event`` to every subscriber: one with a ``tell`` (an ActorRef, an `Address`)
    is told it, a callable is called with it, or handed to ``call`` (``call(subscriber, event)``)
    when given. A subscriber that fails is logged on ``log`` at ``level`` and does not stop the
    others. Returns how many failed."""
    failures = 0
    for subscriber in subscribers:
        try:
            if hasattr(subscriber, "tell"):
                subscriber.tell(event)
            elif call is not None:
                call(subscriber, event)
            else:
                subscriber(event)
        except Exception as exc:  # a subscriber that has gone away must not stop the others
            failures += 1
            log.log(level, "subscriber {!r} refused {}: {!r}", subscriber, event.event_type.value, exc)
    return failures


class _SinkWorker(pykka.ThreadingActor):
    # One thread per sink: a slow sink delays only itself; a failing one is counted, not fatal.
    use_daemon_thread = True

    def __init__(self, sink: EventSink, name: str, metrics: MetricsSink) -> None:
        super().__init__()
        self._sink = sink
        self._name = name
        self._metrics = metrics
        self.errors = 0

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Event):
            try:
                self._sink(message)
            except Exception as exc:
                self.errors += 1
                self._metrics.incr(MetricNames.SINK_ERRORS_TOTAL)
                logger.bind(actor="emitter", sink=self._name).warning(
                    "sink {} failed on {}: {!r}", self._name, message.event_type.value, exc
                )
            return None
        return self.errors


class EmitterActor(SupervisedActor):
    """Receives `Publish` messages and fans each event out; counts analytics_events_total per type.

    Sinks (log, journal, ...) and callable subscribers each run on their own worker thread;
    pykka actor refs and addresses of a host system are told the event directly.
    """

    def __init__(
        self,
        context: ChildContext,
        *,
        sinks: Sequence[EventSink] = (),
        subscribers: Subscribers | None = None,
        metrics: MetricsSink | None = None,
    ) -> None:
        super().__init__(context)
        self._sinks = list(sinks)
        self._subscribers = subscribers or Subscribers()
        self._metrics = metrics or NullMetrics()
        self._workers: dict[int, tuple[Any, pykka.ActorRef[Any]]] = {}
        self.counts: dict[str, int] = {}

    def prepare(self) -> None:
        """Start one worker per sink."""
        for sink in self._sinks:
            self._worker_for(sink)

    def _worker_for(self, target: EventSink) -> pykka.ActorRef[Any]:
        entry = self._workers.get(id(target))
        if entry is None or not entry[1].is_alive():
            name = getattr(target, "__qualname__", repr(target))
            entry = (target, _SinkWorker.start(target, name, self._metrics))
            self._workers[id(target)] = entry
        return entry[1]

    def handle(self, message: Any) -> Any:
        """Publish, Subscribe, Unsubscribe; anything else is refused."""
        if isinstance(message, Publish):
            self._publish(message.event)
        elif isinstance(message, Subscribe):
            self._subscribers.add(message.subscriber)
        elif isinstance(message, Unsubscribe):
            self._subscribers.remove(message.subscriber)
            entry = self._workers.pop(id(message.subscriber), None)
            if entry is not None:
                entry[1].stop(block=False)
        else:
            return super().handle(message)
        return None

    def _publish(self, event: Event) -> None:
        name = event.event_type.value
        self.counts[name] = self.counts.get(name, 0) + 1
        self._metrics.incr(_COUNTER_NAMES[event.event_type])
        for sink in self._sinks:
            self._worker_for(sink).tell(event)
        failures = deliver_to_subscribers(
            self._subscribers.snapshot(), event, self.log, call=lambda s, e: self._worker_for(s).tell(e)
        )
        if failures:
            self._metrics.incr(MetricNames.SINK_ERRORS_TOTAL, failures)

    def cleanup(self) -> None:
        """Let every worker finish what it was given, then stop it."""
        for _, worker in self._workers.values():
            try:
                worker.stop(block=True, timeout=5.0)
            except (pykka.Timeout, pykka.ActorDeadError):
                pass
        self._workers.clear()
