"""One error base, and one rule: a value of the wrong type raises TypeError, a wrong value ValueError."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

import runtime
from runtime import (
    AlertDeliveryError,
    BrokerError,
    DailyLossGuard,
    DrawdownTracker,
    Event,
    MaxDrawdownGuard,
    MinEquityGuard,
    Order,
    PaperBroker,
    PriceDataError,
    Settings,
    SettingsError,
    Signal,
    StoreError,
    TradewardenError,
)
from runtime.backoff import Backoff


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (SettingsError, ValueError),
        (PriceDataError, ValueError),
        (BrokerError, RuntimeError),
        (StoreError, RuntimeError),
        (AlertDeliveryError, RuntimeError),
    ],
)
def test_every_project_error_derives_from_the_base_and_its_builtin(error, builtin):
    assert issubclass(error, TradewardenError)
    assert issubclass(error, builtin)


def test_the_base_is_exported_eagerly_from_runtime():
    assert "TradewardenError" in runtime.__all__
    assert "TradewardenError" in vars(runtime)


def _tracker_observe(value: Any) -> None:
    DrawdownTracker(100.0).observe(value)


def _cash_flow(value: Any) -> None:
    DrawdownTracker(100.0).record_cash_flow(value)


def _priced_broker() -> PaperBroker:
    broker = PaperBroker(1_000.0)
    broker.update_price("EURUSD", 1.1)
    return broker


NAIVE = datetime(2024, 1, 1)

WRONG_TYPES: list[tuple[str, Callable[[], object], str]] = [
    ("tracker start", lambda: DrawdownTracker("100"), r"start_equity must be a finite real number, got '100' \(str\)"),
    ("tracker reading", lambda: _tracker_observe(None), r"equity must be a finite real number, got None \(NoneType\)"),
    ("cash flow", lambda: _cash_flow(True), r"amount must be a finite real number, got True \(bool\)"),
    ("drawdown limit", lambda: MaxDrawdownGuard("20"), r"limit_percent must be a finite real number, got '20' \(str\)"),
    ("drawdown trailing", lambda: MaxDrawdownGuard(20, trailing=1), r"trailing must be true or false, got 1 \(int\)"),
    ("warn level", lambda: MaxDrawdownGuard(20, warn_at="x"), r"warn_at must be a finite real number, got 'x' \(str\)"),
    ("min equity", lambda: MinEquityGuard(None), r"min_equity must be a finite real number, got None \(NoneType\)"),
    ("daily limit", lambda: DailyLossGuard([5]), r"limit_percent must be a finite real number, got \[5\] \(list\)"),
    ("daily zone", lambda: DailyLossGuard(5, timezone=3), r"timezone must be an IANA time zone name, got 3 \(int\)"),
    ("order symbol", lambda: Order(5, "buy", 1), r"symbol must be a non-empty string, got 5 \(int\)"),
    ("order side", lambda: Order("EURUSD", 1, 1), r"side must be one of 'buy', 'sell', got 1 \(int\)"),
    ("order volume", lambda: Order("EURUSD", "buy", "1"), r"volume must be a finite real number, got '1' \(str\)"),
    ("signal symbol", lambda: Signal(None, "buy", 1), r"symbol must be a non-empty string, got None \(NoneType\)"),
    ("signal side", lambda: Signal("EURUSD", None, 1), r"side must be one of 'buy', 'sell', got None \(NoneType\)"),
    ("signal volume", lambda: Signal("EURUSD", "sell", b"1"), r"volume must be a finite real number, got b'1' \(bytes\)"),
    ("backoff min", lambda: Backoff(min_seconds="1"), r"min_seconds must be a finite real number, got '1' \(str\)"),
    ("backoff multiplier", lambda: Backoff(multiplier="2"), r"multiplier must be a finite real number, got '2' \(str\)"),
    ("settings text", lambda: Settings(loop_id=3), r"loop_id must be a non-empty string, got 3 \(int\)"),
    ("settings port", lambda: Settings(statsd_port="81"), r"statsd_port must be a whole number >= 1, got '81' \(str\)"),
    ("settings count", lambda: Settings(max_restarts=1.0), r"max_restarts must be a whole number >= 0, got 1\.0 \(float\)"),
    ("settings switch", lambda: Settings(log_json="no"), r"log_json must be true or false, got 'no' \(str\)"),
    ("settings zone", lambda: Settings(trading_timezone=5), r"trading_timezone must be a non-empty string, got 5 \(int\)"),
    ("settings percent", lambda: Settings(max_drawdown_percent="5"), r"max_drawdown_percent must be a finite real number, got '5' \(str\)"),
    ("paper cash", lambda: PaperBroker("1"), r"starting_cash must be a finite real number, got '1' \(str\)"),
    ("paper contract", lambda: PaperBroker(contract_size=None), r"contract_size must be a finite real number, got None \(NoneType\)"),
    ("paper price symbol", lambda: PaperBroker().update_price(1, 1.0), r"symbol must be a non-empty string, got 1 \(int\)"),
    ("paper price", lambda: PaperBroker().update_price("EURUSD", "a"), r"price must be a finite real number, got 'a' \(str\)"),
    ("paper order", lambda: PaperBroker().submit_order("buy"), r"order must be an Order, got 'buy' \(str\)"),
    ("paper close", lambda: _priced_broker().close_position(7), r"position_id must be a non-empty string, got 7 \(int\)"),
    (
        "event type",
        lambda: Event(3, "main"),
        r"event_type must be one of 'signal_received', .*, 'equity_restored', got 3 \(int\)",
    ),
    ("event loop", lambda: Event("heartbeat", 5), r"loop_id must be a string, got 5 \(int\)"),
    ("event metadata", lambda: Event("heartbeat", "main", [1]), r"metadata must be a mapping, got \[1\]"),
    ("event value", lambda: Event("heartbeat", "main", {"at": object}), r"metadata\['at'\] must be JSON-compatible, got <class 'object'> \(type\)"),
    ("event time", lambda: Event("heartbeat", "main", timestamp="2024"), r"timestamp must be a timezone-aware datetime, got '2024' \(str\)"),
]

WRONG_VALUES: list[tuple[str, Callable[[], object], str]] = [
    ("tracker start", lambda: DrawdownTracker(0), r"start_equity must be > 0, got 0"),
    ("tracker nan", lambda: DrawdownTracker(float("nan")), r"start_equity must be a finite real number, got nan"),
    ("tracker reading", lambda: _tracker_observe(float("inf")), r"equity must be a finite real number, got inf"),
    ("cash flow", lambda: _cash_flow(-100.0), r"cash flow amount -100\.0 would take equity from 100\.0 to 0\.0 \(must stay > 0\)"),
    ("drawdown limit", lambda: MaxDrawdownGuard(0), r"limit_percent must be a percentage in \(0, 100\], got 0"),
    ("warn level", lambda: MaxDrawdownGuard(20, warn_at=1.5), r"warn_at must be a fraction in \(0, 1\) of the limit, got 1\.5"),
    ("min equity", lambda: MinEquityGuard(-1), r"min_equity must be >= 0, got -1\.0"),
    ("daily limit", lambda: DailyLossGuard(101), r"limit_percent must be a percentage in \(0, 100\], got 101"),
    ("daily zone", lambda: DailyLossGuard(5, timezone="Mars/Base"), r"timezone must be an IANA time zone name, got 'Mars/Base'"),
    ("order symbol", lambda: Order(" ", "buy", 1), r"symbol must be a non-empty string, got ' '"),
    ("order side", lambda: Order("EURUSD", "hold", 1), r"side must be one of 'buy', 'sell', got 'hold'"),
    ("order volume", lambda: Order("EURUSD", "buy", -1), r"volume must be > 0, got -1"),
    ("signal symbol", lambda: Signal("", "buy", 1), r"symbol must be a non-empty string, got ''"),
    ("signal side", lambda: Signal("EURUSD", "long", 1), r"side must be one of 'buy', 'sell', got 'long'"),
    ("signal volume", lambda: Signal("EURUSD", "sell", 0), r"volume must be > 0, got 0"),
    ("backoff min", lambda: Backoff(min_seconds=-1), r"min_seconds must be >= 0, got -1"),
    ("backoff multiplier", lambda: Backoff(multiplier=0.5), r"multiplier must be >= 1, got 0\.5"),
    ("backoff order", lambda: Backoff(1, 0.5), r"max_seconds must be >= min_seconds \(1\), got 0\.5"),
    ("settings text", lambda: Settings(loop_id=""), r"loop_id must be a non-empty string, got ''"),
    ("settings port", lambda: Settings(statsd_port=65536), r"statsd_port must be a port number in 1\.\.65535, got 65536"),
    ("settings count", lambda: Settings(max_restarts=-1), r"max_restarts must be a whole number >= 0, got -1"),
    ("settings percent", lambda: Settings(max_drawdown_percent=500), r"max_drawdown_percent must be a percentage in \(0, 100\], got 500"),
    ("settings fraction", lambda: Settings(guard_warn_fraction=2), r"guard_warn_fraction must be a fraction in \(0, 1\), got 2"),
    ("paper cash", lambda: PaperBroker(0), r"starting_cash must be > 0, got 0"),
    ("paper contract", lambda: PaperBroker(contract_size=-1), r"contract_size must be > 0, got -1"),
    ("paper price symbol", lambda: PaperBroker().update_price(" ", 1.0), r"symbol must be a non-empty string, got ' '"),
    ("paper price", lambda: PaperBroker().update_price("EURUSD", 0), r"price must be > 0, got 0 for 'EURUSD'"),
    ("paper close", lambda: _priced_broker().close_position(""), r"position_id must be a non-empty string, got ''"),
    ("event type", lambda: Event("nope", "main"), r"event_type must be one of 'signal_received', .*, got 'nope'"),
    ("event value", lambda: Event("heartbeat", "main", {"x": float("inf")}), r"metadata\['x'\] must be finite, got inf"),
    ("event time", lambda: Event("heartbeat", "main", timestamp=NAIVE), r"timestamp must be a timezone-aware datetime, got datetime\.datetime\(2024, 1, 1, 0, 0\)"),
]


@pytest.mark.parametrize(("build", "message"), [case[1:] for case in WRONG_TYPES], ids=[case[0] for case in WRONG_TYPES])
def test_a_value_of_the_wrong_type_raises_type_error_naming_field_and_value(build, message):
    with pytest.raises(TypeError, match=f"^{message}$") as caught:
        build()
    assert not isinstance(caught.value, ValueError)


@pytest.mark.parametrize(("build", "message"), [case[1:] for case in WRONG_VALUES], ids=[case[0] for case in WRONG_VALUES])
def test_a_wrong_value_raises_value_error_naming_field_and_value(build, message):
    with pytest.raises(ValueError, match=f"^{message}$") as caught:
        build()
    assert not isinstance(caught.value, TypeError)


def test_broker_faults_that_are_not_argument_faults_stay_broker_errors():
    with pytest.raises(BrokerError, match=re.escape("unknown position '7': it is not open")):
        _priced_broker().close_position("7")
    with pytest.raises(BrokerError, match=r"^no price yet for symbol 'GBPUSD'$"):
        PaperBroker().submit_order(Order("GBPUSD", "buy", 1))


def test_an_aware_timestamp_in_any_zone_is_accepted():
    assert Event("heartbeat", "main", timestamp=datetime(2024, 1, 1, tzinfo=UTC)).timestamp.tzinfo is UTC
