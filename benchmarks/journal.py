"""Journal appends per second on SQLite (WAL, ``synchronous=FULL``): group commit through the
emitter's journal worker, straight batches, and one transaction per event."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import attrs

from actors.emitter import EmitterActor, journal_sink
from actors.messages import Publish
from actors.supervision.supervisor import ChildSpec, Supervisor
from benchmarks.replay import journal_store
from runtime.events import Event, EventType

__all__ = ["JournalRates", "journal_rates"]

_START = datetime(2024, 1, 2, tzinfo=UTC)


@attrs.frozen
class JournalRates:
    """Appends per second each way, and how the emitter's worker batched them."""

    through_emitter: float
    batched: float
    per_event: float
    batch_size: int
    emitter_events: int


def _events(count: int, tag: str) -> list[Event]:
    # Heartbeat-sized events, built before any clock starts.
    return [
        Event(EventType.HEARTBEAT, "main", {"beat": i, "cycles": i * 3, "equity": 10_000.0 + i / 7}, _START
              + timedelta(seconds=i), event_id=f"{tag}-{i}")
        for i in range(count)
    ]


def journal_rates(events: int, per_event: int, batch_size: int = 1_000) -> JournalRates:
    """Measure, each on a fresh `SqliteStore` with its defaults: ``events`` events told to an
    `EmitterActor` (under a `Supervisor`) whose one sink is `journal_sink`, timed until the
    journal's backlog is empty (its worker writes whatever waits in one transaction); the same
    count through `SqliteStore.append_events` in batches of ``batch_size``; and ``per_event``
    events through `SqliteStore.append_event`, one transaction (one fsync) each."""
    with journal_store() as (store, _):
        journal = journal_sink(store)
        handle = Supervisor.launch([ChildSpec("emitter", lambda ctx: EmitterActor.start(ctx, sinks=[journal]))])
        address = handle.address("emitter")
        messages = [Publish(event) for event in _events(events, "emitter")]
        try:
            started = time.perf_counter()
            for message in messages:
                address.tell(message)
            address.ask(Publish(_events(1, "last")[0]))  # every event has reached the worker
            if not journal.wait_backlog(0, 600.0):
                raise AssertionError(f"the journal still had {journal.backlog} events after 600 s")
            through_emitter = (events + 1) / (time.perf_counter() - started)
        finally:
            handle.stop()
        written = len(store.events())
    with journal_store() as (store, _):
        batch = _events(events, "batch")
        started = time.perf_counter()
        for offset in range(0, events, batch_size):
            store.append_events(batch[offset:offset + batch_size])
        batched = events / (time.perf_counter() - started)
    with journal_store() as (store, _):
        singles = _events(per_event, "single")
        started = time.perf_counter()
        for event in singles:
            store.append_event(event)
        single = per_event / (time.perf_counter() - started)
    return JournalRates(through_emitter, batched, single, batch_size, written)
