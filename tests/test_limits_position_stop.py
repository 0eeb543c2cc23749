"""The per-position stop: the pure rule, and the guard closing a losing position on its own,
journaled like any order, without halting the account."""

from __future__ import annotations

import pytest
from actor_helpers import FlakyBroker
from hypothesis import HealthCheck, given, settings
from test_guard_actor import GuardTree

from runtime import EventType, Order, PaperBroker, Position, Settings, TradingState
from runtime.risk.position_stop import PositionStop
from runtime.testing import equities, position_stops, priced_positions


def held(pnl: float, *, volume: float = 10_000, entry: float = 1.0, side: str = "buy") -> Position:
    return Position("7", "EURUSD", side, volume, entry, pnl)


# --- the rule -------------------------------------------------------------------------------------


def test_a_loss_reaching_the_percentage_of_equity_fires_with_the_numbers():
    stop = PositionStop(2.0)
    assert stop.check(held(-199.99), 10_000.0) is None
    assert stop.check(held(-200.0), 10_000.0) == (
        "position stop: EURUSD buy 10000 (position 7) unrealised loss 200.00 >= 2% of equity 10,000.00 (200.00)"
    )


def test_on_the_entry_basis_the_loss_is_measured_against_the_positions_entry_value():
    stop = PositionStop(5.0, "entry", contract_size=100_000)
    position = held(-600.0, volume=0.1, entry=1.2, side="sell")  # entry value 12,000.00
    assert stop.check(position, 1e9) == (
        "position stop: EURUSD sell 0.1 (position 7) unrealised loss 600.00 >= 5% of entry value 12,000.00 (600.00)"
    )
    assert stop.check(held(-599.0, volume=0.1, entry=1.2), None) is None  # the equity plays no part


def test_a_gain_a_flat_position_and_an_unknown_or_spent_equity_never_fire():
    stop = PositionStop(1.0)
    assert [stop.check(held(pnl), equity) for pnl, equity in [(500.0, 10.0), (0.0, 10.0), (-500.0, None), (-500.0, 0.0)]] == [
        None, None, None, None,
    ]


def test_fired_lists_each_position_the_stop_fires_for_in_order():
    stop = PositionStop(1.0)
    a, b, c = held(-150.0), Position("8", "GBPUSD", "sell", 1, 1.3, 20.0), Position("9", "USDJPY", "buy", 1, 150, -100.0)
    assert [(p.position_id, reason.split(" unrealised")[0]) for p, reason in stop.fired([a, b, c], 10_000.0)] == [
        ("7", "position stop: EURUSD buy 10000 (position 7)"),
        ("9", "position stop: USDJPY buy 1 (position 9)"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"percent": 0}, ValueError, "percent must be a percentage in (0, 100], got 0"),
        ({"percent": 101}, ValueError, "percent must be a percentage in (0, 100], got 101"),
        ({"percent": float("nan")}, ValueError, "percent must be a finite real number, got nan"),
        ({"percent": 2, "basis": "margin"}, ValueError, "basis must be 'equity' or 'entry', got 'margin'"),
        ({"percent": 2, "contract_size": 0}, ValueError, "contract_size must be > 0, got 0"),
    ],
)
def test_a_bad_stop_is_refused_naming_the_field_and_value(kwargs, error, message):
    with pytest.raises(error) as info:
        PositionStop(**kwargs)
    assert str(info.value) == message


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(position_stops(), priced_positions(), equities(1.0, 1e7))
def test_the_stop_fires_exactly_for_the_positions_whose_loss_reaches_its_share(stop, positions, equity):
    fired = {p.position_id for p, _ in stop.fired(positions, equity)}
    for p in positions:
        base = equity if stop.basis == "equity" else p.volume * p.entry_price * stop.contract_size
        loss, limit = -p.unrealised_pnl, base * stop.percent / 100.0
        if loss > 0 and loss >= limit * (1 + 1e-9):
            assert p.position_id in fired
        if loss <= 0 or loss < limit * (1 - 1e-9):
            assert p.position_id not in fired


# --- the guard ------------------------------------------------------------------------------------


def losing_account(broker_factory=lambda inner: inner):
    inner = PaperBroker(10_000)
    for symbol in ("EURUSD", "GBPUSD"):
        inner.update_price(symbol, 1.0)
    inner.submit_order(Order("EURUSD", "buy", 10_000))
    inner.submit_order(Order("GBPUSD", "sell", 1_000))
    inner.update_price("EURUSD", 0.97)  # a loss of 300.00, 3.09% of the equity left
    inner.update_price("GBPUSD", 0.99)  # a gain of 10.00
    return broker_factory(inner), inner


def test_the_guard_closes_a_losing_position_on_its_own_journaled_and_trading_goes_on(trees):
    broker, inner = losing_account()
    tree = GuardTree(broker, position_stop=Settings(position_stop_percent=3).position_stop())
    trees.append(tree)
    tree.read(inner.account_equity())
    [closed] = tree.events.wait_count(EventType.POSITION_CLOSED, 1)
    reason = "position stop: EURUSD buy 10000 (position 1) unrealised loss 300.00 >= 3% of equity 9,710.00 (291.30)"
    assert closed.metadata == {
        "position_id": "1", "symbol": "EURUSD", "side": "buy", "volume": 10_000.0, "price": 0.97,
        "realised_pnl": pytest.approx(-300.0), "reason": reason, "attempt": 0, "rule": "position_stop",
        "costs": 0.0,
    }
    [submitted] = tree.events.of(EventType.ORDER_SUBMITTED)
    [executed] = tree.events.wait_count(EventType.TRADE_EXECUTED, 1)
    client_id = submitted.metadata["client_order_id"]
    assert (submitted.metadata["symbol"], submitted.metadata["side"], submitted.metadata["volume"]) == ("EURUSD", "sell", 10_000.0)
    assert executed.metadata["client_order_id"] == client_id and executed.metadata["position_id"] == "1"
    assert [(p.symbol, p.side.value) for p in inner.open_positions()] == [("GBPUSD", "sell")]
    assert tree.store.unsettled_orders("main") == []
    status = tree.status()
    assert status.state.trading_state is TradingState.ACTIVE and tree.state_changes() == []
    tree.journal.wait_for(lambda es: any(a.title == "Position stopped" for a in tree.alerts()))
    assert [a.text for a in tree.alerts() if a.title == "Position stopped"] == [reason]
    tree.read(inner.account_equity())  # the next reading finds nothing more to stop
    assert tree.status().state.trading_state is TradingState.ACTIVE
    assert len(tree.events.of(EventType.POSITION_CLOSED)) == 1


def test_a_close_the_broker_refuses_is_a_failed_trade_alerted_and_tried_again_at_the_next_reading(trees):
    broker, inner = losing_account(lambda inner: FlakyBroker(inner, close_failures=1))
    tree = GuardTree(broker, position_stop=Settings(position_stop_percent=3).position_stop())
    trees.append(tree)
    tree.read(inner.account_equity())
    [failed] = tree.events.wait_count(EventType.TRADE_FAILED, 1)
    assert (failed.metadata["rejected"], failed.metadata["error"]) == (False, "BrokerError('connection to trade server lost')")
    tree.journal.wait_for(lambda es: any(a.title == "Position stop failing" for a in tree.alerts()))
    tree.read(inner.account_equity())
    [closed] = tree.events.wait_count(EventType.POSITION_CLOSED, 1)
    assert closed.metadata["rule"] == "position_stop" and broker.close_calls == 2
    assert tree.status().state.trading_state is TradingState.ACTIVE


def test_without_the_setting_no_position_is_stopped(trees):
    broker, inner = losing_account()
    tree = GuardTree(broker, position_stop=Settings().position_stop())
    trees.append(tree)
    tree.read(inner.account_equity())
    assert tree.status().state.trading_state is TradingState.ACTIVE
    assert len(inner.open_positions()) == 2 and tree.events.of(EventType.POSITION_CLOSED) == []
