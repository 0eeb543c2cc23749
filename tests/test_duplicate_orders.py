"""An order goes to a broker outside the process at most once, whichever guard incarnation or
process is asked to place it again.

A host that lost the guard's answer (the guard died between sending and answering) retries the
same `Order`, client id included. A venue that keeps the id only as a note (MT5: a deal comment)
would trade it twice; the guard must refuse it from the journal, not only from its own memory.
Real systems, real SQLite files, a real paper account standing in for the remote venue.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import attrs
from actor_helpers import WAIT, EventLog

from actors import start_trading_system
from actors.messages import Crash, PlaceOrder
from runtime import EventType, ListSignalSource, MemoryMetrics, Order, PaperBroker, Settings
from runtime.broker import Fill, new_client_id


class RemoteVenue(PaperBroker):
    """A paper account standing in for a venue outside the process (it outlives a guard's crash)
    that fills an order sent twice twice, as MT5 does; ``sent`` lists the client id of every
    order it was sent."""

    in_process = False

    def __init__(self) -> None:
        super().__init__(10_000)
        self.update_price("X", 100.0)
        self.sent: list[str] = []

    def submit_order(self, order: Order) -> Fill:
        self.sent.append(order.client_id)
        fill = super().submit_order(attrs.evolve(order, client_id=new_client_id()))  # no check of the id
        return attrs.evolve(fill, client_id=order.client_id)


def _system(path: Path, venue: RemoteVenue, events: EventLog, metrics: MemoryMetrics | None = None):
    return start_trading_system(
        Settings(state_db=str(path), heartbeat_interval_seconds=3600), venue, ListSignalSource(),
        metrics=metrics, loop_interval=None, subscribers=[events], drills=True,
    )


def test_an_order_placed_again_after_a_guard_crash_or_in_another_process_is_refused_and_sent_once(tmp_path: Path) -> None:
    venue, events = RemoteVenue(), EventLog()
    order = Order("X", "buy", 10)
    system = _system(tmp_path / "state.db", venue, events)
    try:
        assert system.guard.ask(PlaceOrder(order, datetime.now(UTC)), timeout=WAIT).executed
        system.guard.tell(Crash("drill: the guard dies before its answer reaches the host"))
        again = system.guard.ask(PlaceOrder(order, datetime.now(UTC)), timeout=WAIT)  # the host's retry
        assert system.children()["guard"].incarnation == 2
    finally:
        system.stop()
    duplicate = f"duplicate client id {order.client_id!r}: that order was already placed"
    assert (again.executed, again.refusal, again.error) == (False, duplicate, None)
    later_events = EventLog()
    system = _system(tmp_path / "state.db", venue, later_events)  # a new process on the same file
    try:
        later = system.guard.ask(PlaceOrder(order, datetime.now(UTC)), timeout=WAIT)
    finally:
        system.stop()
    assert (later.executed, later.refusal, later.error) == (False, duplicate, None)
    assert venue.sent == [order.client_id]
    assert [(p.symbol, p.side.value, p.volume) for p in venue.open_positions()] == [("X", "buy", 10)]
    refused = {
        "signal_id": None, "symbol": "X", "side": "buy", "volume": 10, "reason": "", "rejected": True,
        "error": duplicate, "client_order_id": order.client_id, "reconciled": False, "refused_by": "duplicate",
    }
    for log in (events, later_events):
        assert [e.metadata for e in log.wait_count(EventType.TRADE_FAILED, 1)] == [refused]
    assert [e.metadata["client_order_id"] for e in events.wait_count(EventType.ORDER_SUBMITTED, 1)] == [order.client_id]
    assert later_events.of(EventType.ORDER_SUBMITTED) == []


def test_an_order_the_journal_cannot_be_asked_about_is_refused_not_sent(tmp_path: Path) -> None:
    venue, events, metrics = RemoteVenue(), EventLog(), MemoryMetrics()
    system = _system(tmp_path / "state.db", venue, events, metrics)
    try:
        system.store.close()  # the state file is gone from under the guard
        order = Order("X", "buy", 10)
        outcome = system.guard.ask(PlaceOrder(order, datetime.now(UTC)), timeout=WAIT)
        # The lookup, and the guard's record saved with the account read after every answer.
        assert metrics.counters.get("store_errors_total") == 2
    finally:
        system.stop()
    assert (outcome.executed, outcome.error) == (False, None)
    assert outcome.refusal == (
        f"client id {order.client_id!r} could not be looked up in the journal, so the order was not sent "
        f"(it may have been placed already): StoreError(\"state_db {str(tmp_path / 'state.db')!r} is closed\")"
    )
    assert venue.sent == [] and venue.open_positions() == []
