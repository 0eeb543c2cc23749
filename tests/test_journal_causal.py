"""The journal's append order is causal for orders: what was published before an order is
journaled before its ORDER_SUBMITTED, and what follows its answer after its outcome, although
the guard writes an order's events to the store itself and the rest come through the emitter's
journal worker. Real emitter, journal sink, guard, paper account and SQLite store."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actor_helpers import WAIT, EventLog, Journal, Recorder, wait_until

from actors import ChildSpec, EmitterActor, GuardActor, Supervisor, journal_sink
from actors.messages import GetJournals, PlaceOrder, Publish
from runtime import Event, EventType, Order, PaperBroker, Settings
from runtime.adapters.sqlite import SqliteStore
from runtime.adapters.system_clock import SystemClock

BEFORE = 3_000  # enough that the journal is still writing them when the order arrives


def test_events_published_before_an_order_are_journaled_before_it_and_those_after_its_answer_after(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    broker = PaperBroker(10_000)
    broker.update_price("X", 100.0)
    seen, journal = EventLog(), Journal()
    specs = [
        ChildSpec("emitter", lambda ctx: EmitterActor.start(ctx, sinks=[journal_sink(store), seen])),
        ChildSpec("alerts", lambda ctx: Recorder.start(ctx, journal), liveness_timeout=None),
        ChildSpec(
            "guard",
            # A generous wait, so that a loaded machine cannot make the journal miss it.
            lambda ctx: GuardActor.start(ctx, guards=Settings().guards(), broker=broker, store=store, journal_catch_up=WAIT),
        ),
    ]
    handle = Supervisor.launch(specs, probe_interval=0.05, child_clock=SystemClock.shared())
    try:
        emitter, guard = handle.address("emitter"), handle.address("guard")
        now = datetime.now(UTC)
        earlier = [Event(EventType.SIGNAL_RECEIVED, "main", {"n": n}, now) for n in range(BEFORE)]
        for event in earlier:
            emitter.tell(Publish(event))
        outcome = guard.ask(PlaceOrder(Order("X", "buy", 1), now), timeout=WAIT)
        assert outcome.executed
        later = Event(EventType.SIGNAL_RECEIVED, "main", {"n": "after"}, datetime.now(UTC))
        emitter.tell(Publish(later))
        assert wait_until(lambda: any(e.event_id == later.event_id for e in store.events()))
        order = [e.event_type for e in store.events()]
        assert order == [EventType.SIGNAL_RECEIVED] * BEFORE + [
            EventType.ORDER_SUBMITTED, EventType.TRADE_EXECUTED, EventType.SIGNAL_RECEIVED,
        ]
        assert [e.event_id for e in store.events()[:BEFORE]] == [e.event_id for e in earlier]
    finally:
        handle.stop()
        store.close()


# What the guard's thread writes to open an order, and to settle it, for a broker outside the process.
OPEN, SETTLE = ["BEGIN", "INSERT", "INSERT", "COMMIT"], ["BEGIN", "INSERT", "DELETE", "COMMIT"]


class Statements:
    """Every SQL statement that writes, run on a real SQLite store's connection, with the thread
    that ran it (in autocommit, a lone INSERT is a commit of its own)."""

    def __init__(self, store: SqliteStore) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []
        store._connection().set_trace_callback(self._trace)

    def _trace(self, statement: str) -> None:
        verb = statement.split()[0].upper()
        if verb != "SELECT":
            with self.lock:
                self.seen.append((threading.current_thread().name, verb))

    def clear(self) -> None:
        with self.lock:
            self.seen.clear()

    def on(self, thread_prefix: str) -> list[str]:
        with self.lock:
            return [statement for thread, statement in self.seen if thread.startswith(thread_prefix)]


class TradeServer(PaperBroker):
    """A paper account standing for a trade server outside the process: it records whether each
    order was already held, journaled, in the store when it arrived."""

    in_process = False

    def __init__(self, store: SqliteStore) -> None:
        super().__init__(10_000)
        self.store = store
        self.held_on_arrival: list[bool] = []

    def submit_order(self, order: Order):
        held = [e.metadata["client_order_id"] for e in self.store.unsettled_orders("main")]
        self.held_on_arrival.append(held == [order.client_id])
        return super().submit_order(order)


def _orders_through_a_guard(
    tmp_path: Path, make_broker, prices: tuple[float, float, float] = (100.0, 100.0, 100.0)
) -> tuple[list[str], list[EventType], Any]:
    # Four orders through a real guard, emitter and journal on SQLite; returns the statements the
    # guard's own thread ran for the last three, the journal's event types in order, and the broker.
    store = SqliteStore(tmp_path / "state.db")
    broker = make_broker(store)
    broker.update_price("X", 100.0)
    journal = journal_sink(store)
    specs = [
        ChildSpec("emitter", lambda ctx: EmitterActor.start(ctx, sinks=[journal])),
        ChildSpec("alerts", lambda ctx: Recorder.start(ctx, Journal()), liveness_timeout=None),
        ChildSpec("guard", lambda ctx: GuardActor.start(ctx, guards=Settings().guards(), broker=broker, store=store)),
    ]
    handle = Supervisor.launch(specs, probe_interval=0.05, child_clock=SystemClock.shared())
    try:
        guard = handle.address("guard")
        # A first order, whose reading starts the guard's trading day (a save), before counting.
        assert guard.ask(PlaceOrder(Order("X", "buy", 1), datetime.now(UTC)), timeout=WAIT).executed
        statements = Statements(store)
        for side, price in zip(("sell", "buy", "sell"), prices, strict=True):
            broker.update_price("X", price)
            assert guard.ask(PlaceOrder(Order("X", side, 1), datetime.now(UTC)), timeout=WAIT).executed
        on_guard = statements.on("GuardActor")
        handle.address("emitter").ask(GetJournals(), timeout=WAIT)
        assert journal.wait_backlog(0, WAIT)
        kinds = [e.event_type for e in store.events()]
        assert store.held_orders("main") == []
    finally:
        handle.stop()
        store.close()
    return on_guard, kinds, broker


def test_an_in_process_paper_account_s_orders_cost_the_guard_no_store_write_and_reach_the_journal_in_order(tmp_path: Path) -> None:
    on_guard, kinds, _ = _orders_through_a_guard(tmp_path, lambda store: PaperBroker(10_000))
    # Nothing it would have to wait for: no journal write, no fsync of its own (the prices did
    # not move, so no guard record changed either).
    assert on_guard == []
    assert kinds == [EventType.ORDER_SUBMITTED, EventType.TRADE_EXECUTED] * 4


def test_a_broker_outside_the_process_gets_each_order_journaled_durably_before_it_and_settled_after(tmp_path: Path) -> None:
    on_guard, kinds, broker = _orders_through_a_guard(tmp_path, TradeServer)
    assert broker.held_on_arrival == [True, True, True, True]
    # Per order, on the guard's own thread: one transaction opening it, one settling it.
    assert on_guard == [*OPEN, *SETTLE] * 3
    assert kinds == [EventType.ORDER_SUBMITTED, EventType.TRADE_EXECUTED] * 4


def test_an_in_process_paper_account_s_guard_saves_its_record_without_an_fsync(tmp_path: Path) -> None:
    # Long before the first and the third order, the price up: each read before them is a new peak.
    on_guard, _, _ = _orders_through_a_guard(tmp_path, lambda store: PaperBroker(10_000), (101.0, 102.0, 103.0))
    assert on_guard == ["PRAGMA", "INSERT", "PRAGMA"] * 2  # synchronous NORMAL, the record, back to FULL


def test_a_broker_outside_the_process_has_the_guard_save_its_record_with_the_store_s_fsync(tmp_path: Path) -> None:
    on_guard, _, _ = _orders_through_a_guard(tmp_path, TradeServer, (101.0, 102.0, 103.0))
    assert on_guard == ["INSERT", *OPEN, *SETTLE, *OPEN, *SETTLE, "INSERT", *OPEN, *SETTLE]
