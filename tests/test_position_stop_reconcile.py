"""A per-position stop's close is an order the broker knows by its client id: found again after a
restart, so a guard killed between journaling it and its outcome reconciles it as executed."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
from actor_helpers import LogLines
from test_guard_actor import tree_factory  # noqa: F401  (a fixture)
from test_limits_position_stop import losing_account

from runtime import BrokerError, EventType, Fill, MemoryStore, Order, PaperBroker, Settings, Side
from runtime.adapters.sqlite import SqliteStore, StoreError
from runtime.alerts import Severity
from runtime.broker import closes_with_client_id
from runtime.events import Event
from runtime.payloads import OrderSubmitted
from runtime.replay.report import FillRow, fills_from_events
from runtime.store import UnreadableOrder

T0 = datetime(2024, 1, 2, tzinfo=UTC)


def test_the_paper_broker_keeps_a_close_under_its_client_id_and_refuses_the_id_twice():
    broker = PaperBroker(10_000)
    broker.update_price("EURUSD", 1.0)
    broker.submit_order(Order("EURUSD", "buy", 1_000))
    broker.update_price("EURUSD", 1.1)
    fill = broker.close_position("1", "stop-1")
    assert fill == Fill("1", "EURUSD", Side.SELL, 1_000.0, 1.1, fill.time, fill.realised_pnl, "stop-1", 0.0)
    assert fill.realised_pnl == pytest.approx(100.0)
    assert broker.find_fill("stop-1") == fill
    broker.submit_order(Order("EURUSD", "buy", 1_000))
    with pytest.raises(BrokerError) as info:
        broker.close_position("2", "stop-1")
    assert str(info.value) == "duplicate client id 'stop-1': that order was already filled"
    assert [p.position_id for p in broker.open_positions()] == ["2"]  # the refused close left it open
    with pytest.raises(ValueError) as bad:
        broker.close_position("2", " ")
    assert str(bad.value) == "client_id must be a non-empty string, got ' '"
    assert broker.close_position("2").client_id is None and broker.open_positions() == []


def test_the_guards_stop_closes_under_the_client_id_it_journaled_naming_the_rule_and_the_position(tree_factory):  # noqa: F811
    broker, inner = losing_account()
    tree = tree_factory(broker, position_stop=Settings(position_stop_percent=3).position_stop())
    tree.read(inner.account_equity())
    [executed] = tree.events.wait_count(EventType.TRADE_EXECUTED, 1)
    [submitted] = tree.events.of(EventType.ORDER_SUBMITTED)
    client_id = submitted.metadata["client_order_id"]
    reason = ("position stop: EURUSD buy 10000 (position 1) unrealised loss 300.00 >= 3% of equity 9,710.00 "
              "(291.30)")
    order = {"signal_id": None, "symbol": "EURUSD", "side": "sell", "volume": 10_000.0, "reason": reason, "client_order_id": client_id}
    assert submitted.metadata == {**order, "rule": "position_stop", "closes": "1"}
    found = inner.find_fill(client_id)
    assert found == Fill("1", "EURUSD", Side.SELL, 10_000.0, 0.97, found.time, found.realised_pnl, client_id, 0.0)
    assert found.realised_pnl == pytest.approx(-300.0)
    assert executed.metadata == {
        **order, "position_id": "1", "price": 0.97, "filled_volume": 10_000.0, "realised_pnl": found.realised_pnl,
        "reconciled": False, "costs": 0.0,
    }
    # One close, one fill in fills.csv: the order's, said to be the position stop's.
    [closed] = tree.events.wait_count(EventType.POSITION_CLOSED, 1)
    assert fills_from_events(tree.events.events) == [
        FillRow(executed.timestamp, "EURUSD", Side.SELL, 10_000.0, 0.97, 0.0, found.realised_pnl, "position_stop", reason),
    ]


def test_a_stop_close_the_journal_lost_is_reconciled_as_executed_and_the_position_as_closed_after_a_restart(tree_factory):  # noqa: F811
    # What a guard killed between journaling its stop's close and the outcome leaves behind: the
    # order in the store, the close done at the broker.
    broker, store = PaperBroker(10_000), MemoryStore()
    broker.update_price("EURUSD", 1.0)
    broker.submit_order(Order("EURUSD", "buy", 10_000))
    broker.update_price("EURUSD", 0.97)
    order = Order("EURUSD", "sell", 10_000)
    reason = "position stop: EURUSD buy 10000 (position 1) unrealised loss 300.00 >= 3% of equity 9,700.00 (291.00)"
    submitted = OrderSubmitted.closing(order, "1", "position_stop", reason).event("main", T0)  # as the guard journals it
    store.open_order(submitted)
    closed = broker.close_position("1", order.client_id)
    tree = tree_factory(broker, store=store)
    [executed] = tree.events.wait_count(EventType.TRADE_EXECUTED, 1)
    fields = {"signal_id": None, "symbol": "EURUSD", "side": "sell", "volume": 10_000.0, "reason": reason}
    assert executed.metadata == {
        **fields, "position_id": "1", "price": 0.97, "filled_volume": 10_000.0, "realised_pnl": closed.realised_pnl,
        "client_order_id": order.client_id, "reconciled": True, "costs": 0.0,
    }
    [position_closed] = tree.events.wait_count(EventType.POSITION_CLOSED, 1)
    assert position_closed.metadata == {
        "position_id": "1", "symbol": "EURUSD", "side": "buy", "volume": 10_000.0, "price": 0.97,
        "realised_pnl": closed.realised_pnl, "reason": reason, "attempt": 0, "rule": "position_stop", "costs": 0.0,
    }
    tree.journal.wait_for(lambda es: any(a.title == "Position stopped" for a in tree.alerts()))
    [alert] = [a for a in tree.alerts() if a.title == "Position stopped"]
    assert (alert.text, alert.severity) == (f"{reason} (closed; found at the broker by reconciliation)", Severity.WARNING)
    assert tree.events.of(EventType.TRADE_FAILED) == [] and store.unsettled_orders("main") == []


def test_an_unreadable_order_in_the_store_is_alerted_and_skipped_and_the_guard_lives_on(tree_factory):  # noqa: F811
    broker, store = PaperBroker(10_000), MemoryStore()
    broker.update_price("X", 100.0)
    bad = {"client_order_id": "c-bad", "signal_id": None, "symbol": "X", "side": "buy", "volume": 1.0, "reason": None}
    store.open_order(Event(EventType.ORDER_SUBMITTED, "main", bad, T0))
    good = Order("X", "buy", 2)
    store.open_order(OrderSubmitted.of(good, None).event("main", T0))
    broker.submit_order(good)
    tree = tree_factory(broker, store=store)
    [executed] = tree.events.wait_count(EventType.TRADE_EXECUTED, 1)
    assert (executed.metadata["client_order_id"], executed.metadata["reconciled"]) == (good.client_id, True)
    tree.journal.wait_for(lambda es: any(a.title == "Order record unreadable" for a in tree.alerts()))
    [alert] = [a for a in tree.alerts() if a.title == "Order record unreadable"]
    assert alert.text == (
        "order 'c-bad' held in the store is unreadable, so not reconciled with the broker: order_submitted metadata is "
        "malformed: reason must be a string, got None (NoneType); check it by hand"
    )
    assert tree.metrics.counters["store_errors_total"] == 1
    assert tree.handle.children()["guard"].incarnation == 1  # never restarted
    assert [o.submitted.metadata["client_order_id"] for o in store.held_orders("main")] == ["c-bad"]


def test_an_order_whose_journaled_text_is_unreadable_hides_no_other_from_reconciliation(tree_factory, tmp_path):  # noqa: F811
    broker, store = PaperBroker(10_000), SqliteStore(tmp_path / "state.db")
    broker.update_price("X", 100.0)
    bad = OrderSubmitted.of(Order("X", "buy", 1, client_id="c-bad"), None).event("main", T0)
    store.open_order(bad)
    good = Order("X", "buy", 2)
    store.open_order(OrderSubmitted.of(good, None).event("main", T0))
    broker.submit_order(good)
    with sqlite3.connect(tmp_path / "state.db") as conn:  # a hand edit gone wrong
        conn.execute("UPDATE events SET event = '{\"loop_id\": \"main\"' WHERE event_id = ?", (bad.event_id,))
    tree = tree_factory(broker, store=store)
    [executed] = tree.events.wait_count(EventType.TRADE_EXECUTED, 1)
    assert (executed.metadata["client_order_id"], executed.metadata["reconciled"]) == (good.client_id, True)
    tree.journal.wait_for(lambda es: any(a.title == "Order record unreadable" for a in tree.alerts()))
    [alert] = [a for a in tree.alerts() if a.title == "Order record unreadable"]
    problem = "not an event's JSON: '{\"loop_id\": \"main\"' (Expecting ',' delimiter: line 1 column 19 (char 18))"
    assert alert.text == f"order 'c-bad' held in the store is unreadable, so not reconciled with the broker: {problem}; check it by hand"
    assert tree.metrics.counters["store_errors_total"] == 1
    assert tree.handle.children()["guard"].incarnation == 1
    assert store.held_orders("main") == [UnreadableOrder("c-bad", problem)]  # left for a person


def test_a_broker_written_against_the_one_argument_close_still_has_its_positions_stopped(tree_factory):  # noqa: F811
    class OldBroker:
        """A user's broker from before close_position took a client id."""

        def __init__(self, inner: PaperBroker) -> None:
            self.inner = inner

        def account_equity(self) -> float:
            return self.inner.account_equity()

        def open_positions(self):
            return self.inner.open_positions()

        def submit_order(self, order):
            return self.inner.submit_order(order)

        def find_fill(self, client_id):
            return self.inner.find_fill(client_id)

        def close_position(self, position_id):
            return self.inner.close_position(position_id)

    assert not closes_with_client_id(OldBroker(PaperBroker(1)))
    assert closes_with_client_id(PaperBroker(1))
    broker, inner = losing_account(OldBroker)
    with LogLines("WARNING") as lines:
        tree = tree_factory(broker, position_stop=Settings(position_stop_percent=3).position_stop())
        tree.read(inner.account_equity())
        [closed] = tree.events.wait_count(EventType.POSITION_CLOSED, 1)
        assert lines.wait_for(lambda seen: any("close_position takes no client_id" in line for line in seen))
    assert (closed.metadata["position_id"], closed.metadata["rule"]) == ("1", "position_stop")
    assert [p.position_id for p in inner.open_positions()] == ["2"]
    assert tree.events.of(EventType.TRADE_FAILED) == []
    assert [line for line in lines.snapshot() if "client_id" in line] == [
        "WARNING the broker's close_position takes no client_id: a position stop's close cannot be found again after "
        "a crash (it would be reconciled as not executed)"
    ]


def test_an_unreadable_order_is_alerted_once_while_reconciliation_passes_over_it_again(tree_factory):  # noqa: F811
    broker, store = PaperBroker(10_000), MemoryStore()
    bad = {"client_order_id": "c-bad", "signal_id": None, "symbol": "X", "side": "buy", "volume": 1.0, "reason": None}
    store.open_order(Event(EventType.ORDER_SUBMITTED, "main", bad, T0))
    pending = Order("X", "buy", 1)  # never reached the broker: looked up again each second until the grace ends
    store.open_order(OrderSubmitted.of(pending, None).event("main", datetime.now(UTC)))
    tree = tree_factory(broker, store=store, settle_grace=1.5)
    [failed] = tree.events.wait_count(EventType.TRADE_FAILED, 1)  # after two or more passes
    assert failed.metadata["client_order_id"] == pending.client_id
    tree.journal.wait_for(lambda es: any(a.title == "Order record unreadable" for a in tree.alerts()))
    assert [a.title for a in tree.alerts() if a.title == "Order record unreadable"] == ["Order record unreadable"]
    assert tree.metrics.counters["store_errors_total"] == 1


def test_a_stop_whose_close_cannot_be_journaled_is_alerted_and_tried_again(tree_factory):  # noqa: F811
    class FullDisk(MemoryStore):
        """A store whose disk refuses the first order record (a full disk, a failing fsync)."""

        refusals = 1

        def open_order(self, submitted, sent_at=None):
            if self.refusals:
                self.refusals -= 1
                raise StoreError("state_db 'x.db': opening order failed: database or disk is full")
            super().open_order(submitted, sent_at)

    class Venue:
        """A paper account behind a venue of its own: not in this process, so every order is
        recorded in the store before it is sent."""

        def __init__(self, inner: PaperBroker) -> None:
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

    broker, inner = losing_account(Venue)
    tree = tree_factory(broker, store=FullDisk(), position_stop=Settings(position_stop_percent=3).position_stop())
    tree.read(inner.account_equity())
    tree.journal.wait_for(lambda es: any(a.title == "Position stop failing" for a in tree.alerts()))
    [alert] = [a for a in tree.alerts() if a.title == "Position stop failing"]
    assert alert.severity is Severity.CRITICAL
    assert alert.text.endswith("its close could not be journaled, so it was not sent: StoreError(\"state_db 'x.db': "
                               "opening order failed: database or disk is full\"); tried again at the next reading")
    assert [p.position_id for p in inner.open_positions()] == ["1", "2"]  # nothing sent unjournaled
    tree.read(inner.account_equity())  # the next reading: journaled and closed this time
    [closed] = tree.events.wait_count(EventType.POSITION_CLOSED, 1)
    assert (closed.metadata["position_id"], closed.metadata["rule"]) == ("1", "position_stop")
