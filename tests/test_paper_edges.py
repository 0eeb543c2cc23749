"""The paper broker at its edges: what a replay asks of it between bars (`equity_at`), costs with a
contract size, the dust tolerances exactly on the line, an account with under one unit of equity,
the leverage limit when the equity is gone, and the exact message of every refusal."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import BrokerError, Fill, Order, PaperBroker, Position, Side
from runtime.adapters.paper import PaperCosts
from runtime.broker import AccountSnapshot

AT = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
HELD = 0.9094947017729282
LESS = 0.9094947017720187  # HELD - LESS is 2**-40: exactly 1e-12 of HELD (the dust tolerance)


def paper(cash: float = 10_000.0, *, contract_size: float = 1.0, **costs: float) -> PaperBroker:
    broker = PaperBroker(cash, contract_size=contract_size, costs=PaperCosts(**costs))
    broker.update_price("X", 100.0, AT)
    broker.update_price("Y", 50.0, AT)
    return broker


# --- equity at a price (the replay's intrabar reading) --------------------------------------------


def test_equity_at_a_bid_values_a_short_at_the_ask_as_account_equity_does():
    broker = paper(spread=0.5)
    broker.submit_order(Order("X", "sell", 10))  # at the bid, 100
    broker.submit_order(Order("Y", "buy", 2))  # at the ask, 50.5
    # The short is worth the ask (100.5) to buy back: -5; the long the bid (50): -1.
    assert broker.account_equity() == 9_994.0
    assert broker.equity_at("X", 100.0) == 9_994.0
    assert broker.equity_at("X", 90.0) == 10_000.0 + (100.0 - 90.5) * 10 - 1.0
    assert broker.equity_at("Y", 60.0) == 10_000.0 - 5.0 + (60.0 - 50.5) * 2
    assert broker.account_equity() == 9_994.0  # nothing changed


def test_equity_at_a_bid_uses_the_symbols_own_spread_in_points():
    broker = paper(point=0.01)
    broker.update_price("X", 100.0, AT, spread_points=30)  # 0.30
    broker.submit_order(Order("X", "sell", 10))
    assert broker.account_equity() == pytest.approx(10_000.0 - 3.0, abs=1e-9)
    assert broker.equity_at("X", 100.0) == broker.account_equity()
    assert broker.equity_at("X", 99.0) == pytest.approx(10_000.0 + 7.0, abs=1e-9)


def test_equity_at_without_positions_is_the_cash_and_a_bad_price_is_refused_naming_it():
    broker = paper()
    assert broker.equity_at("X", 1.0) == 10_000.0
    with pytest.raises(TypeError, match=r"^price must be a finite real number, got 'x' \(str\)$"):
        broker.equity_at("X", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^price must be a finite real number, got nan$"):
        broker.equity_at("X", math.nan)


# --- costs, fills and the dust tolerances ---------------------------------------------------------


def test_the_spread_and_slippage_paid_count_the_contract_size():
    broker = paper(contract_size=100.0, spread=0.5, slippage=0.25, commission_percent=1.0)
    order = Order("X", "buy", 2)
    # 2 lots of 100 at 100.75: notional 20,150, 1% of it commission; 0.75 a unit paid over the bid.
    assert broker.submit_order(order) == Fill("1", "X", Side.BUY, 2, 100.75, AT, -201.5, order.client_id, 351.5)


def test_a_fill_that_adds_to_a_position_carries_its_commission_as_cost_and_loss():
    broker = paper(commission_per_lot=2.0)
    broker.submit_order(Order("X", "buy", 1))
    order = Order("X", "buy", 3)
    assert broker.submit_order(order) == Fill("1", "X", Side.BUY, 3, 100.0, AT, -6.0, order.client_id, 6.0)
    assert broker.open_positions() == [Position("1", "X", Side.BUY, 4, 100.0, 0.0)]


def test_closing_a_short_buys_it_back_at_the_ask_plus_slippage():
    broker = paper(spread=0.5, slippage=0.25)
    broker.submit_order(Order("X", "sell", 2))  # at 99.75
    assert broker.close_position("1") == Fill("1", "X", Side.BUY, 2, 100.75, AT, -2.0, None, 1.5)
    assert broker.open_positions() == []


def test_a_sell_whose_bid_less_slippage_is_zero_is_refused_and_one_above_zero_fills():
    broker = paper(slippage=1.0)
    broker.update_price("X", 1.0, AT)
    with pytest.raises(BrokerError, match=r"^cannot sell 'X': the bid 1\.0 less slippage 1\.0 is <= 0$"):
        broker.submit_order(Order("X", "sell", 1))
    assert broker.open_positions() == [] and broker.cash == 10_000.0
    broker.update_price("X", 1.5, AT)
    assert broker.submit_order(Order("X", "sell", 1)).price == 0.5


def test_a_reversal_leaving_exactly_the_dust_tolerance_opens_nothing_and_one_step_more_opens_it():
    broker = paper()
    broker.submit_order(Order("X", "buy", LESS))
    broker.submit_order(Order("X", "sell", HELD))  # leaves 2**-40: 1e-12 of the order
    assert broker.open_positions() == []
    again = paper()
    again.submit_order(Order("X", "buy", LESS))
    more = math.nextafter(HELD, math.inf)
    again.submit_order(Order("X", "sell", more))
    assert again.open_positions() == [Position("2", "X", Side.SELL, more - LESS, 100.0, 0.0)]


def test_a_reduction_leaving_exactly_the_dust_tolerance_closes_and_one_step_less_keeps_it():
    broker = paper()
    broker.submit_order(Order("X", "buy", HELD))
    broker.submit_order(Order("X", "sell", LESS))  # leaves 2**-40: 1e-12 of the position
    assert broker.open_positions() == []
    again = paper()
    again.submit_order(Order("X", "buy", HELD))
    less = math.nextafter(LESS, 0.0)
    again.submit_order(Order("X", "sell", less))
    assert again.open_positions() == [Position("1", "X", Side.BUY, HELD - less, 100.0, 0.0)]


def test_the_dust_tolerance_is_relative_to_a_large_volume():
    reversed_ = paper()
    reversed_.submit_order(Order("X", "buy", 1_000.0))
    reversed_.submit_order(Order("X", "sell", 1_000.0 * (1 + 1e-13)))  # about 1e-10 over: dust
    assert reversed_.open_positions() == []
    reduced = paper()
    reduced.submit_order(Order("X", "buy", 1_000.0))
    reduced.submit_order(Order("X", "sell", 1_000.0 * (1 - 1e-13)))  # about 1e-10 left: dust
    assert reduced.open_positions() == []


# --- the leverage limit ---------------------------------------------------------------------------


def test_the_leverage_limit_counts_the_contract_size():
    broker = paper(contract_size=100.0, max_leverage=2.0)
    broker.submit_order(Order("X", "buy", 1))  # 10,000 on 10,000
    with pytest.raises(BrokerError) as refused:
        broker.submit_order(Order("X", "buy", 2))
    assert str(refused.value) == (
        "order refused: buy 2 X would hold notional 30,000.00 on equity 10,000.00, leverage 3.0:1, over max_leverage 2:1"
    )
    assert broker.submit_order(Order("X", "buy", 1)).volume == 1  # 2:1 exactly


@pytest.mark.parametrize(
    ("commission", "equity"),
    [(100.0, "0.00"), (150.0, "-50.00")],
)
def test_an_order_whose_costs_leave_no_equity_is_refused_with_an_unbounded_leverage(commission, equity):
    broker = paper(100.0, commission_per_lot=commission, max_leverage=10.0)
    with pytest.raises(BrokerError) as refused:
        broker.submit_order(Order("X", "buy", 1))
    assert str(refused.value) == (
        f"order refused: buy 1 X would hold notional 100.00 on equity {equity}, leverage unbounded (equity <= 0), "
        "over max_leverage 10:1"
    )
    assert (broker.cash, broker.open_positions()) == (100.0, [])


def test_an_account_with_under_one_unit_of_equity_is_judged_like_any_other():
    small = paper(0.5, max_leverage=10.0)
    assert small.account_snapshot() == AccountSnapshot(0.5, 0.0)
    assert small.submit_order(Order("X", "buy", 0.04)).volume == 0.04  # 4.00 on 0.50: 8:1
    costly = paper(1.0, commission_per_lot=0.5, max_leverage=10.0)
    with pytest.raises(BrokerError) as refused:
        costly.submit_order(Order("X", "buy", 0.2))
    assert str(refused.value) == (
        "order refused: buy 0.2 X would hold notional 20.00 on equity 0.90, leverage 22.2:1, over max_leverage 10:1"
    )


def test_a_reversal_that_holds_no_more_notional_passes_while_over_the_limit():
    broker = paper(max_leverage=10.0)
    broker.submit_order(Order("X", "buy", 1_000))  # 10:1 exactly
    broker.update_price("X", 95.0, AT)  # equity 5,000: 19:1
    order = Order("X", "sell", 2_000)
    assert broker.submit_order(order) == Fill("1", "X", Side.SELL, 2_000, 95.0, AT, -5_000.0, order.client_id, 0.0)
    assert broker.open_positions() == [Position("2", "X", Side.SELL, 1_000, 95.0, 0.0)]


# --- cash flows and inputs ------------------------------------------------------------------------


def test_deposits_and_withdrawals_under_one_unit_add_up():
    broker = PaperBroker(1_000.0)
    broker.deposit(0.5)
    broker.deposit(0.25)
    assert broker.account_snapshot() == AccountSnapshot(1_000.75, 0.75)
    broker.withdraw(0.5)
    assert broker.account_snapshot() == AccountSnapshot(1_000.25, 0.25)


def test_a_spread_in_points_of_zero_or_under_one_is_taken_and_one_not_a_number_is_refused_naming_it():
    broker = paper(point=0.01, spread=0.5)
    broker.update_price("X", 100.0, AT, spread_points=0)
    assert broker.spread("X") == 0.0
    broker.update_price("X", 100.0, AT, spread_points=0.5)
    assert broker.spread("X") == 0.005
    with pytest.raises(TypeError, match=r"^spread_points must be a finite real number, got 'x' \(str\)$"):
        broker.update_price("X", 101.0, AT, spread_points="x")  # type: ignore[arg-type]
    assert (broker.price("X"), broker.spread("X")) == (100.0, 0.005)


@pytest.mark.parametrize("field", ["point", "max_leverage", "commission_percent"])
def test_a_cost_that_is_not_a_number_is_refused_naming_its_field(field):
    with pytest.raises(TypeError) as refused:
        PaperCosts(**{field: "x"})
    assert str(refused.value) == f"{field} must be a finite real number, got 'x' (str)"


# --- valuation: the figures the per-bar fast paths give are the sum's, to the last bit ------------


def _priced_value(broker: PaperBroker, position: Position, contract: float, symbol: str | None, bid: float) -> float:
    # The valuation as the broker defined it before it had a one-position path: the bid (``bid``
    # for ``symbol``), plus the spread for a short, less the entry, times the side's sign, the
    # volume and the contract size, in that order.
    price = bid if position.symbol == symbol else broker.price(position.symbol)
    mark = price if position.side is Side.BUY else price + broker.spread(position.symbol)
    return (mark - position.entry_price) * position.side.sign * position.volume * contract


def _summed_equity(broker: PaperBroker, contract: float, symbol: str | None = None, bid: float = 0.0) -> float:
    return broker.cash + sum(_priced_value(broker, p, contract, symbol, bid) for p in broker.open_positions())


_SYMBOLS = ("X", "Y", "Z")
_STEPS = st.one_of(
    st.tuples(st.just("price"), st.sampled_from(_SYMBOLS), st.floats(0.5, 500.0), st.none() | st.floats(0.0, 80.0)),
    st.tuples(st.just("order"), st.sampled_from(_SYMBOLS), st.sampled_from(list(Side)), st.floats(0.01, 50.0)),
    st.tuples(st.just("close"), st.integers(0, 3)),
    st.tuples(st.just("deposit"), st.floats(0.01, 5_000.0)),
    st.tuples(st.just("withdraw"), st.floats(0.01, 5_000.0)),
)


def _play(broker: PaperBroker, step: tuple) -> None:
    kind, *args = step
    try:
        if kind == "price":
            symbol, price, spread_points = args
            broker.update_price(symbol, price, AT, spread_points=spread_points)
        elif kind == "order":
            broker.submit_order(Order(*args))
        elif kind == "close":
            positions = broker.open_positions()
            if positions:
                broker.close_position(positions[args[0] % len(positions)].position_id)
        else:
            getattr(broker, kind)(args[0])
    except BrokerError:
        pass  # refused (no price yet, over the free cash): nothing changed


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(_STEPS, max_size=30),
    contract=st.sampled_from([1.0, 0.5, 3.0, 100_000.0]),
    spread=st.sampled_from([0.0, 0.25, 0.013]),
    point=st.sampled_from([None, 0.01, 0.0001]),
    commission=st.sampled_from([0.0, 0.7]),
    bids=st.lists(st.floats(0.5, 500.0), min_size=3, max_size=3),
)
def test_equity_snapshot_equity_at_and_positions_are_the_sum_over_positions_to_the_last_bit(
    steps, contract, spread, point, commission, bids
):
    # None, one or several positions, longs and shorts, own spreads in points: every figure equals
    # the plain sum over the positions, bit for bit (hex), whichever path the broker took.
    broker = PaperBroker(
        100_000.0, contract_size=contract, costs=PaperCosts(commission_per_lot=commission, spread=spread, point=point)
    )
    for step in steps:
        _play(broker, step)
        equity = _summed_equity(broker, contract)
        assert broker.account_equity().hex() == equity.hex()
        snapshot = broker.account_snapshot()
        assert (snapshot.equity.hex(), snapshot.net_deposits) == (equity.hex(), broker.net_deposits)
        for symbol, bid in zip(_SYMBOLS, bids):
            if any(p.symbol == symbol for p in broker.open_positions()):
                assert broker.equity_at(symbol, bid).hex() == _summed_equity(broker, contract, symbol, bid).hex()
        assert broker.open_positions() == [
            Position(p.position_id, p.symbol, p.side, p.volume, p.entry_price, _priced_value(broker, p, contract, None, 0.0))
            for p in broker.open_positions()
        ]


def test_net_deposits_are_the_snapshots_and_move_only_with_cash_flows():
    broker = paper()
    assert broker.net_deposits == 0.0
    broker.submit_order(Order("X", "buy", 3))
    broker.update_price("X", 120.0, AT)
    broker.deposit(250.0)
    broker.withdraw(100.0)
    assert broker.net_deposits == 150.0
    assert broker.account_snapshot() == AccountSnapshot(10_000.0 + 60.0 + 150.0, 150.0)


@pytest.mark.parametrize(
    ("symbol", "error", "message"),
    [
        (" ", ValueError, "symbol must be a non-empty string, got ' '"),
        ("\ud800", ValueError, "symbol must be text that UTF-8 can carry (no lone surrogate), got '\\ud800'"),
        (1, TypeError, "symbol must be a non-empty string, got 1 (int)"),
        (["X"], TypeError, "symbol must be a non-empty string, got ['X'] (list)"),
    ],
)
def test_a_bad_symbol_is_refused_by_a_broker_that_already_prices_others(symbol, error, message):
    # A symbol priced before is not checked again; every other one still is, and changes nothing.
    broker = paper()
    with pytest.raises(error) as refused:
        broker.update_price(symbol, 101.0, AT)
    assert str(refused.value) == message
    assert (broker.price("X"), broker.price("Y")) == (100.0, 50.0)


def test_a_known_symbol_with_a_bad_price_is_still_refused_naming_the_price():
    broker = paper()
    with pytest.raises(ValueError) as refused:
        broker.update_price("X", math.nan, AT)
    assert str(refused.value) == "price must be a finite real number, got nan"
    with pytest.raises(ValueError) as refused:
        broker.update_price("X", -1.0, AT)
    assert str(refused.value) == "price must be > 0, got -1.0 for 'X'"
    assert broker.price("X") == 100.0
