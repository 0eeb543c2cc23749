"""The pre-trade rules, the cooldown and the per-position stop at their edges: a value exactly on a
limit and one step past it, a zero or tiny equity, a position closed to the last rounding digit,
the symbol named when its price is unknown, and the exact messages of what is refused."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import pytest

from runtime import Order, Position
from runtime.risk.cooldown import Cooldown
from runtime.risk.guards import LIMIT_TOLERANCE
from runtime.risk.limits import (
    MaxLeverage,
    MaxOpenPositions,
    MaxSymbolExposure,
    MaxTotalExposure,
    MaxTradesPerDay,
    OrderContext,
    exceeds,
)
from runtime.risk.position_stop import PositionStop

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def context(*positions: Position, prices=None, equity=10_000.0) -> OrderContext:
    return OrderContext(positions, prices or {}, equity, NOW)


def long(symbol: str, volume: float, entry: float = 1.0) -> Position:
    return Position(f"p-{symbol}", symbol, "buy", volume, entry)


# --- the limits -----------------------------------------------------------------------------------


def test_a_value_on_the_limit_plus_its_rounding_tolerance_is_not_past_it_and_one_step_more_is():
    edge = 100.0 * (1.0 + LIMIT_TOLERANCE)
    assert exceeds(edge, 100.0) is False
    assert exceeds(math.nextafter(edge, math.inf), 100.0) is True


def test_what_a_close_leaves_within_the_flat_tolerance_is_flat_and_one_step_more_is_a_position():
    held = 0.9094947017729282
    closing = 0.9094947017720187  # leaves exactly 1e-12 of the held volume (2**-40)
    assert held - closing == 1e-12 * held
    assert context(long("X", held)).net_after(Order("X", "sell", closing)) == {}
    less = math.nextafter(closing, 0.0)
    assert context(long("X", held)).net_after(Order("X", "sell", less)) == {"X": held - less}


def test_a_close_of_a_large_position_leaving_a_rounding_residue_is_flat():
    closing = 1_000.0 * (1 - 1e-13)  # leaves 1e-10: within 1e-12 of the 1,000 held
    assert context(long("X", 1_000.0), long("Y", 2.0)).net_after(Order("X", "sell", closing)) == {"Y": 2.0}


def test_an_order_that_closes_its_symbol_leaves_it_out_of_the_net_and_its_exposure_at_zero():
    held = context(long("X", 10.0, entry=100.0), long("Y", 1.0))
    assert held.net_after(Order("X", "sell", 10.0)) == {"Y": 1.0}
    assert MaxSymbolExposure(50.0).check(Order("X", "sell", 10.0), held) is None


def test_an_addition_to_a_held_symbol_passes_even_while_more_symbols_are_held_than_the_limit():
    rule = MaxOpenPositions(1)  # lowered while two symbols were held
    held = context(long("A", 1), long("B", 1))
    assert rule.check(Order("A", "buy", 1), held) is None
    assert rule.check(Order("C", "buy", 1), held) == "open positions 3 > limit 1 with C"


def test_each_valuing_rule_names_the_symbol_whose_price_is_unknown():
    held = context(long("X", 1.0, entry=100.0), prices={"X": 100.0})
    order = Order("Z", "buy", 1)
    message = "no price known for Z, so its notional cannot be checked"
    assert MaxSymbolExposure(1e6).check(order, held) == message
    assert MaxTotalExposure(1e6).check(order, held) == message
    assert MaxLeverage(100.0).check(order, held) == message


def test_leverage_is_refused_at_a_zero_equity_and_checked_at_any_positive_one():
    rule = MaxLeverage(1.0)
    order = Order("X", "buy", 1)
    assert rule.check(order, context(prices={"X": 0.5}, equity=0.0)) == "equity 0.00, so leverage cannot be checked"
    assert rule.check(order, context(prices={"X": 0.5}, equity=-5.0)) == "equity -5.00, so leverage cannot be checked"
    assert rule.check(order, context(prices={"X": 0.5}, equity=None)) == "equity unknown, so leverage cannot be checked"
    assert rule.check(order, context(prices={"X": 0.5}, equity=1.0)) is None
    assert rule.check(order, context(prices={"X": 0.5}, equity=0.5)) is None
    assert rule.check(order, context(prices={"X": 0.5}, equity=0.4)) == (
        "leverage 1.25 > limit 1.00 after X (exposure 0.50, equity 0.40)"
    )


@pytest.mark.parametrize(
    ("zone", "now", "start", "day"),
    [
        ("Asia/Tokyo", datetime(2024, 3, 1, 20, 0, tzinfo=UTC), datetime(2024, 3, 1, 15, 0, tzinfo=UTC), "2024-03-02"),  # 05:00
        ("America/New_York", datetime(2024, 3, 2, 3, 0, tzinfo=UTC), datetime(2024, 3, 1, 5, 0, tzinfo=UTC), "2024-03-01"),  # 22:00
    ],
)
def test_the_trading_day_starts_at_midnight_in_its_zone_when_the_utc_date_differs(zone, now, start, day):
    rule = MaxTradesPerDay(1, zone)
    assert rule.day_start(now) == start
    sent = OrderContext([], {}, None, now, [start.timestamp()])
    assert rule.check(Order("X", "buy", 1), sent) == f"trades 2 on {day} ({zone}) > limit 1 for X"
    before = OrderContext([], {}, None, now, [start.timestamp() - 1])
    assert rule.check(Order("X", "buy", 1), before) is None


# --- the cooldown ---------------------------------------------------------------------------------


def test_cooldown_rules_of_the_wrong_kind_are_refused_naming_the_value():
    with pytest.raises(TypeError, match=r"^cooldown_rules must be rule names separated by commas, got 5$"):
        Cooldown(5)


def test_a_cooldown_of_several_timed_rules_without_seconds_names_them_all():
    with pytest.raises(
        ValueError, match=r"^cooldown_seconds must be set for a cooldown of max_drawdown, min_equity, got None$"
    ):
        Cooldown("min_equity, max_drawdown, daily_loss")


def test_a_naive_latch_time_is_refused_naming_the_field():
    naive = datetime(2024, 3, 1, 10, 0)
    with pytest.raises(ValueError) as info:
        Cooldown("daily_loss").resume_at(["daily_loss"], naive)
    assert str(info.value) == f"latched_at must be a timezone-aware datetime, got {naive!r}"


@pytest.fixture
def new_york_machine(monkeypatch):
    """The process's local time zone set to New York, as on a server there."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_resume_time_is_in_utc_whatever_the_machines_zone(new_york_machine):
    latched = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    daily = Cooldown("daily_loss", timezone="Europe/London").resume_at(["daily_loss"], latched)
    timed = Cooldown("max_drawdown", seconds=90).resume_at(["max_drawdown"], latched)
    assert (daily.isoformat(), daily.tzinfo) == ("2024-03-02T00:00:00+00:00", UTC)
    assert (timed.isoformat(), timed.tzinfo) == ("2024-03-01T10:01:30+00:00", UTC)


# --- the per-position stop ------------------------------------------------------------------------


def position(pnl: float, *, entry: float = 1.0) -> Position:
    return Position("7", "EURUSD", "buy", 1.0, entry, pnl)


def test_a_loss_exactly_on_the_stop_less_its_rounding_tolerance_fires_and_one_step_less_does_not():
    stop = PositionStop(2.0)
    edge = 200.0 * (1.0 - LIMIT_TOLERANCE)
    reason = f"position stop: EURUSD buy 1 (position 7) unrealised loss {edge:,.2f} >= 2% of equity 10,000.00 (200.00)"
    assert stop.check(position(-edge), 10_000.0) == reason
    assert stop.check(position(-math.nextafter(edge, 0.0)), 10_000.0) is None


def test_a_small_loss_on_a_small_equity_fires():
    stop = PositionStop(5.0)
    assert stop.check(position(-0.6), 10.0) == (
        "position stop: EURUSD buy 1 (position 7) unrealised loss 0.60 >= 5% of equity 10.00 (0.50)"
    )
    assert stop.check(position(-0.05), 1.0) == (
        "position stop: EURUSD buy 1 (position 7) unrealised loss 0.05 >= 5% of equity 1.00 (0.05)"
    )
    assert stop.check(position(-0.06), 0.5) == (
        "position stop: EURUSD buy 1 (position 7) unrealised loss 0.06 >= 5% of equity 0.50 (0.03)"
    )


def test_a_flat_position_never_fires_even_on_a_zero_entry_value():
    assert PositionStop(5.0, "entry").check(position(0.0, entry=0.0), None) is None
    assert PositionStop(5.0, "entry").check(position(-0.01, entry=0.0), None) == (
        "position stop: EURUSD buy 1 (position 7) unrealised loss 0.01 >= 5% of entry value 0.00 (0.00)"
    )
