"""The MT5 adapter's latest price: the middle of the tick's bid and ask, by the pure mapping, and
what a notional limit then values an order at."""

from __future__ import annotations

import importlib
import sys
from datetime import UTC, datetime

import pytest
from test_mt5_mapping import TICK, _Terminal, fresh_mt5_import  # noqa: F401  (fresh_mt5_import is a fixture)

from runtime import BrokerError, Order
from runtime.adapters import mt5_mapping as m
from runtime.risk.gate import Gate
from runtime.risk.guards import TradingState
from runtime.risk.limits import MaxOrderNotional


def test_the_price_is_the_middle_of_the_bid_and_the_ask() -> None:
    assert m.price_from_tick("EURUSD", TICK) == (1.08150 + 1.08162) / 2
    assert m.price_from_tick("EURUSD", TICK._replace(bid=1.0, ask=3)) == 2.0


@pytest.mark.parametrize(
    ("tick", "message"),
    [
        (None, "symbol_info_tick('EURUSD') returned None: no price for it (is it in Market Watch?)"),
        (TICK._replace(bid=0.0), "tick.bid of EURUSD must be > 0, got 0.0"),
        (TICK._replace(ask=-1.0), "tick.ask of EURUSD must be > 0, got -1.0"),
        (TICK._replace(ask=float("nan")), "tick.ask of EURUSD must be a finite number, got nan"),
        (TICK._replace(bid=None), "tick.bid of EURUSD must be a finite number, got None"),
        (TICK._replace(bid=True), "tick.bid of EURUSD must be a finite number, got True"),
    ],
)
def test_a_missing_or_bad_tick_is_refused_naming_the_symbol_and_the_value(tick, message) -> None:
    with pytest.raises(BrokerError) as info:
        m.price_from_tick("EURUSD", tick)
    assert str(info.value) == message


def test_the_adapter_prices_a_symbol_from_its_tick_and_the_gate_values_an_order_at_it(
    fresh_mt5_import: None, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    terminal = _Terminal()
    asked: list[str] = []
    monkeypatch.setattr(terminal, "symbol_info_tick", lambda symbol: asked.append(symbol) or TICK, raising=False)
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setitem(sys.modules, "MetaTrader5", terminal)
    broker = importlib.import_module("runtime.adapters.mt5").MT5Broker()
    price = broker.price("EURUSD")
    assert price == (TICK.bid + TICK.ask) / 2 and asked == ["EURUSD"]
    gate = Gate([MaxOrderNotional(100_000)], contract_size=100_000)
    refusal = gate.check(Order("EURUSD", "buy", 1), TradingState.ACTIVE, [], now=datetime(2024, 1, 1, tzinfo=UTC),
                         prices={"EURUSD": price})
    assert (refusal.rule, refusal.reason) == ("max_order_notional", "notional 108,156.00 > limit 100,000.00 for EURUSD")
