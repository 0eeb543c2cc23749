"""The order gate: HALTED refuses, REDUCING lets only exposure-reducing orders through, ACTIVE allows."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime import Order, Position, Side, TradingState
from runtime.risk.gate import check_order, net_volume, reduces_exposure


def _held(net: float, symbol: str = "X") -> list[Position]:
    return [] if net == 0 else [Position("1", symbol, "buy" if net > 0 else "sell", abs(net), 100.0)]


@pytest.mark.parametrize(
    ("side", "volume", "net", "expected"),
    [("sell", 5, 10, True), ("sell", 10, 10, True), ("sell", 11, 10, False), ("buy", 1, 10, False),
     ("buy", 5, -10, True), ("sell", 1, 0, False)],
)
def test_reduces_exposure_only_for_orders_that_shrink_the_net_position(side, volume, net, expected):
    assert reduces_exposure(Order("X", side, volume), _held(net)) is expected


def test_a_position_in_another_symbol_is_no_exposure_to_reduce():
    assert reduces_exposure(Order("X", "sell", 1), _held(10, symbol="Y")) is False
    assert net_volume("X", _held(10, symbol="Y") + _held(-3)) == -3


def test_closing_exactly_the_held_volume_reduces_even_after_rounding():
    held = [Position("1", "X", "buy", 0.1, 1.0), Position("2", "X", "buy", 0.2, 1.0)]  # 0.30000000000000004
    assert reduces_exposure(Order("X", "sell", 0.3), held) is True


def test_active_allows_any_order_and_halted_refuses_every_one():
    order = Order("X", "buy", 1)
    assert check_order(order, TradingState.ACTIVE, None) is None
    assert check_order(order, TradingState.HALTED, _held(-10)) == "trading halted"


def test_reducing_allows_only_what_reduces_and_refuses_when_positions_are_unknown():
    assert check_order(Order("X", "sell", 5), TradingState.REDUCING, _held(10)) is None
    assert check_order(Order("X", "buy", 5), TradingState.REDUCING, _held(10)) == (
        "reducing: only orders that reduce exposure are allowed"
    )
    assert check_order(Order("X", "sell", 5), TradingState.REDUCING, None) == (
        "reducing, and the open positions could not be read"
    )


@given(
    side=st.sampled_from(list(Side)),
    volume=st.floats(0.01, 1_000),
    net=st.floats(-1_000, 1_000),
    state=st.sampled_from(list(TradingState)),
)
def test_no_state_lets_an_order_grow_exposure_unless_active(side, volume, net, state):
    positions = _held(net)
    order = Order("X", side, volume)
    allowed = check_order(order, state, positions) is None
    before = abs(net_volume("X", positions))
    after = abs(net_volume("X", positions) + side.sign * volume)
    if allowed and state is not TradingState.ACTIVE:
        assert state is TradingState.REDUCING and after <= before * (1 + 1e-9)


def test_closing_a_held_volume_of_exactly_one_reduces():
    assert reduces_exposure(Order("X", "sell", 1), _held(1)) is True
    assert reduces_exposure(Order("X", "buy", 1), _held(-1)) is True


def test_a_close_over_the_held_volume_by_the_tolerance_reduces_and_one_step_more_reverses():
    edge = 10.0 * (1 + 1e-12)  # the largest volume still counted as closing 10 held
    assert reduces_exposure(Order("X", "sell", edge), _held(10)) is True
    assert reduces_exposure(Order("X", "sell", math.nextafter(edge, math.inf)), _held(10)) is False


_DOUBT = st.lists(st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 50)), max_size=4)


@given(side=st.sampled_from(["buy", "sell"]), volume=st.integers(1, 150), net=st.integers(-100, 100), doubt=_DOUBT,
       filled=st.lists(st.booleans(), min_size=4, max_size=4))
def test_an_order_that_reduces_with_orders_in_doubt_reduces_whichever_of_them_filled(side, volume, net, doubt, filled):
    in_doubt = [Order("X", s, v) for s, v in doubt]
    if not reduces_exposure(Order("X", side, volume), _held(net), in_doubt):
        return
    moved = net + sum(o.side.sign * o.volume for o, did in zip(in_doubt, filled) if did)
    assert reduces_exposure(Order("X", side, volume), _held(moved))


def test_a_close_in_doubt_counts_as_filled_for_another_close_and_a_buy_in_doubt_as_not_filled():
    assert reduces_exposure(Order("X", "sell", 100), _held(100), [Order("X", "sell", 100)]) is False
    assert reduces_exposure(Order("X", "sell", 60), _held(100), [Order("X", "sell", 40)]) is True
    assert reduces_exposure(Order("X", "sell", 61), _held(100), [Order("X", "sell", 40)]) is False
    assert reduces_exposure(Order("X", "sell", 150), _held(100), [Order("X", "buy", 50)]) is False
    assert reduces_exposure(Order("X", "sell", 100), _held(100), [Order("Y", "sell", 100)]) is True
    assert check_order(Order("X", "sell", 100), TradingState.REDUCING, _held(100), [Order("X", "sell", 100)]) == (
        "reducing: only orders that reduce exposure are allowed")
