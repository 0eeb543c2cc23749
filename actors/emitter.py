"""The emitter: fans every analytics event out to sinks and subscribers, each on its own worker,
so a failing or slow one never blocks or breaks the others."""

from __future__ import annotations

import itertools
import math
import operator
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pykka
from loguru import logger

from actors.messages import GetJournals, Publish, Subscribe, Unsubscribe
from actors.replay_messages import PublishBatch
from actors.supervision.address import Address
from actors.supervision.base import SupervisedActor
from actors.supervision.context import ChildContext
from runtime.backoff import Backoff
from runtime.clock import Clock
from runtime.events import Event, EventType
from runtime.metrics import MetricNames, MetricsSink, NullMetrics
from runtime.payloads import Payload
from runtime.store import StateStore

__all__ = [
    "EmitterActor",
    "EventSink",
    "JournalSink",
    "Publisher",
    "Subscribers",
    "deliver_to_subscribers",
    "journal_sink",
    "log_sink",
]

EventSink = Callable[[Event], None]

# What the emitter's stop waits for its workers: under the supervisor's default shutdown timeout
# (5 s), so a slow sink does not get the emitter abandoned.
_DRAIN_SECONDS = 4.0

_COUNTER_NAMES = {t.value: f"{MetricNames.ANALYTICS_EVENTS_TOTAL}.{t.value}" for t in EventType}
_EVENT_TYPE = operator.attrgetter("event_type")


def log_sink(event: Event) -> None:
    """Write the event as one log line with its loop, type and metadata bound as context (JSON
    logs carry the metadata as JSON, under ``record.extra.metadata``)."""
    logger.bind(loop_id=event.loop_id, event=event.event_type.value, metadata=event.metadata).info(
        "event {} {}", event.event_type.value, event.metadata
    )


MAX_HELD = 100_000
"""The most events a journal holds while its store refuses them (see `JournalSink`)."""

RETRY = Backoff(min_seconds=0.5, max_seconds=30.0)
"""When a journal tries events its store refused again: after 0.5 s, doubling up to 30 s."""

GATHER_SECONDS = 0.002
"""How long the journal's worker lets events gather after a group commit begins before it
begins the next (`JournalSink`'s ``gather``): under a steady stream of events a few times more
go into each commit, so the journal writes them with a fraction of the commits, fsyncs and
thread hand-offs. The gathering delays no event by more than this, and none at all while
someone waits on the journal (`JournalSink.wait_backlog`, `JournalSink.wait_caught_up`: a guard
before an order's events, a replay's flow control) or the worker stops."""


class JournalSink:
    """The event journal as an emitter sink: every event it is handed goes into ``store``'s
    journal, each id once, in group commits.

    The emitter's worker for it writes every event waiting in one `StateStore.append_events`
    transaction, so the journal keeps up with a fast producer on a store that fsyncs each commit;
    it begins a commit at most every ``gather`` seconds (`GATHER_SECONDS`) unless someone waits
    on the journal. It counts, across emitter restarts, the events handed to it and not yet
    written (`backlog`, which a producer may wait on with `wait_backlog`) and those a failing
    store lost (`unjournaled`), so that a stop can say how many events the journal is missing.
    Called with one event, it journals that event at once.

    Events the store refuses (a full disk, a database that went away) are not lost at once: the
    worker holds them, newer events joining them in order, and tries them again after a backoff
    (`RETRY`) until the store takes them, saying so once when it fails and once when it writes
    again. At most `MAX_HELD` are held: past that the oldest heartbeats go first, then the oldest
    of the rest, each counted in `unjournaled`. What is still held when the worker stops is tried
    once more and, if refused, counted there too. While it holds any, `wait_backlog` and
    `wait_caught_up` answer at once (False unless already caught up): no wait would help.
    """

    def __init__(self, store: StateStore, *, gather: float = GATHER_SECONDS) -> None:
        if isinstance(gather, bool) or not isinstance(gather, (int, float)) or not 0 <= gather <= 1:
            raise ValueError(f"gather must be a number of seconds in 0..1, got {gather!r}")
        self.store = store
        self.gather = float(gather)
        self._cond = threading.Condition()
        self._handed = 0
        self._settled = 0
        self._failed = 0
        self._waiting = 0  # callers of wait_backlog and wait_caught_up waiting now
        self._held: list[Event] = []  # refused by the store, to be tried again (worker only, under _cond)
        self._refusals = 0  # refused attempts in a row
        self._retry_in = 0.0  # after the last refusal, how long until the next try

    def __call__(self, event: Event) -> None:
        """Journal ``event`` now (once per event id)."""
        self._expect(1)
        self.write([event])

    def write(self, events: Sequence[Event]) -> int:
        """Journal ``events`` in one transaction; returns how many were new. When the store
        raises, every one of them is counted in `unjournaled` and the error is raised."""
        try:
            return self.store.append_events(events)
        except Exception:
            with self._cond:
                self._failed += len(events)
            raise
        finally:
            with self._cond:
                self._settled += len(events)
                self._cond.notify_all()

    def write_holding(self, events: Sequence[Event], *, last: bool = False) -> int:
        """As `write`, for the emitter's worker: the events held first, then ``events``. When the
        store raises, the error is raised and the lot is held to be tried again, or counted in
        `unjournaled` when this is the ``last`` try (the worker stops). When the store finds an
        event bad (`TypeError`, `ValueError`: no retry would write it), each event is written on
        its own, and only the bad ones are dropped (counted, and a `ValueError` says how many)."""
        with self._cond:
            batch = [*self._held, *events] if self._held else events  # (no copy on the common path)
        try:
            written = self.store.append_events(batch)
        except (TypeError, ValueError):
            # Where a store finds a bad event may come after held ones (PostgreSQL encodes inside
            # its transaction): one at a time, so that one bad event takes nothing else with it.
            return self._one_by_one(batch, last)
        except Exception:
            self._refused(batch, last)
            raise
        self._settle(len(batch), written_again=True)
        return written

    def _one_by_one(self, batch: Sequence[Event], last: bool) -> int:
        written = bad = 0
        for index, event in enumerate(batch):
            try:
                written += self.store.append_events([event])
            except (TypeError, ValueError):
                bad += 1
                with self._cond:
                    self._failed += 1
            except Exception:
                self._settle(index - bad)
                with self._cond:
                    self._settled += bad
                self._refused(batch[index:], last)
                raise
        self._settle(len(batch) - bad)
        with self._cond:
            self._settled += bad
            self._cond.notify_all()
        if bad:
            raise ValueError(f"{bad} of {len(batch)} events could not be journaled (the store found them bad): dropped")
        return written

    def _settle(self, count: int, *, written_again: bool = False) -> None:
        # ``count`` events written: the held ones are gone (written, or beside the point now).
        with self._cond:
            recovered = self._refusals if written_again or self._held else 0
            self._held, self._refusals = [], 0
            self._settled += count
            self._cond.notify_all()
        if recovered:
            _journal_log(self).warning(
                "journal {!r}: writing again after {} refused attempts; {} events journaled", self, recovered, count
            )

    def _refused(self, rest: Sequence[Event], last: bool) -> None:
        # The store refused ``rest`` (an outage): held to be tried again, or lost at the last try.
        dropped = 0
        with self._cond:
            if last:
                self._held = []
                self._failed += len(rest)
                self._settled += len(rest)
            else:
                self._refusals += 1
                self._held = list(rest)
                dropped = self._drop_past(MAX_HELD)
                self._retry_in = RETRY.delay(self._refusals)
            self._cond.notify_all()
        if dropped:
            _journal_log(self).error("journal {!r}: {} refused events dropped to hold at most {}", self, dropped, MAX_HELD)

    def _drop_past(self, most: int) -> int:
        # Under _cond: the oldest heartbeats first (the journal's bulk, one per bar or interval,
        # each superseded by the next), then the oldest of the rest. Returns how many went.
        excess = len(self._held) - most
        if excess <= 0:
            return 0
        gone = set(itertools.islice((i for i, e in enumerate(self._held) if e.event_type is EventType.HEARTBEAT), excess))
        if len(gone) < excess:
            gone.update(itertools.islice((i for i in range(len(self._held)) if i not in gone), excess - len(gone)))
        self._held = [event for i, event in enumerate(self._held) if i not in gone]
        self._failed += len(gone)
        self._settled += len(gone)
        return len(gone)

    @property
    def held(self) -> int:
        """Events the store refused that wait to be tried again (part of `backlog`)."""
        with self._cond:
            return len(self._held)

    @property
    def refusals(self) -> int:
        """Attempts the store refused in a row (0 once it writes again)."""
        with self._cond:
            return self._refusals

    def retry_delay(self) -> float:
        """Seconds to wait after the last refusal before trying the held events again (`RETRY`)."""
        with self._cond:
            return self._retry_in

    @property
    def backlog(self) -> int:
        """Events handed to this journal and not yet written (nor lost)."""
        with self._cond:
            return self._handed - self._settled

    @property
    def unjournaled(self) -> int:
        """Events lost so far because the store failed to write them."""
        with self._cond:
            return self._failed

    def wait_backlog(self, at_most: int, timeout: float | None) -> bool:
        """Block until at most ``at_most`` events wait to be written, or ``timeout`` seconds have
        passed; True when the backlog is that small."""
        return self._wait(lambda: self._handed - self._settled <= at_most, timeout)

    def wait_caught_up(self, timeout: float | None) -> bool:
        """Block until every event handed to this journal so far is written (or lost), or
        ``timeout`` seconds have passed; True when it caught up. Events handed later are not
        waited for, so a steady producer cannot keep the caller waiting."""
        with self._cond:
            handed = self._handed
        return self._wait(lambda: self._settled >= handed, timeout)

    def _wait(self, done: Callable[[], bool], timeout: float | None) -> bool:
        # While anyone waits, the worker commits what is there without gathering more. While the
        # store refuses events, waiting would only delay the caller (an order): answered at once.
        with self._cond:
            if done():
                return True
            self._waiting += 1
            self._cond.notify_all()  # (a worker gathering commits now)
            try:
                return self._cond.wait_for(lambda: done() or bool(self._held), timeout) and done()
            finally:
                self._waiting -= 1

    def gathered(self, since: float, stopping: Callable[[], bool]) -> None:
        """Return once events have gathered for ``gather`` seconds since ``since`` (the
        `time.monotonic` at which the last commit began), or at once while anyone waits on the
        journal or ``stopping()`` is true (see `wake`): the worker calls it before each commit."""
        left = since + self.gather - time.monotonic()
        if left > 0:
            with self._cond:
                self._cond.wait_for(lambda: self._waiting > 0 or stopping(), left)

    def wake(self) -> None:
        """Have a `gathered` in progress look again at its ``stopping`` (a worker stops)."""
        with self._cond:
            self._cond.notify_all()

    def _expect(self, count: int) -> None:
        # Counted before the event is queued, so the backlog never reads low.
        with self._cond:
            self._handed += count

    def __repr__(self) -> str:
        return f"journal_sink({type(self.store).__name__})"


def _journal_log(journal: JournalSink) -> Any:
    return logger.bind(actor="emitter", sink=repr(journal))


def journal_sink(store: StateStore, *, gather: float = GATHER_SECONDS) -> JournalSink:
    """A sink that journals each event into ``store`` (once per event id), in group commits at
    most every ``gather`` seconds (see `JournalSink`)."""
    return JournalSink(store, gather=gather)


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

    def send_all(self, events: Sequence[Event]) -> None:
        """Publish events made by `make`, in order, in one message (as `send` would one by one)."""
        if self._emitter is None or not events:
            return
        try:
            self._emitter.tell(PublishBatch(tuple(events)))
        except Exception as exc:
            logger.bind(loop_id=self._loop_id).error("{} events lost: {!r}", len(events), exc)


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
        self.discard(subscriber)

    def discard(self, subscriber: Any) -> bool:
        """Remove ``subscriber``; True when it was there (so that only one caller says so)."""
        with self._lock:
            if subscriber in self._items:
                self._items.remove(subscriber)
                return True
            return False

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
    gone: Subscribers | None = None,
) -> int:
    """Deliver ``event`` to every subscriber: one with a ``tell`` (an ActorRef, an `Address`)
    is told it, a callable is called with it, or handed to ``call`` (``call(subscriber, event)``)
    when given. A subscriber that fails is logged on ``log`` at ``level`` and does not stop the
    others. A pykka ``ActorRef`` whose actor has stopped (it never comes back: an `Address`
    does) is removed from ``gone`` when given, said once. Returns how many failed."""
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
            if gone is not None and isinstance(subscriber, pykka.ActorRef) and isinstance(exc, pykka.ActorDeadError):
                if gone.discard(subscriber):
                    log.log(level, "subscriber {!r} has stopped: it is told nothing more", subscriber)
                continue
            log.log(level, "subscriber {!r} refused {}: {!r}", subscriber, event.event_type.value, exc)
    return failures


class _SinkWorker:
    # One thread per sink: a slow sink delays only itself; a failing one is counted, not fatal.
    # Whatever waits when the thread gets to it is taken at once: a journal writes it as one batch.

    def __init__(self, sink: EventSink, name: str, metrics: MetricsSink) -> None:
        self._sink = sink
        self._journal = sink if isinstance(sink, JournalSink) else None
        self._name = name
        self._metrics = metrics
        self._cond = threading.Condition()
        self._queue: list[Event] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"tradewarden-sink-{name}", daemon=True)
        self._thread.start()

    def tell(self, events: Sequence[Event]) -> None:
        # Events in order, handed on in one go: one wake-up of the worker for the lot.
        if self._journal is not None:
            self._journal._expect(len(events))
        with self._cond:
            self._queue.extend(events)
            self._cond.notify()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _is_stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        # The thread delivers everything already queued before it ends, at once.
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._journal is not None:
            self._journal.wake()

    def join(self, timeout: float | None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        began = -math.inf  # when the journal's last commit began
        while True:
            held = self._journal is not None and self._journal.held > 0
            with self._cond:
                if held:
                    # Refused events are tried again after the backoff, newer ones joining them,
                    # or at once when the worker stops (a last time) or as many again are waiting
                    # (a try that fails trims them to MAX_HELD: memory stays bounded).
                    assert self._journal is not None
                    self._cond.wait_for(lambda: self._stopping or len(self._queue) >= MAX_HELD, self._journal.retry_delay())
                else:
                    self._cond.wait_for(lambda: self._queue or self._stopping)
                    if not self._queue:
                        return
            if self._journal is not None:
                if not held:
                    self._journal.gathered(began, self._is_stopping)  # (producers go on queueing meanwhile)
                began = time.monotonic()
            with self._cond:
                batch, self._queue = self._queue, []
                last = self._stopping
            if self._journal is not None:
                self._write_journal(self._journal, batch, last)
                continue
            for event in batch:
                try:
                    self._sink(event)
                except Exception as exc:
                    self._failed(event.event_type.value, exc)

    def _write_journal(self, journal: JournalSink, batch: list[Event], last: bool) -> None:
        tried = journal.held + len(batch)
        try:
            journal.write_holding(batch, last=last)
        except Exception as exc:
            held = journal.held
            if not held:
                self._failed(f"{tried} events", exc)
                return
            self._metrics.incr(MetricNames.SINK_ERRORS_TOTAL)
            # Said at the first refusal; the rest are counted, and the recovery is said too.
            level = "ERROR" if journal.refusals == 1 else "DEBUG"
            logger.bind(actor="emitter", sink=self._name).log(
                level, "journal {} refused {} events: {!r}; holding them, to try again in {:.1f}s",
                self._name, held, exc, journal.retry_delay(),
            )

    def _failed(self, what: str, exc: Exception) -> None:
        self._metrics.incr(MetricNames.SINK_ERRORS_TOTAL)
        level = "WARNING" if self._journal is None else "ERROR"  # a journal that fails loses events
        logger.bind(actor="emitter", sink=self._name).log(level, "sink {} failed on {}: {!r}", self._name, what, exc)


class EmitterActor(SupervisedActor):
    """Receives `Publish` messages and fans each event out; counts analytics_events_total per type.

    Sinks (log, journal, ...) and callable subscribers each run on their own worker thread, which
    takes every event waiting at once (a `JournalSink` writes them in one transaction); pykka actor
    refs and addresses of a host system are told the event directly. Handing an event to a worker
    never blocks: a producer that must not outrun the journal asks `GetJournals` and waits on them.
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
        self._workers: dict[int, tuple[Any, _SinkWorker]] = {}
        self.counts: dict[str, int] = {}

    def prepare(self) -> None:
        """Start one worker per sink."""
        for sink in self._sinks:
            self._worker_for(sink)

    def _worker_for(self, target: EventSink) -> _SinkWorker:
        entry = self._workers.get(id(target))
        if entry is None or not entry[1].is_alive():
            name = repr(target) if isinstance(target, JournalSink) else getattr(target, "__qualname__", repr(target))
            entry = (target, _SinkWorker(target, name, self._metrics))
            self._workers[id(target)] = entry
        return entry[1]

    def handle(self, message: Any) -> Any:
        """Publish, Subscribe, Unsubscribe, GetJournals; anything else is refused."""
        if isinstance(message, GetJournals):
            return tuple(sink for sink in self._sinks if isinstance(sink, JournalSink))
        if isinstance(message, Publish):
            self._publish((message.event,))
        elif isinstance(message, PublishBatch):
            self._publish(message.events)
        elif isinstance(message, Subscribe):
            self._subscribers.add(message.subscriber)
        elif isinstance(message, Unsubscribe):
            self._subscribers.remove(message.subscriber)
            entry = self._workers.pop(id(message.subscriber), None)
            if entry is not None:
                entry[1].stop()
        else:
            return super().handle(message)
        return None

    def _publish(self, events: Sequence[Event]) -> None:
        # Each sink's worker is handed the whole lot at once, in order; the counters move by as
        # much as one event at a time would have moved them.
        if not events:
            return
        counts = self.counts
        kinds: dict[str, int] = {}
        # Counted by runs of one type, found in C: a batch is mostly one long run (a replay's
        # heartbeats), and each hash of an enum member is a call of Python code.
        for kind, run in itertools.groupby(map(_EVENT_TYPE, events)):
            name = kind._value_
            kinds[name] = kinds.get(name, 0) + len(list(run))
        for name, count in kinds.items():
            counts[name] = counts.get(name, 0) + count
            self._metrics.incr(_COUNTER_NAMES[name], count)
        for sink in self._sinks:
            self._worker_for(sink).tell(events)
        subscribers = self._subscribers.snapshot()
        if not subscribers:
            return
        failures = 0
        for event in events:
            failures += deliver_to_subscribers(
                subscribers, event, self.log, call=lambda s, e: self._worker_for(s).tell((e,)), gone=self._subscribers
            )
        if failures:
            self._metrics.incr(MetricNames.SINK_ERRORS_TOTAL, failures)

    def cleanup(self) -> None:
        """Let every worker deliver what it was given, then stop it. The wait is bounded (within
        the supervisor's shutdown timeout): a worker still busy then goes on delivering on its own
        thread, and `TradingSystem.stop` waits for the journal before it closes the store."""
        workers = [worker for _, worker in self._workers.values()]
        for worker in workers:
            worker.stop()
        deadline = time.monotonic() + _DRAIN_SECONDS
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._workers.clear()
