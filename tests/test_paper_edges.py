"""The paper broker at its edges: what a replay asks of it between bars (`equity_at`), costs with a
contract size, the dust tolerances exactly on the line, an account with under one unit of equity,
the leverage limit when the equity is gone, and the exact message of every refusal."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from runtime import BrokerError, Fill, Order, PaperBroker, Position, Side
from runtime.broker import AccountSnapshot
from runtime.adapters.paper import PaperCosts

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
