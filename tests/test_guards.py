"""The guard rules: each fires exactly when its condition holds; the old system's worst bug stays dead."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

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
    GuardState,
    Level,
    MaxDrawdownGuard,
    MinEquityGuard,
    RiskMonitor,
    TradingState,
    enforce_max_drawdown,
    min_equity_guard,
)
from runtime.risk.guards import LIMIT_TOLERANCE, Verdict

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


def test_a_reading_within_a_cent_below_the_minimum_says_so_in_two_decimals_without_float_noise():
    guard = MinEquityGuard(9_500.0, warn_at=0.5)
    below = guard.verdict(9_499.999, 10_000.0, 10_000.0, 10_000.0)
    assert below is not None and below.reason == "equity below minimum 9500.00 by less than 0.01"
    assert guard.verdict(9_400.0, 10_000.0, 10_000.0, 10_000.0).reason == "equity 9400.00 < minimum 9500.00"
    assert guard.verdict(9_499.99, 10_000.0, 10_000.0, 10_000.0).reason == "equity 9499.99 < minimum 9500.00"
    # A liquidation filled where the minimum was crossed lands a float's hair below it.
    crossed = MinEquityGuard(9_900.0).verdict(9_899.999999999998, 10_000.0, 10_000.0, 10_000.0)
    assert crossed is not None and crossed.reason == "equity below minimum 9900.00 by less than 0.01"
    closest = MinEquityGuard(500.0).verdict(math.nextafter(500.0, 0.0), 1_000.0, 1_000.0, 1_000.0)
    assert closest is not None and closest.reason == "equity below minimum 500.00 by less than 0.01"
    warned = MinEquityGuard(100.0, warn_at=0.5).verdict(199.9999, 1_000.0, 1_000.0, 1_000.0)
    assert warned is not None
    assert warned.reason == "warning: equity below warning level 200.00 by less than 0.01 (minimum 100.00)"


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
    with pytest.raises(ValueError, match=r"^equity must be a finite real number, got nan$"):
        min_equity_guard(math.nan, 500.0)


def test_trading_state_gauges_are_0_1_2():
    assert [s.gauge for s in TradingState] == [0, 1, 2]


# --- bad settings are refused naming the field and the value -----------------------------------


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        (-5.0, "limit_percent must be a percentage in (0, 100], got -5.0"),
        (0.0, "limit_percent must be a percentage in (0, 100], got 0.0"),
        (100.5, "limit_percent must be a percentage in (0, 100], got 100.5"),
        (math.nan, "limit_percent must be a finite real number, got nan"),
        (math.inf, "limit_percent must be a finite real number, got inf"),
    ],
)
def test_a_drawdown_limit_outside_0_to_100_is_refused_naming_field_and_value(limit, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        MaxDrawdownGuard(limit)


@pytest.mark.parametrize("limit", ["20", None, True])
def test_a_drawdown_limit_that_is_not_a_number_is_refused_as_a_type_error(limit):
    message = f"limit_percent must be a finite real number, got {limit!r} ({type(limit).__name__})"
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        MaxDrawdownGuard(limit)


def test_a_negative_minimum_equity_is_refused_naming_the_value():
    with pytest.raises(ValueError, match=r"^min_equity must be >= 0, got -1\.0$"):
        MinEquityGuard(-1)


def test_a_nan_minimum_equity_is_refused():
    with pytest.raises(ValueError, match=r"^min_equity must be a finite real number, got nan$"):
        MinEquityGuard(math.nan)


@pytest.mark.parametrize("warn", [0.0, 1.0, 1.5, -0.2])
def test_a_warning_level_outside_0_to_1_is_refused_naming_the_value(warn):
    message = f"warn_at must be a fraction in (0, 1) of the limit, got {warn!r}"
    for build in (MaxDrawdownGuard, DailyLossGuard):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            build(20.0, warn_at=warn)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        MinEquityGuard(20.0, warn_at=warn)


def test_a_nan_warning_level_is_refused_as_not_finite():
    with pytest.raises(ValueError, match=r"^warn_at must be a finite real number, got nan$"):
        MaxDrawdownGuard(20.0, warn_at=math.nan)


@pytest.mark.parametrize("warn", [1e-300, 0.5, 0.9999999999999999])
def test_a_warning_level_just_inside_0_to_1_is_accepted(warn):
    assert MaxDrawdownGuard(20.0, warn_at=warn).warn_at == warn
    assert MinEquityGuard(20.0, warn_at=warn).warn_at == warn


def test_a_negative_daily_loss_limit_is_refused():
    with pytest.raises(ValueError, match=r"^limit_percent must be a percentage in \(0, 100\], got -3$"):
        DailyLossGuard(-3)


def test_an_unknown_time_zone_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"^timezone must be an IANA time zone name, got 'Mars/Olympus'$"):
        DailyLossGuard(5.0, timezone="Mars/Olympus")


def test_trailing_must_be_a_bool():
    with pytest.raises(TypeError, match=r"^trailing must be true or false, got 'no' \(str\)$"):
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


# --- exact verdicts, clear lines and both sides of every bound -----------------------------------


def test_a_trailing_breach_verdict_has_every_field():
    assert MaxDrawdownGuard(20.0).verdict(80.0, 100.0, 50.0, 70.0) == Verdict(
        "max_drawdown",
        Level.BREACH,
        "max drawdown 20.00% >= limit 20.00% (peak 100.00, equity 80.00)",
        "drawdown_block_total",
    )


def test_a_trailing_warning_verdict_has_every_field_and_starts_at_the_warning_level():
    guard = MaxDrawdownGuard(20.0, warn_at=0.5)
    assert guard.verdict(90.0, 100.0, 50.0, 70.0) == Verdict(
        "max_drawdown",
        Level.WARN,
        "warning: max drawdown 10.00% >= warning 10.00% (limit 20.00%, peak 100.00, equity 90.00)",
        "drawdown_block_total",
    )
    assert guard.level(90.01, 100.0, 50.0, 70.0) is Level.OK
    assert guard.verdict(90.01, 100.0, 50.0, 70.0) is None
    assert guard.level(80.01, 100.0, 50.0, 70.0) is Level.WARN
    assert guard.level(80.0, 100.0, 50.0, 70.0) is Level.BREACH


def test_a_static_breach_verdict_states_start_floor_and_equity():
    assert MaxDrawdownGuard(10.0, trailing=False).verdict(90.0, 200.0, 100.0, 100.0) == Verdict(
        "max_drawdown",
        Level.BREACH,
        "static drawdown 10.00% >= limit 10.00% (start 100.00, floor 90.00, equity 90.00)",
        "drawdown_block_total",
    )
    assert MaxDrawdownGuard(10.0, trailing=False).level(90.01, 90.01, 100.0, 100.0) is Level.OK


def test_a_min_equity_breach_and_warning_have_every_field():
    guard = MinEquityGuard(500.0, warn_at=0.5)
    assert guard.verdict(400.0, 900.0, 900.0, 900.0) == Verdict(
        "min_equity", Level.BREACH, "equity 400.00 < minimum 500.00", "min_equity_block_total"
    )
    assert guard.verdict(999.0, 2000.0, 2000.0, 2000.0) == Verdict(
        "min_equity",
        Level.WARN,
        "warning: equity 999.00 < warning level 1000.00 (minimum 500.00)",
        "min_equity_block_total",
    )
    assert guard.level(500.0, 2000.0, 2000.0, 2000.0) is Level.WARN
    assert guard.level(1000.0, 2000.0, 2000.0, 2000.0) is Level.OK
    assert MinEquityGuard(500.0).level(499.0, 2000.0, 2000.0, 2000.0) is Level.BREACH
    assert MinEquityGuard(500.0).level(600.0, 2000.0, 2000.0, 2000.0) is Level.OK


def test_a_min_equity_of_zero_is_accepted_and_breaches_only_below_zero():
    guard = MinEquityGuard(0)
    assert guard.min_equity == 0.0 and type(guard.min_equity) is float
    assert guard.level(0.0, 1.0, 1.0, 1.0) is Level.OK
    assert guard.level(-0.01, 1.0, 1.0, 1.0) is Level.BREACH


def test_a_daily_loss_verdict_has_every_field_on_both_sides_of_the_limit():
    guard = DailyLossGuard(5.0)
    assert guard.verdict(950.0, 2000.0, 2000.0, 1000.0) == Verdict(
        "daily_loss",
        Level.BREACH,
        "daily loss 5.00% >= limit 5.00% (start of day 1000.00, equity 950.00)",
        "daily_loss_block_total",
    )
    assert guard.verdict(950.01, 2000.0, 2000.0, 1000.0) is None
    warned = DailyLossGuard(5.0, warn_at=0.5).verdict(975.0, 2000.0, 2000.0, 1000.0)
    assert warned == Verdict(
        "daily_loss",
        Level.WARN,
        "warning: daily loss 2.50% >= warning 2.50% (limit 5.00%, start of day 1000.00, equity 975.00)",
        "daily_loss_block_total",
    )
    # measured from the day's start, not the peak or the start
    assert guard.level(950.0, 950.0, 950.0, 1000.0) is Level.BREACH
    assert guard.level(950.0, 2000.0, 2000.0, 950.0) is Level.OK


def test_a_daily_loss_from_a_day_that_started_just_above_zero_still_fires():
    assert DailyLossGuard(5.0).level(0.0, 1.0, 1.0, 1e-300) is Level.BREACH


def test_the_limit_tolerance_is_one_part_in_a_trillion_on_each_side():
    assert LIMIT_TOLERANCE == 1e-12
    guard = MaxDrawdownGuard(20.0)
    just_inside = 1.0 - 0.2 * (1 - 0.5e-12)  # short of the limit by half the tolerance: fires
    just_outside = 1.0 - 0.2 * (1 - 2e-12)  # short by twice the tolerance: does not
    assert guard.level(just_inside, 1.0, 1.0, 1.0) is Level.BREACH
    assert guard.level(just_outside, 1.0, 1.0, 1.0) is Level.OK
    daily = DailyLossGuard(20.0)
    assert daily.level(just_inside, 1.0, 1.0, 1.0) is Level.BREACH
    assert daily.level(just_outside, 1.0, 1.0, 1.0) is Level.OK


def test_the_clear_lines_are_the_first_alarm_with_a_cautious_slack():
    assert MaxDrawdownGuard(20.0).clear_line(100.0, 50.0) == (1.0 - 0.2 + 1e-9, -math.inf)
    assert MaxDrawdownGuard(20.0, warn_at=0.5).clear_line(100.0, 50.0) == (1.0 - 0.1 + 1e-9, -math.inf)
    assert MaxDrawdownGuard(20.0, trailing=False).clear_line(100.0, 50.0) == (-math.inf, 100.0 * (1.0 - 0.2 + 1e-9))
    assert MinEquityGuard(500.0).clear_line(100.0, 50.0) == (-math.inf, 500.0)
    assert MinEquityGuard(500.0, warn_at=0.5).clear_line(100.0, 50.0) == (-math.inf, 1000.0)
    assert DailyLossGuard(5.0).clear_line(100.0, 1000.0) == (-math.inf, 1000.0 * (1.0 - 0.05 + 1e-9))
    assert DailyLossGuard(5.0, warn_at=0.5).clear_line(100.0, 1000.0) == (-math.inf, 1000.0 * (1.0 - 0.025 + 1e-9))
    assert DailyLossGuard(5.0).clear_line(100.0, 0.0) == (-math.inf, -math.inf)
    assert DailyLossGuard(5.0).clear_line(100.0, -5.0) == (-math.inf, -math.inf)


def test_a_guards_defaults_and_names():
    drawdown, minimum, daily = MaxDrawdownGuard(20), MinEquityGuard(5), DailyLossGuard(3)
    assert (drawdown.limit_percent, drawdown.trailing, drawdown.warn_at) == (20.0, True, None)
    assert type(drawdown.limit_percent) is float
    assert (drawdown.name, drawdown.block_counter) == ("max_drawdown", "drawdown_block_total")
    assert (minimum.min_equity, minimum.warn_at) == (5.0, None)
    assert (minimum.name, minimum.block_counter) == ("min_equity", "min_equity_block_total")
    assert (daily.limit_percent, daily.timezone, daily.warn_at) == (3.0, "UTC", None)
    assert (daily.name, daily.block_counter) == ("daily_loss", "daily_loss_block_total")
    assert daily.zone == ZoneInfo("UTC")
    assert DailyLossGuard(3, timezone="Europe/London").zone == ZoneInfo("Europe/London")


def test_the_levels_and_states_are_ordered_and_named_as_documented():
    assert (int(Level.OK), int(Level.WARN), int(Level.BREACH)) == (0, 1, 2)
    assert [s.value for s in TradingState] == ["active", "reducing", "halted"]
    assert (TradingState.ACTIVE.gauge, TradingState.REDUCING.gauge, TradingState.HALTED.gauge) == (0, 1, 2)


def test_min_equity_guard_function_returns_the_whole_verdict():
    assert min_equity_guard(400, 500.0) == Verdict(
        "min_equity", Level.BREACH, "equity 400.00 < minimum 500.00", "min_equity_block_total"
    )
    assert min_equity_guard(500.0, 500.0) is None


def test_enforce_max_drawdown_reports_every_field_of_the_guard_state():
    tracker = DrawdownTracker(1000.0)
    calm = enforce_max_drawdown(tracker, 900.0, 20.0, at=T0)
    assert calm == GuardState(
        current_equity=900.0,
        entry_equity=1000.0,
        peak_equity=1000.0,
        current_drawdown=0.1,
        cap_triggered=False,
        reason=None,
        last_check_time=T0,
        trading_state=TradingState.ACTIVE,
        max_drawdown=0.1,
        day_start_equity=None,
    )
    breached = enforce_max_drawdown(tracker, 800.0, 20.0)
    assert breached == GuardState(
        current_equity=800.0,
        entry_equity=1000.0,
        peak_equity=1000.0,
        current_drawdown=0.2,
        cap_triggered=True,
        reason="max drawdown 20.00% >= limit 20.00% (peak 1000.00, equity 800.00)",
        last_check_time=None,
        trading_state=TradingState.HALTED,
        max_drawdown=0.2,
        day_start_equity=None,
    )


def test_enforce_max_drawdown_reports_no_reason_for_a_reading_past_only_the_limit_of_a_warning():
    # enforce_max_drawdown has no warning level, so a loss short of the limit is simply ACTIVE.
    state = enforce_max_drawdown(DrawdownTracker(1000.0), 801.0, 20.0)
    assert (state.cap_triggered, state.reason, state.trading_state) == (False, None, TradingState.ACTIVE)


@pytest.mark.parametrize(
    ("field", "value", "error", "message"),
    [
        ("current_equity", math.nan, ValueError, "current_equity must be a finite real number, got nan"),
        ("peak_equity", "1", TypeError, "peak_equity must be a finite real number, got '1' (str)"),
        ("max_drawdown", math.inf, ValueError, "max_drawdown must be a finite real number, got inf"),
        ("day_start_equity", math.nan, ValueError, "day_start_equity must be a finite real number, got nan"),
    ],
)
def test_a_guard_state_names_a_bad_field(field, value, error, message):
    fields = dict(
        current_equity=1.0, entry_equity=1.0, peak_equity=1.0, current_drawdown=0.0, cap_triggered=False,
        reason=None, last_check_time=None,
    )
    fields[field] = value
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        GuardState(**fields)


def test_a_guard_state_takes_no_day_start_or_a_finite_one():
    base = dict(
        current_equity=1.0, entry_equity=1.0, peak_equity=1.0, current_drawdown=0.0, cap_triggered=False,
        reason=None, last_check_time=None,
    )
    assert GuardState(**base).day_start_equity is None
    assert GuardState(**base, day_start_equity=2.0).day_start_equity == 2.0


def test_a_daily_clear_line_for_a_day_that_started_below_one_is_still_a_line():
    assert DailyLossGuard(5.0).clear_line(100.0, 0.5) == (-math.inf, 0.5 * (1.0 - 0.05 + 1e-9))
    assert DailyLossGuard(5.0).clear_line(100.0, 1.0) == (-math.inf, 1.0 - 0.05 + 1e-9)


def test_equity_exactly_at_the_minimum_with_a_warning_level_is_a_warning_not_a_breach():
    assert MinEquityGuard(500.0, warn_at=0.5).verdict(500.0, 900.0, 900.0, 900.0) == Verdict(
        "min_equity",
        Level.WARN,
        "warning: equity 500.00 < warning level 1000.00 (minimum 500.00)",
        "min_equity_block_total",
    )
