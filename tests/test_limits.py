"""Pre-trade limits: each rule refuses exactly past its limit with the numbers, the gate names the
first that refuses, reducing orders pass every rule, and a flood of rate refusals is a runaway."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runtime import Order, Position, Settings, SettingsError, TradingState
from runtime.risk.gate import POSITIONS_UNREAD, TRADING_STATE, Gate, Refusal
from runtime.risk.limits import (
    MaxLeverage,
    MaxOpenPositions,
    MaxOrderNotional,
    MaxOrderVolume,
    MaxSymbolExposure,
    MaxTotalExposure,
    MaxTradesPerDay,
    OrderContext,
    OrderRate,
    RunawayLoop,
)

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def context(*positions: Position, prices=None, equity=10_000.0, sent=(), contract_size=1.0) -> OrderContext:
    return OrderContext(positions, prices or {}, equity, NOW, sent, contract_size)


def long(symbol: str, volume: float, entry: float = 1.0) -> Position:
    return Position(f"p-{symbol}", symbol, "buy", volume, entry)


# --- one rule at a time ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), 0.0, -1.0, float("inf")])
@pytest.mark.parametrize("rule", [MaxOrderNotional(1_000), MaxSymbolExposure(1_000), MaxTotalExposure(1_000), MaxLeverage(1)])
def test_a_price_that_is_not_a_number_above_0_values_nothing_and_every_rule_refuses_naming_it(rule, bad):
    # A broker's NaN or 0 valued a billion lots at nothing, and the order went out.
    refused = rule.check(Order("EURUSD", "buy", 1e9), context(prices={"EURUSD": bad}))
    assert refused == f"the price of EURUSD is {bad!r}, not a number above 0, so its notional cannot be checked"


@pytest.mark.parametrize("entry", [0.0, -2.0])
def test_an_entry_price_that_is_not_a_number_above_0_is_no_price_either(entry):
    refused = MaxOrderNotional(1_000).check(Order("EURUSD", "buy", 1), context(long("EURUSD", 1, entry)))
    assert refused == (
        f"the entry price of the EURUSD held is {entry!r}, not a number above 0, and no price is known, so its "
        "notional cannot be checked"
    )


@pytest.mark.parametrize("equity", [float("nan"), float("inf")])
def test_max_leverage_refuses_while_the_equity_is_not_a_finite_number(equity):
    refused = MaxLeverage(1).check(Order("EURUSD", "buy", 1), context(prices={"EURUSD": 1.0}, equity=equity))
    assert refused == f"equity {equity:,.2f}, so leverage cannot be checked"


def test_max_order_volume_refuses_only_past_the_limit_and_states_the_numbers():
    rule = MaxOrderVolume(100)
    assert rule.check(Order("EURUSD", "buy", 100), context()) is None
    assert rule.check(Order("EURUSD", "buy", 1e9), context()) == "volume 1,000,000,000.00 > limit 100.00 for EURUSD"


def test_max_order_notional_values_volume_at_the_latest_price_times_the_contract_size():
    rule = MaxOrderNotional(50_000)
    assert rule.check(Order("EURUSD", "buy", 0.5), context(prices={"EURUSD": 1.0}, contract_size=100_000)) is None
    assert rule.check(Order("EURUSD", "buy", 0.52), context(prices={"EURUSD": 1.0}, contract_size=100_000)) == (
        "notional 52,000.00 > limit 50,000.00 for EURUSD"
    )


def test_a_notional_exactly_at_the_limit_is_not_refused_for_its_last_binary_digit():
    # 0.1 * 3 is 0.30000000000000004 in binary floating point.
    assert MaxOrderNotional(0.3).check(Order("X", "buy", 0.1), context(prices={"X": 3.0})) is None


def test_without_a_latest_price_notional_falls_back_to_the_entry_price_and_else_refuses():
    rule = MaxOrderNotional(1_000)
    assert rule.check(Order("X", "buy", 10), context(long("X", 5, entry=200.0))) == "notional 2,000.00 > limit 1,000.00 for X"
    assert rule.check(Order("Y", "buy", 1), context()) == "no price known for Y, so its notional cannot be checked"


def test_max_open_positions_refuses_a_new_symbol_past_the_limit_but_not_an_addition():
    rule = MaxOpenPositions(2)
    held = context(long("A", 1), long("B", 1))
    assert rule.check(Order("C", "buy", 1), held) == "open positions 3 > limit 2 with C"
    assert rule.check(Order("A", "buy", 1), held) is None
    assert rule.check(Order("C", "buy", 1), context(long("A", 1))) is None


def test_max_symbol_exposure_judges_the_net_position_after_the_order():
    rule = MaxSymbolExposure(1_000)
    held = context(long("X", 8), prices={"X": 100.0})
    assert rule.check(Order("X", "buy", 2), held) is None
    assert rule.check(Order("X", "buy", 3), held) == "exposure 1,100.00 > limit 1,000.00 for X"
    assert rule.check(Order("X", "sell", 19), held) == "exposure 1,100.00 > limit 1,000.00 for X"  # a reversal


def test_max_total_exposure_adds_every_symbol_held_after_the_order():
    rule = MaxTotalExposure(1_500)
    held = context(long("A", 10, entry=100.0), prices={"B": 50.0})
    assert rule.check(Order("B", "buy", 10), held) is None
    assert rule.check(Order("B", "buy", 11), held) == "total exposure 1,550.00 > limit 1,500.00 after B"


def test_orders_in_doubt_count_into_exposure_the_way_that_leaves_the_most_held():
    # 8 X held; a buy of 2 and a sell of 15 were sent and their outcomes are not known yet.
    doubt = (Order("X", "buy", 2), Order("X", "sell", 15), Order("Y", "buy", 4))
    held = OrderContext((long("X", 8),), {"X": 100.0, "Y": 100.0}, 10_000.0, NOW, in_doubt=doubt)
    assert held.net == {"X": 10.0, "Y": 4.0}  # the buy filled (10), rather than the sell (-7)
    assert held.net_after(Order("X", "buy", 1)) == {"X": 11.0, "Y": 4.0}
    assert held.net_after(Order("X", "sell", 5)) == {"X": -12.0, "Y": 4.0}  # the sell filled: 8 - 15 - 5
    assert MaxSymbolExposure(1_000).check(Order("X", "buy", 1), held) == "exposure 1,100.00 > limit 1,000.00 for X"
    assert MaxTotalExposure(1_450).check(Order("X", "buy", 1), held) == "total exposure 1,500.00 > limit 1,450.00 after X"
    assert MaxOpenPositions(1).check(Order("X", "buy", 1), held) is None  # (no new symbol)
    assert MaxOpenPositions(1).check(Order("Z", "buy", 1), held) == "open positions 3 > limit 1 with Z"
    without = context(long("X", 8), prices={"X": 100.0})
    assert (without.net, without.net_after(Order("X", "sell", 8))) == ({"X": 8.0}, {})


def test_max_leverage_is_total_notional_over_equity_and_refuses_an_unknown_equity():
    rule = MaxLeverage(2)
    assert rule.check(Order("X", "buy", 200), context(prices={"X": 100.0})) is None
    assert rule.check(Order("X", "buy", 250), context(prices={"X": 100.0})) == (
        "leverage 2.50 > limit 2.00 after X (exposure 25,000.00, equity 10,000.00)"
    )
    assert rule.check(Order("X", "buy", 1), context(prices={"X": 1.0}, equity=None)) == (
        "equity unknown, so leverage cannot be checked"
    )
    assert rule.check(Order("X", "buy", 1), context(prices={"X": 1.0}, equity=-5.0)) == (
        "equity -5.00, so leverage cannot be checked"
    )


def test_order_rate_counts_only_the_orders_inside_its_sliding_window():
    rule = OrderRate(2, 1.0, "max_orders_per_second")
    now = NOW.timestamp()
    assert rule.check(Order("X", "buy", 1), context(sent=(now - 1.0, now - 0.5))) is None  # one left the window
    assert rule.check(Order("X", "buy", 1), context(sent=(now - 0.9, now - 0.5))) == "orders 3 in 1s > limit 2 for X"


def test_max_trades_per_day_counts_from_midnight_in_the_trading_zone():
    rule = MaxTradesPerDay(2, "Europe/London")
    before_midnight = datetime(2024, 2, 29, 23, 59, tzinfo=UTC).timestamp()
    today = datetime(2024, 3, 1, 0, 1, tzinfo=UTC).timestamp()
    assert rule.check(Order("X", "buy", 1), context(sent=(before_midnight, today))) is None
    assert rule.check(Order("X", "buy", 1), context(sent=(today, today + 1))) == (
        "trades 3 on 2024-03-01 (Europe/London) > limit 2 for X"
    )


def test_a_trading_day_in_a_zone_east_of_utc_starts_the_evening_before_in_utc():
    rule = MaxTradesPerDay(1, "Asia/Tokyo")
    assert rule.day_start(NOW) == datetime(2024, 2, 29, 15, 0, tzinfo=UTC)  # 00:00 on the 1st in Tokyo


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MaxOrderVolume(0), "limit must be > 0, got 0"),
        (lambda: MaxOpenPositions(0), "limit must be a whole number >= 1, got 0"),
        (lambda: OrderRate(3, -1.0), "window_seconds must be > 0, got -1.0"),
        (lambda: MaxTradesPerDay(5, "Mars/Olympus"), None),
        (lambda: RunawayLoop(0), "refusals must be a whole number >= 1, got 0"),
    ],
)
def test_a_rule_with_a_bad_limit_fails_where_it_is_made(make, message):
    with pytest.raises(ValueError) as raised:
        make()
    if message is not None:
        assert str(raised.value) == message


# --- the gate -------------------------------------------------------------------------------------


def every_rule_gate(runaway: RunawayLoop | None = None) -> Gate:
    return Settings(
        max_order_volume=100, max_order_notional=5_000, max_open_positions=2, max_symbol_exposure=6_000,
        max_total_exposure=8_000, max_leverage=1.0, max_orders_per_second=2, max_orders_per_day=100,
        max_trades_per_day=50,
    ).gate() if runaway is None else Gate(Settings(max_orders_per_second=1).limits(), runaway=runaway)


def test_the_gate_names_the_first_rule_that_refuses():
    gate = every_rule_gate()
    refusal = gate.check(Order("X", "buy", 200), TradingState.ACTIVE, [], now=NOW, prices={"X": 100.0}, equity=10_000.0)
    assert refusal == Refusal("max_order_volume", "volume 200.00 > limit 100.00 for X")


def test_the_trading_state_refuses_before_any_limit_and_is_named():
    refusal = every_rule_gate().check(Order("X", "buy", 1), TradingState.HALTED, [], now=NOW, prices={"X": 1.0})
    assert refusal == Refusal(TRADING_STATE, "trading halted")


def test_an_order_that_only_reduces_exposure_passes_every_rule():
    gate = every_rule_gate()
    held = [long("X", 90, entry=100.0), long("Y", 1), long("Z", 1)]  # already past several limits
    assert gate.check(Order("X", "sell", 90), TradingState.REDUCING, held, now=NOW, equity=1.0) is None
    assert gate.check(Order("X", "sell", 50), TradingState.ACTIVE, held, now=NOW, equity=1.0) is None


def test_unread_positions_refuse_when_limits_are_set_and_not_otherwise():
    assert every_rule_gate().check(Order("X", "buy", 1), TradingState.ACTIVE, None, now=NOW) == Refusal(
        POSITIONS_UNREAD, "the open positions could not be read, so the limits cannot be checked"
    )
    assert Gate().check(Order("X", "buy", 1), TradingState.ACTIVE, None, now=NOW) is None


def test_the_gate_counts_the_orders_sent_and_forgets_them_past_its_longest_window():
    gate = Gate([OrderRate(1, 1.0, "max_orders_per_second")])
    order = Order("X", "buy", 1)
    gate.sent(NOW)
    assert gate.check(order, TradingState.ACTIVE, [], now=NOW) == Refusal(
        "max_orders_per_second", "orders 2 in 1s > limit 1 for X"
    )
    later = NOW + timedelta(seconds=1)
    assert gate.check(order, TradingState.ACTIVE, [], now=later) is None
    gate.sent(later + timedelta(seconds=5))
    assert gate.check(order, TradingState.ACTIVE, [], now=later) == Refusal(
        "max_orders_per_second", "orders 2 in 1s > limit 1 for X"
    )  # a clock set back still sees the later order: the safe side


def test_a_flood_of_rate_refusals_latches_reducing_once_until_released():
    gate = every_rule_gate(RunawayLoop(3, 60.0))
    order = Order("X", "buy", 1)
    gate.sent(NOW)
    found = [gate.check(order, TradingState.ACTIVE, [], now=NOW + timedelta(seconds=i / 10)) for i in range(4)]
    reason = "runaway order loop: 3 orders refused by rate limits within 60s (limit 3)"
    assert [r.runaway if r else None for r in found] == [None, None, reason, None]
    assert found[3] == Refusal(TRADING_STATE, "reducing: only orders that reduce exposure are allowed")
    assert gate.state(TradingState.ACTIVE) is TradingState.REDUCING
    assert gate.state(TradingState.HALTED) is TradingState.HALTED
    assert gate.release() == reason and gate.state(TradingState.ACTIVE) is TradingState.ACTIVE


def test_refusals_spread_wider_than_the_window_are_a_burst_not_a_runaway():
    runaway = RunawayLoop(2, 1.0)
    assert [runaway.refused(at) for at in (0.0, 1.5, 3.0)] == [None, None, None]
    assert runaway.refused(3.5) == "runaway order loop: 2 orders refused by rate limits within 1s (limit 2)"


def test_two_limits_with_one_name_are_refused():
    with pytest.raises(ValueError, match=r"^limits must have distinct names, got \['order_rate', 'order_rate'\]$"):
        Gate([OrderRate(1, 1.0), OrderRate(5, 60.0)])


# --- settings -------------------------------------------------------------------------------------


def test_every_limit_is_off_by_default():
    settings = Settings.load(environ={})
    assert settings.limits() == [] and settings.gate().needs_positions is False


def test_limits_come_from_the_file_and_the_environment(tmp_path):
    config = tmp_path / "t.toml"
    config.write_text("max_order_notional = 50000\nmax_trades_per_day = 20\ntrading_timezone = 'Europe/London'\n")
    settings = Settings.load(config, environ={"MAX_ORDERS_PER_SECOND": "5", "RUNAWAY_REFUSALS": "10"})
    assert settings.limits() == [
        MaxOrderNotional(50_000), OrderRate(5, 1.0, "max_orders_per_second"), MaxTradesPerDay(20, "Europe/London")
    ]
    assert settings.runaway_refusals == 10 and settings.runaway_window_seconds == 60.0


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("MAX_ORDER_NOTIONAL", "-5", "MAX_ORDER_NOTIONAL='-5': max_order_notional must be > 0, got -5.0"),
        ("MAX_OPEN_POSITIONS", "0", "MAX_OPEN_POSITIONS='0': max_open_positions must be a whole number >= 1, got 0"),
        ("MAX_ORDERS_PER_DAY", "lots", "MAX_ORDERS_PER_DAY='lots': expected a whole number or off (also none, or empty)"),
        ("RUNAWAY_WINDOW_SECONDS", "0", "RUNAWAY_WINDOW_SECONDS='0': runaway_window_seconds must be > 0, got 0.0"),
        ("CONTRACT_SIZE", "nan", "CONTRACT_SIZE='nan': contract_size must be a finite real number, got nan"),
    ],
)
def test_a_bad_limit_fails_at_load_naming_the_variable_and_the_value(variable, raw, message):
    with pytest.raises(SettingsError) as raised:
        Settings.load(environ={variable: raw})
    assert str(raised.value) == message


# --- the README's property test -------------------------------------------------------------------


def test_the_readmes_limit_property_test_runs_and_passes():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    [block] = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "limit_settings(" in b]
    namespace: dict = {}
    exec(compile(block, "<README: property-testing limits>", "exec"), namespace)  # no file: Hypothesis must not read README.md for it
    namespace["test_my_limits_never_let_out_an_order_over_the_notional_limit"]()
