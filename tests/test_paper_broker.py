"""PaperBroker: fills at the fed price, equity is cash plus unrealised PnL, netting, clear refusals."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import equities, open_positions

from runtime import Broker, BrokerError, Fill, Order, PaperBroker, Position, Side
from runtime.broker import AccountSnapshot

AT = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def state(broker: PaperBroker):
    """Everything a user can see of the account."""
    return broker.cash, broker.account_equity(), broker.open_positions()


@pytest.fixture
def broker() -> PaperBroker:
    paper = PaperBroker(10_000.0)
    paper.update_price("EURUSD", 1.10, at=AT)
    return paper


def test_a_paper_broker_is_a_broker():
    assert isinstance(PaperBroker(), Broker)


def test_a_market_order_fills_at_the_fed_price_and_time(broker):
    order = Order("EURUSD", Side.BUY, 2.0, client_id="c-1")
    fill = broker.submit_order(order)
    assert fill == Fill(fill.position_id, "EURUSD", Side.BUY, 2.0, 1.10, AT, 0.0, "c-1")
    assert broker.open_positions() == [Position(fill.position_id, "EURUSD", Side.BUY, 2.0, 1.10, 0.0)]


def test_a_fill_is_found_again_by_its_client_id_and_an_unknown_id_finds_none(broker):
    fill = broker.submit_order(Order("EURUSD", Side.BUY, 2.0, client_id="c-1"))
    assert broker.find_fill("c-1") == fill
    assert broker.find_fill("never-sent") is None


def test_an_order_sent_twice_with_one_client_id_trades_once(broker):
    broker.submit_order(Order("EURUSD", Side.BUY, 2.0, client_id="c-1"))
    before = state(broker)
    with pytest.raises(BrokerError, match=r"^duplicate client id 'c-1': that order was already filled$"):
        broker.submit_order(Order("EURUSD", Side.BUY, 2.0, client_id="c-1"))
    assert state(broker) == before


def test_every_order_gets_its_own_client_id_before_it_is_sent():
    first, second = Order("EURUSD", Side.BUY, 1.0), Order("EURUSD", Side.BUY, 1.0)
    assert first.client_id != second.client_id
    assert len(first.client_id) == 20 and int(first.client_id, 16) >= 0


@pytest.mark.parametrize("bad", ["", "x" * 29, "tab\there"])
def test_a_client_id_that_no_broker_can_carry_is_refused(bad):
    with pytest.raises(ValueError, match=r"^client_id must be a printable string of 1 to 28 characters, got "):
        Order("EURUSD", Side.BUY, 1.0, client_id=bad)
    with pytest.raises(TypeError, match=r"^client_id must be a string, got 7$"):
        Order("EURUSD", Side.BUY, 1.0, client_id=7)


def test_equity_is_cash_plus_unrealised_pnl():
    broker = PaperBroker(1_000.0, contract_size=100.0)
    broker.update_price("XAUUSD", 2000.0)
    broker.update_price("EURUSD", 1.10)
    broker.submit_order(Order("XAUUSD", "buy", 0.5))
    broker.submit_order(Order("EURUSD", "sell", 10.0))
    broker.update_price("XAUUSD", 2010.0)  # long 0.5 x 100 units: +500
    broker.update_price("EURUSD", 1.12)  # short 10 x 100 units: -20
    unrealised = {p.symbol: p.unrealised_pnl for p in broker.open_positions()}
    assert unrealised == pytest.approx({"XAUUSD": 500.0, "EURUSD": -20.0})
    assert broker.cash == 1_000.0
    assert broker.account_equity() == pytest.approx(1_000.0 + 500.0 - 20.0)


def test_adding_to_a_position_averages_the_entry_price(broker):
    first = broker.submit_order(Order("EURUSD", Side.BUY, 1.0))
    broker.update_price("EURUSD", 1.20)
    second = broker.submit_order(Order("EURUSD", Side.BUY, 3.0))
    assert second.position_id == first.position_id
    (position,) = broker.open_positions()
    assert position.volume == 4.0
    assert position.entry_price == pytest.approx((1.10 + 3 * 1.20) / 4)
    assert broker.cash == 10_000.0


def test_an_opposite_order_smaller_than_the_position_reduces_it_and_realises_that_part(broker):
    broker.submit_order(Order("EURUSD", Side.BUY, 3.0))
    broker.update_price("EURUSD", 1.30)
    fill = broker.submit_order(Order("EURUSD", Side.SELL, 1.0))
    assert fill.realised_pnl == pytest.approx(0.20)
    (position,) = broker.open_positions()
    assert (position.side, position.volume, position.entry_price) == (Side.BUY, 2.0, 1.10)
    assert broker.cash == pytest.approx(10_000.20)
    assert broker.account_equity() == pytest.approx(10_000.0 + 3 * 0.20)


def test_an_opposite_order_of_the_same_volume_closes_the_position(broker):
    broker.submit_order(Order("EURUSD", Side.BUY, 2.0))
    broker.update_price("EURUSD", 1.00)
    fill = broker.submit_order(Order("EURUSD", Side.SELL, 2.0))
    assert fill.realised_pnl == pytest.approx(-0.20)
    assert broker.open_positions() == []
    assert broker.net_volume("EURUSD") == 0.0
    assert broker.account_equity() == broker.cash == pytest.approx(9_999.80)


def test_an_opposite_order_larger_than_the_position_reverses_it_at_the_fill_price(broker):
    broker.submit_order(Order("EURUSD", Side.BUY, 3.0))
    broker.update_price("EURUSD", 1.20)
    fill = broker.submit_order(Order("EURUSD", Side.SELL, 5.0))
    assert fill.realised_pnl == pytest.approx(0.30)
    (position,) = broker.open_positions()
    assert (position.side, position.volume, position.entry_price) == (Side.SELL, 2.0, 1.20)
    assert broker.net_volume("EURUSD") == -2.0
    broker.update_price("EURUSD", 1.10)
    assert broker.account_equity() == pytest.approx(10_000.30 + 2 * 0.10)


def test_closing_with_a_volume_off_by_rounding_leaves_no_dust_position(broker):
    broker.submit_order(Order("EURUSD", Side.BUY, 0.3))
    broker.submit_order(Order("EURUSD", Side.SELL, 0.1 + 0.2))  # 0.30000000000000004
    assert broker.open_positions() == []
    assert broker.net_volume("EURUSD") == 0.0


def test_close_position_closes_it_whole_with_an_opposite_fill(broker):
    opened = broker.submit_order(Order("EURUSD", Side.SELL, 4.0))
    broker.update_price("EURUSD", 1.05)
    fill = broker.close_position(opened.position_id)
    assert (fill.side, fill.volume, fill.price) == (Side.BUY, 4.0, 1.05)
    assert fill.realised_pnl == pytest.approx(0.20)
    assert broker.open_positions() == []
    assert broker.cash == pytest.approx(10_000.20)


@settings(max_examples=50)
@given(
    prices=st.lists(equities(min_value=0.5, max_value=5_000.0), min_size=1, max_size=8),
    volumes=st.lists(st.integers(-5, 5).filter(bool).map(float), min_size=1, max_size=8),
)
def test_equity_is_always_cash_plus_the_open_positions_pnl(prices, volumes):
    broker = PaperBroker(100_000.0)
    net = 0.0
    for price, volume in zip(prices, volumes):
        broker.update_price("X", price)
        broker.submit_order(Order("X", Side.BUY if volume > 0 else Side.SELL, abs(volume)))
        net += volume
        positions = broker.open_positions()
        assert broker.account_equity() == pytest.approx(broker.cash + sum(p.unrealised_pnl for p in positions))
        assert broker.net_volume("X") == net
        assert len(positions) == (0 if net == 0 else 1)


# --- refusals change nothing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        (0.0, "volume must be > 0, got 0.0"),
        (-1.0, "volume must be > 0, got -1.0"),
        (math.nan, "volume must be a finite real number, got nan"),
    ],
)
def test_an_order_with_zero_negative_or_nan_volume_is_refused_naming_the_volume(volume, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Order("EURUSD", Side.BUY, volume)


def test_an_order_for_a_symbol_with_no_price_yet_is_refused_and_changes_nothing(broker):
    broker.submit_order(Order("EURUSD", Side.BUY, 1.0))
    before = state(broker)
    with pytest.raises(BrokerError, match=r"^no price yet for symbol 'GBPUSD'$"):
        broker.submit_order(Order("GBPUSD", Side.BUY, 1.0))
    assert state(broker) == before


def test_closing_an_unknown_position_is_refused_naming_it_and_changes_nothing(broker):
    broker.submit_order(Order("EURUSD", Side.BUY, 1.0))
    before = state(broker)
    with pytest.raises(BrokerError, match=r"^unknown position '999': it is not open$"):
        broker.close_position("999")
    assert state(broker) == before


def test_closing_a_position_twice_is_refused_the_second_time(broker):
    opened = broker.submit_order(Order("EURUSD", Side.BUY, 1.0))
    broker.close_position(opened.position_id)
    before = state(broker)
    with pytest.raises(BrokerError, match=rf"^unknown position '{opened.position_id}': it is not open$"):
        broker.close_position(opened.position_id)
    assert state(broker) == before


def test_something_that_is_not_an_order_is_refused(broker):
    with pytest.raises(TypeError, match=r"^order must be an Order, got \{'symbol': 'EURUSD', 'side': 'buy', 'volume': 1\.0\} \(dict\)$"):
        broker.submit_order({"symbol": "EURUSD", "side": "buy", "volume": 1.0})
    assert broker.open_positions() == []


def test_price_of_an_unfed_symbol_is_refused_naming_it():
    with pytest.raises(BrokerError, match=r"^no price yet for symbol 'BTCUSD'$"):
        PaperBroker().price("BTCUSD")


@pytest.mark.parametrize(
    ("price", "message"),
    [
        (0.0, "price must be > 0, got 0.0 for 'EURUSD'"),
        (-1.0, "price must be > 0, got -1.0 for 'EURUSD'"),
        (math.nan, "price must be a finite real number, got nan"),
        (math.inf, "price must be a finite real number, got inf"),
    ],
)
def test_a_bad_price_is_refused_naming_it_and_the_old_price_stays(broker, price, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        broker.update_price("EURUSD", price)
    assert broker.price("EURUSD") == 1.10


@pytest.mark.parametrize(
    ("cash", "contract", "message"),
    [
        (0.0, 1.0, "starting_cash must be > 0, got 0.0"),
        (-5.0, 1.0, "starting_cash must be > 0, got -5.0"),
        (100.0, 0.0, "contract_size must be > 0, got 0.0"),
        (100.0, -2, "contract_size must be > 0, got -2"),
        (math.nan, 1.0, "starting_cash must be a finite real number, got nan"),
    ],
)
def test_a_broker_without_positive_cash_and_contract_size_is_refused(cash, contract, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        PaperBroker(cash, contract_size=contract)


def test_an_unknown_side_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"^side must be one of 'buy', 'sell', got 'hold'$"):
        Order("EURUSD", "hold", 1.0)


def test_an_empty_symbol_is_refused():
    with pytest.raises(ValueError, match=r"^symbol must be a non-empty string, got ' '$"):
        Order(" ", Side.BUY, 1.0)


def test_sides_know_their_opposite_and_sign():
    assert (Side.BUY.opposite, Side.SELL.opposite) == (Side.SELL, Side.BUY)
    assert (Side.BUY.sign, Side.SELL.sign) == (1, -1)


@given(positions=open_positions(), pnl=st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**6, 10**6))
def test_a_revalued_position_is_the_position_made_with_that_pnl(positions, pnl):
    for position in positions:
        fields = attrs.astuple(position, recurse=False)[:-1]
        revalued = position.revalued(pnl)
        assert type(revalued) is Position
        made = Position(*fields, pnl)
        assert repr(revalued) == repr(made)  # every field, and its type (an int stays an int)
        assert revalued == made and hash(revalued) == hash(made)
        assert attrs.astuple(position, recurse=False)[-1] == 0.0  # the original is untouched


@pytest.mark.parametrize("pnl", [math.nan, math.inf, -math.inf, "1", None, True])
def test_a_revalued_position_refuses_what_the_constructor_refuses_with_the_same_message(pnl):
    position = Position("7", "EURUSD", Side.SELL, 2.0, 1.1)
    with pytest.raises((TypeError, ValueError)) as made:
        Position("7", "EURUSD", Side.SELL, 2.0, 1.1, pnl)
    with pytest.raises(made.type) as revalued:
        position.revalued(pnl)
    assert str(revalued.value) == str(made.value)
    assert str(made.value).startswith("unrealised_pnl must be a finite real number, got ")


# --- every field of every fill: open, add, reduce, reverse, close ----------------------------------

LATER = AT + timedelta(days=1)


def test_every_fill_carries_the_position_symbol_time_and_client_id_through_a_positions_life():
    broker = PaperBroker(1_000.0, contract_size=2.0)
    broker.update_price("X", 1.0, at=AT)
    broker.update_price("Y", 7.0)
    assert broker.submit_order(Order("X", "buy", 3.0, client_id="open")) == Fill("1", "X", Side.BUY, 3.0, 1.0, AT, 0.0, "open")
    broker.update_price("X", 2.0)  # no time given: the fills keep the last one
    added = broker.submit_order(Order("X", "buy", 2.0, client_id="add"))
    assert added == Fill("1", "X", Side.BUY, 2.0, 2.0, AT, 0.0, "add")
    # the held volume is 3, not 1: the entry is (3 x 1.0 + 2 x 2.0) / 5
    assert broker.open_positions() == [Position("1", "X", Side.BUY, 5.0, 1.4, 6.000000000000001)]
    broker.update_price("X", 3.0, at=LATER)
    reduced = broker.submit_order(Order("X", "sell", 1.0, client_id="reduce"))
    assert reduced == Fill("1", "X", Side.SELL, 1.0, 3.0, LATER, 3.2, "reduce")  # 1 x 1.6 x 2
    assert broker.open_positions() == [Position("1", "X", Side.BUY, 4.0, 1.4, 12.8)]
    assert broker.cash == 1_003.2
    reversed_ = broker.submit_order(Order("X", "sell", 6.0, client_id="reverse"))
    assert reversed_ == Fill("1", "X", Side.SELL, 6.0, 3.0, LATER, 12.8, "reverse")
    assert broker.open_positions() == [Position("2", "X", Side.SELL, 2.0, 3.0, 0.0)]
    assert broker.cash == 1_016.0
    broker.update_price("X", 2.5)
    assert broker.close_position("2") == Fill("2", "X", Side.BUY, 2.0, 2.5, LATER, 2.0, None)
    assert broker.open_positions() == []
    assert (broker.cash, broker.account_equity()) == (1_018.0, 1_018.0)
    assert broker.account_snapshot() == AccountSnapshot(1_018.0, 0.0)
    opened_y = broker.submit_order(Order("Y", "sell", 1.0, client_id="y"))
    assert opened_y == Fill("3", "Y", Side.SELL, 1.0, 7.0, LATER, 0.0, "y")


def test_an_order_that_closes_exactly_gives_the_held_ticket_and_opens_nothing():
    broker = PaperBroker(1_000.0)
    broker.update_price("X", 4.0, at=AT)
    broker.submit_order(Order("X", "sell", 2.0, client_id="a"))
    broker.update_price("X", 3.0, at=LATER)
    assert broker.submit_order(Order("X", "buy", 2.0, client_id="b")) == Fill("1", "X", Side.BUY, 2.0, 3.0, LATER, 2.0, "b")
    assert broker.open_positions() == []
    assert broker.submit_order(Order("X", "buy", 1.0, client_id="c")).position_id == "2"


def test_a_short_position_reports_a_negative_net_volume_and_its_pnl():
    broker = PaperBroker(1_000.0, contract_size=10.0)
    broker.update_price("X", 4.0)
    broker.submit_order(Order("X", "sell", 2.0))
    broker.update_price("X", 3.0)
    assert broker.net_volume("X") == -2.0
    assert broker.net_volume("Y") == 0.0
    assert broker.open_positions() == [Position("1", "X", Side.SELL, 2.0, 4.0, 20.0)]
    assert broker.account_equity() == 1_020.0


def test_a_remainder_above_the_dust_tolerance_opens_a_position_and_one_within_it_does_not():
    broker = PaperBroker(1_000.0)
    broker.update_price("X", 1.0)
    broker.submit_order(Order("X", "buy", 1.0))
    broker.submit_order(Order("X", "sell", 1.0 + 1e-9))
    (left,) = broker.open_positions()
    assert (left.side, left.volume) == (Side.SELL, pytest.approx(1e-9, rel=1e-6))
    dust = PaperBroker(1_000.0)
    dust.update_price("X", 1.0)
    dust.submit_order(Order("X", "buy", 1.0))
    dust.submit_order(Order("X", "sell", 1.0 + 4e-16))
    assert dust.open_positions() == []


def test_a_reduction_leaving_more_than_dust_keeps_the_position():
    broker = PaperBroker(1_000.0)
    broker.update_price("X", 1.0)
    broker.submit_order(Order("X", "buy", 1.0))
    broker.submit_order(Order("X", "sell", 1.0 - 1e-9))
    (left,) = broker.open_positions()
    assert (left.position_id, left.side, left.volume) == ("1", Side.BUY, pytest.approx(1e-9, rel=1e-6))


def test_the_time_of_a_fill_is_the_time_of_the_last_price_fed_with_one():
    broker = PaperBroker()
    broker.update_price("X", 1.0)
    assert broker.submit_order(Order("X", "buy", 1.0)).time == datetime(1970, 1, 1, tzinfo=UTC)
    broker.update_price("X", 1.0, at=LATER)
    broker.update_price("X", 1.0)
    assert broker.submit_order(Order("X", "buy", 1.0)).time == LATER


def test_a_new_broker_has_its_cash_as_equity_and_no_deposits():
    broker = PaperBroker(2_500)
    assert (broker.cash, broker.account_equity(), broker.open_positions()) == (2_500.0, 2_500.0, [])
    assert broker.account_snapshot() == AccountSnapshot(2_500.0, 0.0)
    assert PaperBroker().cash == 10_000.0


def test_deposits_and_withdrawals_move_cash_and_net_deposits_and_refuse_on_both_sides():
    broker = PaperBroker(1_000.0)
    broker.deposit(500)
    assert broker.account_snapshot() == AccountSnapshot(1_500.0, 500.0)
    broker.withdraw(200.0)
    assert broker.account_snapshot() == AccountSnapshot(1_300.0, 300.0)
    with pytest.raises(BrokerError, match=r"^withdrawal of 1300\.0 refused: equity is 1300\.0$"):
        broker.withdraw(1_300.0)
    broker.withdraw(1_299.0)
    assert broker.account_snapshot() == AccountSnapshot(1.0, -999.0)
    for call, word in ((broker.deposit, "deposit"), (broker.withdraw, "withdrawal")):
        with pytest.raises(ValueError, match=rf"^a {word} must be > 0, got 0$"):
            call(0)
        with pytest.raises(ValueError, match=rf"^a {word} must be > 0, got -1\.0$"):
            call(-1.0)
        with pytest.raises(ValueError, match=r"^amount must be a finite real number, got nan$"):
            call(math.nan)
    assert broker.account_snapshot() == AccountSnapshot(1.0, -999.0)


def test_a_withdrawal_is_judged_against_equity_with_open_losses():
    broker = PaperBroker(1_000.0)
    broker.update_price("X", 10.0)
    broker.submit_order(Order("X", "buy", 10.0))
    broker.update_price("X", 5.0)  # an open loss of 50
    with pytest.raises(BrokerError, match=r"^withdrawal of 960\.0 refused: equity is 950\.0$"):
        broker.withdraw(960.0)
    assert broker.cash == 1_000.0


def test_the_price_read_back_is_the_latest_fed():
    broker = PaperBroker()
    broker.update_price("X", 2)
    broker.update_price("X", 3.5)
    assert broker.price("X") == 3.5 and type(broker.price("X")) is float
