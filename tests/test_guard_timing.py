"""Which time and which equity the guard acts on: wall time for the broker even in a replay, the
account as it is when an order is judged, and blindness across a restart. Real actors, a real
paper account (slowed where a test needs a trade server that is slow to answer)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from actor_helpers import WAIT, FlakyBroker, wait_until
from test_guard_actor import T0, GuardTree, broker_with_positions
from test_reconcile_late import SlowServer

from actors.messages import PlaceOrder
from runtime import EventType, ManualClock, Order, PaperBroker, TradingState


@pytest.fixture
def trees():
    made: list[GuardTree] = []

    def make(*args, **kwargs) -> GuardTree:
        tree = GuardTree(*args, **kwargs)
        made.append(tree)
        return tree

    yield make
    for tree in made:
        tree.stop()


def _stuck_order(tree: GuardTree, broker: SlowServer) -> Order:
    """Place an order whose broker call hangs, then replace the guard stuck in it."""
    order = Order("X", "buy", 2)

    def place() -> None:
        try:
            tree.guard.ask(PlaceOrder(order, T0), timeout=3 * WAIT)
        except Exception:
            pass

    threading.Thread(target=place, daemon=True).start()
    assert broker.submitting.wait(WAIT)
    tree.handle.restart("guard", "operator: guard stuck in a broker call", graceful=False)
    assert wait_until(lambda: tree.handle.children()["guard"].incarnation >= 2)
    return order


# --- N2: liquidation retries back off in wall time ----------------------------------------------


def test_in_a_replay_a_failing_liquidation_is_retried_without_waiting_for_data_time(trees):
    broker = FlakyBroker(broker_with_positions("A"), close_failures=3)
    clock = ManualClock(T0)  # a replay between two bars: data time stands still
    tree = trees(broker, clock=clock)
    tree.read(10_000, 12_000, 9_000)
    assert wait_until(lambda: broker.inner.open_positions() == [])
    assert broker.close_calls == 4 and clock.now() == T0
    [closed] = tree.events.wait_count(EventType.POSITION_CLOSED, 1)
    assert (closed.metadata["symbol"], closed.metadata["attempt"]) == ("A", 3)


# --- N5: the reconciliation's grace runs in wall time -------------------------------------------


def test_in_a_replay_an_order_stuck_in_flight_is_settled_after_the_grace_in_wall_time(trees):
    broker = SlowServer()
    broker.update_price("X", 100.0)
    tree = trees(broker, clock=ManualClock(T0), guard_liveness=0.3, settle_grace=0.3)
    before = datetime.now(UTC)
    order = _stuck_order(tree, broker)
    [failed] = tree.events.wait_count(EventType.TRADE_FAILED, 1)  # data time never moved
    assert failed.metadata["client_order_id"] == order.client_id and failed.metadata["reconciled"] is True
    [held] = tree.store.held_orders("main")
    assert before <= held.sent_at <= datetime.now(UTC)  # sent at wall time, not the replay's
    assert held.submitted.timestamp == T0
    broker.release.set()


def test_in_a_replay_a_jump_of_data_time_does_not_age_an_order_in_flight(trees):
    broker = SlowServer()
    broker.update_price("X", 100.0)
    clock = ManualClock(T0)
    tree = trees(broker, clock=clock, guard_liveness=0.3, settle_grace=5.0)
    order = _stuck_order(tree, broker)
    clock.advance(timedelta(hours=6).total_seconds())  # the replay moves on by six bars
    broker.release.set()  # the call ends well within five seconds of wall time
    [executed] = tree.events.wait_count(EventType.TRADE_EXECUTED, 1)
    assert executed.metadata["client_order_id"] == order.client_id and executed.metadata["reconciled"] is True
    assert tree.events.of(EventType.TRADE_FAILED) == [] and tree.store.held_orders("main") == []


# --- N4: an order is judged on the account as it is -----------------------------------------


def test_an_order_is_judged_on_the_account_read_before_it_not_on_the_last_cycle(trees):
    broker = PaperBroker(10_000)
    broker.update_price("X", 100.0)
    tree = trees(broker)
    assert tree.place("X", "buy", 50).executed
    broker.update_price("X", 50.0)  # equity 7,500: a 25% drawdown no reading has reported
    order = Order("X", "buy", 1)
    outcome = tree.guard.ask(PlaceOrder(order, T0), timeout=WAIT)
    assert (outcome.fill, outcome.refusal, outcome.trading_state) == (None, "trading halted", TradingState.HALTED)
    assert broker.find_fill(order.client_id) is None and broker.open_positions() == []
    assert tree.status().state.reason == "max drawdown 25.00% >= limit 20.00% (peak 10000.00, equity 7500.00)"


# --- N3: blindness survives a restart -------------------------------------------------------


def test_a_guard_restarted_while_blind_says_equity_restored_when_readings_return(trees):
    tree = trees(PaperBroker(10_000), equity_stale_after=0.3)
    [unavailable] = tree.events.wait_count(EventType.EQUITY_UNAVAILABLE, 1)
    assert unavailable.metadata["action"] == "reducing"
    tree.handle.restart("guard", "operator: restart", graceful=True)
    assert wait_until(lambda: tree.handle.children()["guard"].incarnation >= 2)
    assert tree.status().state.trading_state is TradingState.REDUCING
    tree.read(10_000)
    [restored] = tree.events.wait_count(EventType.EQUITY_RESTORED, 1)
    assert restored.metadata == {"equity": 10_000.0}
    assert tree.status().state.trading_state is TradingState.ACTIVE
    assert len(tree.events.of(EventType.EQUITY_UNAVAILABLE)) == 1  # still the one outage
