"""The guard rules: each fires exactly when its condition holds; the old system's worst bug stays dead."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    daily_loss_guards,
    day_rollovers,
    equities,
    equity_curves,
    guard_settings,
    guards,
    limit_percents,
    max_drawdown_guards,
    min_equity_guards,
    warn_fractions,
)

from runtime import (
    DailyLossGuard,
    DrawdownTracker,
    Level,
    MaxDrawdownGuard,
    MinEquityGuard,
    RiskMonitor,
    TradingState,
    enforce_max_drawdown,
    min_equity_guard,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


@st.composite
def readings(draw):
    """(equity, peak, start, day_start) as a tracker would give them: peak >= equity and start."""
    equity = draw(equities())
    start = draw(equities())
    day_start = draw(equities())
    peak = max(draw(equities()), equity, start)
    return equity, peak, start, day_start


# --- each rule fires iff its condition holds -----------------------------------------------------


def reaches(base: float, equity: float, fraction: Fraction) -> bool | None:
    """Whether the exact loss (base - equity) / base reaches ``fraction``: True at or above it,
    False clearly below it, None within floating-point rounding of it (either answer is right)."""
    exact = (Fraction(base) - Fraction(equity)) / Fraction(base)
    if exact >= fraction:
        return True
    if exact < fraction * (1 - Fraction(1, 10**11)):
        return False
    return None


def agrees(fired: bool, expected: bool | None) -> bool:
    return expected is None or fired is expected


def limit_of(guard) -> Fraction:
    return Fraction(guard.limit_percent) / 100


@given(guard=max_drawdown_guards(trailing=True), reading=readings())
def test_trailing_drawdown_guard_breaches_iff_the_loss_from_peak_reaches_the_limit(guard, reading):
    equity, peak, start, day_start = reading
    condition = reaches(peak, equity, limit_of(guard))
    assert agrees(guard.level(equity, peak, start, day_start) is Level.BREACH, condition)
    verdict = guard.verdict(equity, peak, start, day_start)
    assert agrees(verdict is not None and verdict.level is Level.BREACH, condition)


@given(guard=max_drawdown_guards(trailing=False), reading=readings())
def test_static_drawdown_guard_breaches_iff_the_loss_from_start_reaches_the_limit(guard, reading):
    equity, peak, start, day_start = reading
    condition = reaches(start, equity, limit_of(guard))
    assert agrees(guard.level(equity, peak, start, day_start) is Level.BREACH, condition)


@given(guard=guards(), reading=readings())
def test_a_reading_above_a_guards_clear_line_is_always_ok_for_it(guard, reading):
    equity, peak, start, day_start = reading
    factor, floor = guard.clear_line(start, day_start)
    if equity > floor and equity > peak * factor:
        assert guard.level(equity, peak, start, day_start) is Level.OK


@pytest.mark.parametrize(("peak", "equity"), [(101.05, 80.84), (12_345.65, 9_876.52), (250.5, 200.4)])
def test_a_loss_of_exactly_the_limit_in_decimal_fires_despite_binary_rounding(peak, equity):
    assert (peak - equity) / peak < 0.2  # rounding puts it a hair below the limit
    assert MaxDrawdownGuard(20.0).level(equity, peak, peak, peak) is Level.BREACH
    assert DailyLossGuard(20.0).level(equity, peak, peak, peak) is Level.BREACH


@given(guard=min_equity_guards(), reading=readings())
def test_min_equity_guard_breaches_iff_equity_is_below_the_minimum(guard, reading):
    equity, peak, start, day_start = reading
    assert (guard.level(equity, peak, start, day_start) is Level.BREACH) is (equity < guard.min_equity)


@given(guard=daily_loss_guards(), reading=readings())
def test_daily_loss_guard_breaches_iff_the_loss_from_day_start_reaches_the_limit(guard, reading):
    equity, peak, start, day_start = reading
    condition = reaches(day_start, equity, limit_of(guard))
    assert agrees(guard.level(equity, peak, start, day_start) is Level.BREACH, condition)


@given(guard=guards(), reading=readings())
def test_a_guard_warns_only_when_it_has_a_warning_level_and_between_warning_and_limit(guard, reading):
    equity, peak, start, day_start = reading
    level = guard.level(equity, peak, start, day_start)
    if guard.warn_at is None:
        assert level is not Level.WARN
    if isinstance(guard, MinEquityGuard):
        warn_condition = guard.warn_at is not None and equity < guard.min_equity / guard.warn_at
        breach_condition = equity < guard.min_equity
    else:
        base = {"max_drawdown": peak, "daily_loss": day_start}[guard.name]
        if isinstance(guard, MaxDrawdownGuard) and not guard.trailing:
            base = start
        breach_condition = reaches(base, equity, limit_of(guard))
        warn_condition = guard.warn_at is not None and reaches(base, equity, limit_of(guard) * Fraction(guard.warn_at))
        if breach_condition is None or warn_condition is None:
            return  # within rounding of a threshold: either side is right
    expected = Level.BREACH if breach_condition else Level.WARN if warn_condition else Level.OK
    assert level is expected


@given(guard=guards(), reading=readings())
def test_a_verdict_is_none_exactly_when_the_level_is_ok_and_states_its_numbers(guard, reading):
    level = guard.level(*reading)
    verdict = guard.verdict(*reading)
    if level is Level.OK:
        assert verdict is None
    else:
        assert verdict is not None
        assert verdict.level is level
        assert verdict.guard == guard.name
        assert verdict.block_counter == guard.block_counter
        assert f"{reading[0]:.2f}" in verdict.reason
        assert verdict.reason.startswith("warning: ") is (level is Level.WARN)


@pytest.mark.parametrize(
    ("equity", "expected"),
    [(80.0, Level.BREACH), (79.0, Level.BREACH), (80.01, Level.OK), (100.0, Level.OK)],
)
def test_a_20_percent_trailing_limit_fires_at_exactly_80_from_a_peak_of_100(equity, expected):
    assert MaxDrawdownGuard(20.0).level(equity, 100.0, 50.0, 100.0) is expected


def test_a_static_limit_ignores_the_peak_and_measures_from_the_start():
    guard = MaxDrawdownGuard(10.0, trailing=False)
    assert guard.level(95.0, 200.0, 100.0, 100.0) is Level.OK
    assert guard.level(90.0, 200.0, 100.0, 100.0) is Level.BREACH
    verdict = guard.verdict(90.0, 200.0, 100.0, 100.0)
    assert verdict is not None and "floor 90.00" in verdict.reason


def test_min_equity_is_strictly_below_so_equity_at_the_minimum_is_fine():
    guard = MinEquityGuard(500.0)
    assert guard.level(500.0, 1000.0, 1000.0, 1000.0) is Level.OK
    assert guard.level(499.99, 1000.0, 1000.0, 1000.0) is Level.BREACH


def test_a_min_equity_warning_starts_at_minimum_over_warn_at():
    guard = MinEquityGuard(500.0, warn_at=0.5)
    assert guard.level(1000.0, 2000.0, 2000.0, 2000.0) is Level.OK
    assert guard.level(999.0, 2000.0, 2000.0, 2000.0) is Level.WARN
    verdict = guard.verdict(999.0, 2000.0, 2000.0, 2000.0)
    assert verdict is not None and "warning level 1000.00" in verdict.reason


def test_a_daily_loss_of_a_day_that_started_at_or_below_zero_never_fires():
    guard = DailyLossGuard(5.0)
    assert guard.level(-100.0, 100.0, 100.0, 0.0) is Level.OK
    assert guard.level(-100.0, 100.0, 100.0, -10.0) is Level.OK


def test_min_equity_guard_function_returns_a_breach_below_the_minimum_and_none_above():
    verdict = min_equity_guard(400.0, 500.0)
    assert verdict is not None and verdict.level is Level.BREACH and "400.00 < minimum 500.00" in verdict.reason
    assert min_equity_guard(600.0, 500.0) is None


def test_min_equity_guard_function_refuses_nan_equity_naming_the_value():
    with pytest.raises(ValueError, match="equity.*nan"):
        min_equity_guard(math.nan, 500.0)


def test_trading_state_gauges_are_0_1_2():
    assert [s.gauge for s in TradingState] == [0, 1, 2]


# --- bad settings are refused naming the field and the value -----------------------------------


@pytest.mark.parametrize("limit", [-5.0, 0.0, 100.5, math.nan, math.inf])
def test_a_drawdown_limit_outside_0_to_100_is_refused_naming_field_and_value(limit):
    with pytest.raises(ValueError, match=rf"limit_percent.*{limit!r}"):
        MaxDrawdownGuard(limit)


@pytest.mark.parametrize("limit", ["20", None, True])
def test_a_drawdown_limit_that_is_not_a_number_is_refused_as_a_type_error(limit):
    with pytest.raises(TypeError, match="limit_percent"):
        MaxDrawdownGuard(limit)


def test_a_negative_minimum_equity_is_refused_naming_the_value():
    with pytest.raises(ValueError, match=r"min_equity must be >= 0, got -1"):
        MinEquityGuard(-1)


def test_a_nan_minimum_equity_is_refused():
    with pytest.raises(ValueError, match="min_equity.*nan"):
        MinEquityGuard(math.nan)


@pytest.mark.parametrize("warn", [0.0, 1.0, 1.5, -0.2, math.nan])
def test_a_warning_level_outside_0_to_1_is_refused_naming_the_value(warn):
    with pytest.raises(ValueError, match=rf"warn_at.*{warn!r}"):
        MaxDrawdownGuard(20.0, warn_at=warn)


def test_a_negative_daily_loss_limit_is_refused():
    with pytest.raises(ValueError, match=r"limit_percent.*-3"):
        DailyLossGuard(-3)


def test_an_unknown_time_zone_is_refused_naming_it():
    with pytest.raises(ValueError, match="Mars/Olympus"):
        DailyLossGuard(5.0, timezone="Mars/Olympus")


def test_trailing_must_be_a_bool():
    with pytest.raises(TypeError, match="trailing"):
        MaxDrawdownGuard(20.0, trailing="no")


@given(limit=limit_percents(), warn=warn_fractions())
def test_every_drawn_limit_and_warning_is_accepted(limit, warn):
    assert 0 < limit <= 100 and 0 < warn < 1
    MaxDrawdownGuard(limit, warn_at=warn)
    DailyLossGuard(limit, warn_at=warn)


# --- the old system's worst bug: a guard that could never fire ------------------------------------
# It rebuilt the peak from the current equity on every check, so the drawdown was always 0.

FALLING = [10_000.0 - 100.0 * i for i in range(60)]  # 0% down to 59% down from 10_000


def first_breach(states) -> int | None:
    return next((i for i, state in enumerate(states) if state.cap_triggered), None)


def test_many_checks_on_one_tracker_fire_the_drawdown_guard_on_the_reading_that_reaches_the_limit():
    tracker = DrawdownTracker(FALLING[0])
    states = [enforce_max_drawdown(tracker, equity, 20.0) for equity in FALLING]
    assert first_breach(states) == 20  # 8_000 is exactly 20% below 10_000
    assert all(state.cap_triggered for state in states[20:])
    assert states[20].trading_state is TradingState.HALTED
    assert "max drawdown 20.00%" in states[20].reason
    assert states[-1].peak_equity == 10_000.0
    assert states[-1].current_drawdown == pytest.approx(0.59)


def test_a_fresh_tracker_per_check_the_old_bug_never_fires_so_the_test_above_can_catch_it():
    states = [enforce_max_drawdown(DrawdownTracker(equity), equity, 20.0) for equity in FALLING]
    assert first_breach(states) is None
    assert all(state.current_drawdown == 0.0 for state in states)


def test_many_checks_on_one_risk_monitor_halt_trading_on_the_reading_that_reaches_the_limit():
    monitor = RiskMonitor(FALLING[0], [MaxDrawdownGuard(20.0)])
    assessments = [monitor.observe(equity, T0 + timedelta(seconds=i)) for i, equity in enumerate(FALLING)]
    halting = [i for i, a in enumerate(assessments) if a is not None and a.newly_halted]
    assert halting == [20]
    assert monitor.trading_state is TradingState.HALTED
    assert monitor.block_counts == {"drawdown_block_total": 1}


def test_a_fresh_risk_monitor_per_check_never_halts():
    assessments = [RiskMonitor(e, [MaxDrawdownGuard(20.0)]).observe(e, T0) for e in FALLING]
    assert all(a is None for a in assessments)


@given(curve=equity_curves(min_size=2, max_size=60), limit=limit_percents(min_value=1.0))
def test_repeated_checks_on_one_tracker_fire_iff_the_curve_has_reached_the_limit(curve, limit):
    tracker = DrawdownTracker(curve[0])
    peak = curve[0]
    for equity in curve:
        state = enforce_max_drawdown(tracker, equity, limit)
        peak = max(peak, equity)
        assert agrees(state.cap_triggered, reaches(peak, equity, Fraction(limit) / 100))
        assert state.peak_equity == peak


# --- the usage example of runtime.testing holds -------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(config=guard_settings(), curve=equity_curves(), moments=day_rollovers("Europe/London"))
def test_the_usage_example_in_runtime_testing_holds(config, curve, moments):
    monitor = RiskMonitor(curve[0], config.guards())
    for index, equity in enumerate(curve):
        monitor.observe(equity, moments[min(index, len(moments) - 1)])
        if equity < config.min_equity:
            assert monitor.trading_state is TradingState.HALTED
