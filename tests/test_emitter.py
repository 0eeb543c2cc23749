"""The emitter's fan-out: every sink and subscriber gets every event; a failing or slow one
neither blocks nor breaks the others; events are counted per type."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pykka
import pytest
from actor_helpers import WAIT, EventLog, Journal, LogLines

from actors import ChildSpec, EmitterActor, Supervisor
from actors.emitter import journal_sink
from actors.messages import GetJournals, Publish, Subscribe, Unsubscribe
from actors.replay_messages import PublishBatch
from runtime import Event, EventType, MemoryMetrics, MemoryStore
from runtime.adapters.sqlite import SqliteStore, StoreError
from runtime.backoff import Backoff


def emitter(sinks=(), subscribers=None, metrics=None):
    from actors.emitter import Subscribers

    subs = Subscribers(subscribers or [])
    handle = Supervisor.launch(
        [ChildSpec("emitter", lambda ctx: EmitterActor.start(ctx, sinks=sinks, subscribers=subs, metrics=metrics))]
    )
    return handle, handle.address("emitter")


def event(kind=EventType.TRADE_EXECUTED, n=0) -> Event:
    return Event(kind, "main", {"n": n})


def test_every_sink_and_subscriber_gets_every_event_in_order():
    first, second, subscriber = EventLog(), EventLog(), EventLog()
    handle, address = emitter([first, second], [subscriber])
    sent = [event(n=i) for i in range(20)]
    for e in sent:
        address.tell(Publish(e))
    for log in (first, second, subscriber):
        assert log.wait_count(EventType.TRADE_EXECUTED, 20) == sent
    handle.stop()


def test_a_failing_sink_is_counted_and_the_others_still_get_every_event():
    def broken(_: Event) -> None:
        raise OSError("disk full")

    good, metrics = EventLog(), MemoryMetrics()
    handle, address = emitter([broken, good], metrics=metrics)
    for i in range(5):
        address.tell(Publish(event(n=i)))
    good.wait_count(EventType.TRADE_EXECUTED, 5)
    handle.stop()  # the workers finish what they were given before the emitter stops
    assert metrics.counters["sink_errors_total"] == 5


def test_a_slow_sink_does_not_hold_up_the_others():
    gate = threading.Event()

    def stuck(_: Event) -> None:
        gate.wait(WAIT)

    fast = EventLog()
    handle, address = emitter([stuck, fast])
    for i in range(10):
        address.tell(Publish(event(n=i)))
    fast.wait_count(EventType.TRADE_EXECUTED, 10, timeout=2.0)
    assert not gate.is_set()
    gate.set()
    handle.stop()


def test_a_host_systems_pykka_actor_can_subscribe_and_unsubscribe():
    received = EventLog()

    class HostActor(pykka.ThreadingActor):
        def on_receive(self, message):
            received(message)

    host = HostActor.start()
    handle, address = emitter()
    address.tell(Subscribe(host))
    address.tell(Publish(event(EventType.HEARTBEAT)))
    received.wait_count(EventType.HEARTBEAT, 1)
    address.tell(Unsubscribe(host))
    address.tell(Publish(event(EventType.HEARTBEAT)))
    address.ask(Publish(event(EventType.LOOP_STARTED)))
    assert len(received.of(EventType.HEARTBEAT)) == 1
    host.stop()
    handle.stop()


def test_a_subscriber_that_has_died_does_not_stop_the_fan_out():
    class Gone(pykka.ThreadingActor):
        pass

    gone = Gone.start()
    gone.stop()
    log = EventLog()
    handle, address = emitter([log], [gone])
    address.tell(Publish(event()))
    log.wait_count(EventType.TRADE_EXECUTED, 1)
    handle.stop()


def test_events_are_counted_per_type_as_analytics_events_total():
    metrics, log = MemoryMetrics(), EventLog()
    handle, address = emitter([log], metrics=metrics)
    for kind in (EventType.TRADE_EXECUTED, EventType.TRADE_EXECUTED, EventType.HEARTBEAT):
        address.tell(Publish(event(kind)))
    log.wait_for(lambda es: len(es) == 3)
    assert metrics.counters["analytics_events_total.trade_executed"] == 2
    assert metrics.counters["analytics_events_total.heartbeat"] == 1
    handle.stop()


def test_the_journal_sink_keeps_each_event_once():
    store = MemoryStore()
    handle, address = emitter([journal_sink(store)])
    e = event()
    address.tell(Publish(e))
    address.tell(Publish(e))
    handle.stop()
    assert store.events() == [e]


class SlowDisk:
    """A real SQLite store behind a disk that holds each batch until the test lets it through,
    recording the size of every batch it is asked to write."""

    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path)
        self.batches: list[int] = []
        self.writing = threading.Event()
        self.release = threading.Event()

    def append_events(self, events: Sequence[Event]) -> int:
        self.batches.append(len(events))
        self.writing.set()
        self.release.wait(WAIT)
        return self.store.append_events(events)

    def __getattr__(self, name: str):
        return getattr(self.store, name)


def test_the_journal_writes_every_event_waiting_as_one_batch(tmp_path):
    disk = SlowDisk(tmp_path / "state.db")
    journal = journal_sink(disk)  # type: ignore[arg-type]
    handle, address = emitter([journal])
    sent = [event(n=i) for i in range(300)]
    address.tell(Publish(sent[0]))
    assert disk.writing.wait(WAIT)
    for e in sent[1:]:
        address.tell(Publish(e))
    assert address.ask(GetJournals()) == (journal,)  # answered once all 300 were handed over
    assert journal.backlog == 300
    disk.release.set()
    assert journal.wait_backlog(0, WAIT)
    handle.stop()
    assert disk.batches == [1, 299]
    assert disk.store.events() == sent
    disk.store.close()


class CountedCommits(MemoryStore):
    """A memory store recording the size of every batch it is asked to journal."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.first = threading.Event()

    def append_events(self, events: Sequence[Event]) -> int:
        self.batches.append(len(events))
        self.first.set()
        return super().append_events(events)


def first_committed(store: CountedCommits) -> tuple[Any, Any, Any]:
    """An emitter journaling to ``store`` with a second's gathering, once its first event's
    commit has begun (so the next one waits for the gathering): the journal, handle, address."""
    journal = journal_sink(store, gather=1.0)
    handle, address = emitter([journal])
    address.tell(Publish(event(n=0)))
    address.ask(GetJournals())  # (handed to the journal's worker: a wait now waits for it)
    assert store.first.wait(WAIT) and journal.wait_caught_up(WAIT)
    return journal, handle, address


def stream(address, numbers) -> None:
    """Tell events numbered ``numbers`` 10 ms apart (the stream's own pace), then wait until the
    emitter has handed every one to its journal's worker."""
    pace = threading.Event()  # (never set)
    for n in numbers:
        pace.wait(0.01)
        address.tell(Publish(event(n=n)))
    address.ask(GetJournals())


def test_the_journal_lets_events_gather_after_a_commit_begins_so_a_stream_takes_few_commits():
    # 20 events 10 ms apart: without the gathering each would be a commit of its own.
    store = CountedCommits()
    journal, handle, address = first_committed(store)
    stream(address, range(1, 20))
    handle.stop()
    assert [e.metadata["n"] for e in store.events()] == list(range(20))
    assert store.batches[0] == 1 and len(store.batches) <= 3, store.batches


def test_the_journal_gathers_again_once_a_wait_on_it_ends_and_under_the_next_emitter():
    store = CountedCommits()
    journal, handle, address = first_committed(store)  # (a wait: the commit began at once)
    stream(address, range(1, 20))
    assert journal.wait_caught_up(WAIT)
    handle.stop()  # an emitter that stops writes what is left at once
    assert len(store.batches) <= 4, store.batches
    store.batches.clear()
    handle, address = emitter([journal])  # the journal outlives its emitter, as across a restart
    stream(address, range(20, 40))  # (with no wait on the journal first)
    handle.stop()
    assert [e.metadata["n"] for e in store.events()] == list(range(40))
    assert len(store.batches) <= 3, store.batches


class SlowSecondCommit(CountedCommits):
    """Its second commit waits until the test lets it through (a slow disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_second = threading.Event()
        self.release = threading.Event()

    def append_events(self, events: Sequence[Event]) -> int:
        if len(self.batches) == 1:
            self.in_second.set()
            self.release.wait(WAIT)
        return super().append_events(events)


def test_a_wait_that_ends_while_the_emitter_stops_does_not_hold_its_last_commit_back():
    store = SlowSecondCommit()
    journal, handle, address = first_committed(store)
    address.tell(Publish(event(n=1)))
    address.ask(GetJournals())
    waited: list[bool] = []
    waiter = threading.Thread(target=lambda: waited.append(journal.wait_caught_up(0.3)))
    waiter.start()  # has the second commit begin, and gives up on it on the slow disk
    assert store.in_second.wait(WAIT)
    address.tell(Publish(event(n=2)))
    address.ask(GetJournals())
    stopper = threading.Thread(target=handle.stop)
    stopper.start()
    waiter.join(WAIT)
    assert waited == [False]
    released = time.monotonic()
    store.release.set()
    stopper.join(WAIT)
    assert not stopper.is_alive() and time.monotonic() - released < 0.5
    assert [e.metadata["n"] for e in store.events()] == [0, 1, 2]


def test_a_wait_on_the_journal_is_answered_without_waiting_for_the_gathering_to_end():
    # The gathering would hold the second commit back a second: a waiter has it begin at once
    # (half a second is the most a wait may take here).
    store = CountedCommits()
    journal, handle, address = first_committed(store)
    address.tell(Publish(event(n=1)))
    address.ask(GetJournals())
    assert journal.wait_caught_up(0.5)
    assert [e.metadata["n"] for e in store.events()] == [0, 1]
    address.tell(Publish(event(n=2)))
    address.ask(GetJournals())
    assert journal.wait_backlog(0, 0.5)
    handle.stop()
    assert [e.metadata["n"] for e in store.events()] == [0, 1, 2]


def test_a_stopping_emitter_writes_what_its_journal_holds_without_waiting_for_the_gathering():
    store = CountedCommits()
    journal, handle, address = first_committed(store)
    for n in range(1, 50):
        address.tell(Publish(event(n=n)))
    address.ask(GetJournals())
    started = time.monotonic()
    handle.stop()
    assert time.monotonic() - started < 0.5
    assert [e.metadata["n"] for e in store.events()] == list(range(50))
    assert (journal.backlog, journal.unjournaled) == (0, 0)


@pytest.mark.parametrize("gather", [-0.001, 1.5, float("nan"), True, "0.002"])
def test_a_gathering_time_outside_zero_to_one_second_is_refused_by_name(gather):
    with pytest.raises(ValueError) as refused:
        journal_sink(MemoryStore(), gather=gather)
    assert str(refused.value) == f"gather must be a number of seconds in 0..1, got {gather!r}"


def test_stopping_the_emitter_journals_every_event_it_was_given(tmp_path):
    store = SqliteStore(tmp_path / "state.db")
    journal = journal_sink(store)
    handle, address = emitter([journal])
    sent = [event(EventType.HEARTBEAT, n=i) for i in range(20_000)]
    for e in sent:
        address.tell(Publish(e))
    handle.stop()
    assert journal.wait_backlog(0, WAIT)
    assert (len(store.events()), journal.unjournaled) == (20_000, 0)
    store.close()


def test_a_journal_whose_store_fails_counts_every_event_it_could_not_write(tmp_path):
    store = SqliteStore(tmp_path / "state.db")
    store.close()  # every write now raises StoreError
    journal, metrics = journal_sink(store), MemoryMetrics()
    handle, address = emitter([journal], metrics=metrics)
    for i in range(10):
        address.tell(Publish(event(n=i)))
    handle.stop()
    assert journal.wait_backlog(0, WAIT)
    assert journal.unjournaled == 10
    assert 1 <= metrics.counters["sink_errors_total"] <= 10  # once per failed batch


class FullDisk:
    """A real SQLite store behind a disk that refuses every write while ``full`` (as SQLite says
    of a full disk), counting the refusals and the writes that went through."""

    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path)
        self.full = True
        self.attempts = Journal()  # "refused" or "written", one per write asked for

    def append_events(self, events: Sequence[Event]) -> int:
        if self.full:
            self.attempts.add("refused")
            raise StoreError(f"state_db {str(self.store.path)!r}: appending {len(events)} events failed: database or disk is full")
        written = self.store.append_events(events)
        self.attempts.add("written")
        return written

    def __getattr__(self, name: str):
        return getattr(self.store, name)


def refused(disk: FullDisk, times: int) -> None:
    disk.attempts.wait_for(lambda seen: seen.count("refused") >= times)


def refused_again(disk: FullDisk) -> None:
    """Wait for the next refused try (events handed over before it are in it)."""
    refused(disk, disk.attempts.snapshot().count("refused") + 1)


def test_a_journal_holds_what_a_full_disk_refuses_and_writes_it_all_in_order_once_there_is_room(tmp_path):
    disk, metrics = FullDisk(tmp_path / "state.db"), MemoryMetrics()
    journal = journal_sink(disk)  # type: ignore[arg-type]
    handle, address = emitter([journal], metrics=metrics)
    sent = [event(n=i) for i in range(10)]
    with LogLines() as lines:
        for e in sent[:5]:
            address.tell(Publish(e))
        refused(disk, 1)
        for e in sent[5:]:
            address.tell(Publish(e))
        address.ask(GetJournals())
        refused_again(disk)  # the next try holds the newer five behind the first
        assert (journal.held, journal.backlog, journal.unjournaled) == (10, 10, 0)
        asked = time.monotonic()
        assert journal.wait_caught_up(WAIT) is False  # answered at once: no wait would help an order
        assert time.monotonic() - asked < WAIT
        disk.full = False
        disk.attempts.wait_for(lambda seen: "written" in seen)
        assert journal.wait_caught_up(WAIT)
        handle.stop()
    assert disk.store.events() == sent
    assert (journal.held, journal.backlog, journal.unjournaled) == (0, 0, 0)
    assert metrics.counters["sink_errors_total"] == disk.attempts.snapshot().count("refused")
    (first, *_), recovered = [line for line in lines.snapshot() if line.startswith("ERROR")], lines.snapshot()[-1]
    assert first.startswith(
        "ERROR journal journal_sink(FullDisk) refused 5 events: StoreError(\"state_db "
    ) and "database or disk is full\"); holding them, to try again in 0." in first
    assert len([line for line in lines.snapshot() if line.startswith("ERROR")]) == 1  # said once, then counted
    refusals = disk.attempts.snapshot().count("refused")
    assert recovered == f"WARNING journal journal_sink(FullDisk): writing again after {refusals} refused attempts; 10 events journaled"
    disk.store.close()


def test_a_journal_holding_too_many_refused_events_drops_the_oldest_heartbeats_first(tmp_path, monkeypatch):
    monkeypatch.setattr("actors.emitter.MAX_HELD", 4)
    disk = FullDisk(tmp_path / "state.db")
    journal = journal_sink(disk)  # type: ignore[arg-type]
    handle, address = emitter([journal])
    beats = [event(EventType.HEARTBEAT, n=i) for i in range(4)]
    trades = [event(n=i) for i in range(2)]
    with LogLines() as lines:
        address.tell(Publish(beats[0]))
        address.tell(Publish(trades[0]))
        address.tell(Publish(beats[1]))
        address.ask(GetJournals())
        refused(disk, 1)
        for e in (beats[2], trades[1], beats[3]):
            address.tell(Publish(e))
        address.ask(GetJournals())
        refused_again(disk)  # six held, two too many: the two oldest heartbeats go
        assert (journal.held, journal.unjournaled) == (4, 2)
        disk.full = False
        disk.attempts.wait_for(lambda seen: "written" in seen)
        handle.stop()
    assert disk.store.events() == [trades[0], beats[2], trades[1], beats[3]]
    assert (journal.backlog, journal.unjournaled) == (0, 2)
    assert "ERROR journal journal_sink(FullDisk): 2 refused events dropped to hold at most 4" in lines.snapshot()
    disk.store.close()


def test_a_journal_holding_refused_events_tries_again_early_rather_than_queue_past_its_bound(tmp_path, monkeypatch):
    # A minute's backoff, so only the queue's size can bring the next try before the stop.
    monkeypatch.setattr("actors.emitter.MAX_HELD", 4)
    monkeypatch.setattr("actors.emitter.RETRY", Backoff(60.0, 60.0))
    disk = FullDisk(tmp_path / "state.db")
    journal = journal_sink(disk)  # type: ignore[arg-type]
    handle, address = emitter([journal])
    trade, beats = event(n=0), [event(EventType.HEARTBEAT, n=i) for i in range(4)]
    address.tell(Publish(trade))
    refused(disk, 1)
    address.tell(PublishBatch(tuple(beats)))
    refused(disk, 2)  # four waiting: tried at once, and held trimmed to four again (the oldest heartbeat went)
    assert (journal.held, journal.unjournaled) == (4, 1)
    disk.full = False
    handle.stop()  # the last try writes them
    assert disk.store.events() == [trade, *beats[1:]]
    disk.store.close()


class PickyDisk(FullDisk):
    """A full disk that, once it has room, refuses any batch holding an event marked bad (as a
    store refuses an event it cannot write)."""

    def append_events(self, events: Sequence[Event]) -> int:
        if not self.full and any(e.metadata.get("bad") for e in events):
            self.attempts.add("bad")
            raise ValueError("event metadata cannot be written")
        return super().append_events(events)


def test_a_bad_event_after_an_outage_is_dropped_alone_and_the_events_held_through_it_are_written(tmp_path):
    # The whole held backlog (state changes, fills) used to go with the one bad event.
    disk = PickyDisk(tmp_path / "state.db")
    journal = journal_sink(disk)  # type: ignore[arg-type]
    handle, address = emitter([journal])
    good = [event(n=i) for i in range(5)]
    for e in good:
        address.tell(Publish(e))
    address.ask(GetJournals())
    refused(disk, 1)
    disk.full = False
    address.tell(Publish(Event(EventType.TRADE_EXECUTED, "main", {"bad": True})))
    disk.attempts.wait_for(lambda seen: "written" in seen)
    handle.stop()
    assert disk.store.events() == good
    assert (journal.held, journal.backlog, journal.unjournaled) == (0, 0, 1)
    disk.store.close()


def test_a_bad_event_held_through_an_outage_is_dropped_alone_once_the_store_is_back(tmp_path):
    # A store that finds a bad event only after the held ones (PostgreSQL encodes inside its
    # transaction) made every write fail for good, each new good event dropped (a review).
    disk = PickyDisk(tmp_path / "state.db")
    journal = journal_sink(disk)  # type: ignore[arg-type]
    handle, address = emitter([journal])
    first, bad, last = event(n=1), Event(EventType.TRADE_EXECUTED, "main", {"bad": True}), event(n=2)
    address.tell(PublishBatch((first, bad, last)))
    address.ask(GetJournals())
    refused(disk, 1)  # all three held
    disk.full = False
    disk.attempts.wait_for(lambda seen: seen.count("written") >= 2)
    after = event(n=3)
    address.tell(Publish(after))
    handle.stop()
    assert disk.store.events() == [first, last, after]
    assert (journal.held, journal.backlog, journal.unjournaled) == (0, 0, 1)
    disk.store.close()


def test_events_still_refused_when_the_emitter_stops_are_counted_as_not_journaled(tmp_path):
    disk = FullDisk(tmp_path / "state.db")
    journal = journal_sink(disk)  # type: ignore[arg-type]
    handle, address = emitter([journal])
    for i in range(3):
        address.tell(Publish(event(n=i)))
    refused(disk, 1)
    handle.stop()  # a last try, at once, not after the backoff
    assert disk.attempts.snapshot().count("refused") >= 2
    assert (journal.held, journal.backlog, journal.unjournaled) == (0, 0, 3)
    disk.store.close()


def test_deliver_to_subscribers_reaches_every_one_past_a_failing_one_and_counts_the_failures():
    from loguru import logger as log

    from actors.emitter import deliver_to_subscribers
    from runtime.events import Event, EventType

    got: list = []

    def broken(event):
        raise RuntimeError("subscriber gone")

    event = Event(EventType.HEARTBEAT, "main", {})
    assert deliver_to_subscribers([broken, got.append], event, log) == 1
    assert got == [event]


def test_a_batch_of_events_reaches_every_sink_and_subscriber_in_order_and_is_counted_per_type():
    from actors.replay_messages import PublishBatch

    sink, subscriber, metrics = EventLog(), EventLog(), MemoryMetrics()
    handle, address = emitter([sink], [subscriber], metrics=metrics)
    first = event(EventType.SIGNAL_RECEIVED, n=-1)
    kinds = [EventType.HEARTBEAT] * 3 + [EventType.TRADE_EXECUTED] + [EventType.HEARTBEAT] * 2 + [EventType.SIGNAL_RECEIVED]
    batch = tuple(event(kind, n=i) for i, kind in enumerate(kinds))  # a type's events in more than one run
    address.tell(Publish(first))
    address.tell(PublishBatch(batch))
    for log in (sink, subscriber):
        assert log.wait_for(lambda es: len(es) == 8) == [first, *batch]
    handle.stop()
    assert {k: v for k, v in metrics.counters.items() if k.startswith("analytics_events_total")} == {
        "analytics_events_total.signal_received": 2,
        "analytics_events_total.heartbeat": 5,
        "analytics_events_total.trade_executed": 1,
    }


def test_a_batch_of_events_is_handed_to_a_busy_journal_at_once_and_written_as_one(tmp_path):
    from actors.replay_messages import PublishBatch

    disk = SlowDisk(tmp_path / "state.db")
    journal = journal_sink(disk)  # type: ignore[arg-type]
    handle, address = emitter([journal])
    sent = [event(n=i) for i in range(301)]
    address.tell(Publish(sent[0]))
    assert disk.writing.wait(WAIT)
    address.tell(PublishBatch(tuple(sent[1:])))
    assert address.ask(GetJournals()) == (journal,)
    assert journal.backlog == 301  # counted in full the moment the batch was handed over
    disk.release.set()
    assert journal.wait_backlog(0, WAIT)
    handle.stop()
    assert disk.batches == [1, 300]
    assert disk.store.events() == sent
    disk.store.close()
