"""RiskMonitor: batches, bad readings, the latched state, the trading day, restarts."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    bad_readings,
    cash_flows,
    day_rollovers,
    equity_curves,
    guard_sets,
    next_midnight,
    timezones,
)

from runtime import (
    DailyLossGuard,
    GuardRecord,
    Level,
    MaxDrawdownGuard,
    MinEquityGuard,
    RiskMonitor,
    TradingState,
)
from runtime.risk.monitor import Rebaseline, ResumeRefused

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- batches ------------------------------------------------------------------------------------


@settings(max_examples=75, deadline=None)
@given(data=st.data(), guards=guard_sets(), curve=equity_curves(min_size=2, max_size=40))
def test_observe_many_gives_the_same_assessments_and_record_as_one_at_a_time(data, guards, curve):
    cuts = sorted(data.draw(st.sets(st.integers(0, len(curve)), max_size=5), label="cuts"))
    bounds = [0, *cuts, len(curve)]
    batches = [curve[low:high] for low, high in zip(bounds, bounds[1:])]
    zone = guards[-1].timezone if isinstance(guards[-1], DailyLossGuard) else "UTC"
    size = max(2, len(batches))
    moments = data.draw(day_rollovers(zone, min_size=size, max_size=size), label="moments")

    single, batched = RiskMonitor(curve[0], guards), RiskMonitor(curve[0], guards)
    one_at_a_time, in_batches = [], []
    for batch, moment in zip(batches, moments):
        for equity in batch:
            found = single.observe(equity, moment)
            if found is not None:
                one_at_a_time.append(found)
        in_batches.extend(batched.observe_many(batch, moment))
        assert batched.record() == single.record()
    assert in_batches == one_at_a_time


@settings(max_examples=75)
@given(data=st.data(), guards=guard_sets(), curve=equity_curves(max_size=20), bad=bad_readings())
def test_a_bad_value_in_a_batch_leaves_the_monitor_unchanged_and_names_index_and_value(data, guards, curve, bad):
    monitor = RiskMonitor(curve[0], guards)
    monitor.observe_many(curve[: len(curve) // 2], T0)
    before = monitor.record()
    index = data.draw(st.integers(0, len(curve)), label="index")
    with pytest.raises((TypeError, ValueError)) as raised:
        monitor.observe_many([*curve[:index], bad, *curve[index:]], at(60))
    assert f"equities[{index}]" in str(raised.value)
    assert repr(bad) in str(raised.value)
    assert monitor.record() == before


def test_nan_equity_is_refused_and_names_the_value_and_changes_nothing():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    monitor.observe(900.0, T0)
    before = monitor.record()
    with pytest.raises(ValueError, match="equity.*nan"):
        monitor.observe(math.nan, at(1))
    assert monitor.record() == before


def test_a_reading_without_a_time_zone_is_refused():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    with pytest.raises(ValueError, match="timezone-aware"):
        monitor.observe(900.0, datetime(2024, 3, 1, 12))
    with pytest.raises(ValueError, match="timezone-aware"):
        monitor.observe_many([900.0], datetime(2024, 3, 1, 12))
    assert monitor.record().last_check_time is None


# --- the trading state --------------------------------------------------------------------------


def test_a_breach_latches_halted_until_resume_even_when_equity_recovers():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    first = monitor.observe(790.0, at(0))
    assert first is not None and first.newly_halted and first.previous_state is TradingState.ACTIVE
    assert [v.guard for v in first.breaches] == ["max_drawdown"]
    assert monitor.observe(1000.0, at(1)) is None
    assert monitor.trading_state is TradingState.HALTED
    again = monitor.observe(700.0, at(2))
    assert again is not None and again.breaches and not again.newly_halted
    assert monitor.block_counts == {"drawdown_block_total": 1}
    monitor.observe(900.0, at(3))  # back within the limit
    assert monitor.resume() == (TradingState.HALTED, None)
    assert monitor.trading_state is TradingState.ACTIVE
    assert monitor.tracker.peak_equity == 1000.0  # resume keeps the peak


def test_resume_while_still_past_a_limit_is_refused_naming_the_limit_and_the_numbers():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    monitor.observe(700.0, at(0))
    before = monitor.record()
    with pytest.raises(ResumeRefused) as refused:
        monitor.resume()
    assert str(refused.value) == (
        "resume refused: max drawdown 30.00% >= limit 20.00% (peak 1000.00, equity 700.00); resume with a "
        "rebaseline to measure from equity 700.00 (the peak and the day's start set to it)"
    )
    assert monitor.record() == before and monitor.trading_state is TradingState.HALTED


def test_a_rebaseline_resumes_with_the_peak_and_the_days_start_at_todays_equity():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0), DailyLossGuard(5.0)])
    monitor.observe(1200.0, at(0))
    monitor.observe(700.0, at(1))
    previous, changed = monitor.resume(rebaseline=True)
    assert previous is TradingState.HALTED and monitor.trading_state is TradingState.ACTIVE
    assert changed == Rebaseline(old_peak=1200.0, new_peak=700.0, old_day_start=1200.0, new_day_start=700.0)
    assert (monitor.tracker.peak_equity, monitor.tracker.start_equity, monitor.tracker.drawdown) == (700.0, 700.0, 0.0)
    assert monitor.tracker.max_drawdown == pytest.approx(500 / 1200)  # history is kept
    assert monitor.observe(690.0, at(2)) is None  # measured from 700 now: 1.4% is within both limits


def test_a_minimum_equity_breach_cannot_be_rebaselined_away():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0), MinEquityGuard(900.0)])
    monitor.observe(700.0, at(0))
    with pytest.raises(ResumeRefused, match=r"^resume refused, even with a rebaseline: equity 700\.00 < minimum 900\.00$"):
        monitor.resume(rebaseline=True)
    assert monitor.trading_state is TradingState.HALTED and monitor.tracker.peak_equity == 1000.0


def test_after_resume_a_breach_that_returns_halts_and_counts_again():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0), MinEquityGuard(900.0)])
    monitor.observe(700.0, at(0))
    assert monitor.block_counts == {"drawdown_block_total": 1, "min_equity_block_total": 1}
    monitor.observe(950.0, at(1))
    monitor.resume()
    assessment = monitor.observe(700.0, at(2))
    assert assessment is not None and assessment.newly_halted
    assert monitor.block_counts == {"drawdown_block_total": 2, "min_equity_block_total": 2}
    assert "max drawdown" in monitor.state().reason and "minimum 900.00" in monitor.state().reason


def test_degrade_reduces_or_halts_but_never_lifts_a_halt():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    assert monitor.degrade(TradingState.REDUCING, "equity unavailable") is TradingState.ACTIVE
    assert (monitor.trading_state, monitor.state().reason) == (TradingState.REDUCING, "equity unavailable")
    assert monitor.observe(1000.0, at(0)).state is TradingState.ACTIVE  # lifted by a reading within limits
    monitor.degrade(TradingState.HALTED, "equity unavailable")
    assert monitor.degrade(TradingState.REDUCING, "again") is TradingState.HALTED
    assert monitor.trading_state is TradingState.HALTED


def test_a_warning_reduces_and_clearing_it_returns_to_active():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0, warn_at=0.5)])
    assert monitor.observe(950.0, at(0)) is None
    warned = monitor.observe(890.0, at(1))
    assert warned is not None and warned.state is TradingState.REDUCING and warned.warnings
    assert monitor.state().reason.startswith("warning: ")
    cleared = monitor.observe(960.0, at(2))
    assert cleared is not None and cleared.state is TradingState.ACTIVE and cleared.state_changed
    assert monitor.state().reason is None
    assert monitor.observe(970.0, at(3)) is None


def test_a_warning_while_halted_keeps_halted():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0, warn_at=0.5)])
    monitor.observe(700.0, at(0))
    assessment = monitor.observe(880.0, at(1))
    assert assessment is not None and assessment.state is TradingState.HALTED and not assessment.breaches


def test_halt_is_a_fail_safe_that_latches_without_counting_a_guard():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    assert monitor.halt("broker unreachable") is TradingState.ACTIVE
    assert monitor.trading_state is TradingState.HALTED
    assert monitor.state().reason == "broker unreachable"
    monitor.observe(500.0, at(0))
    assert monitor.block_counts == {"drawdown_block_total": 0}


def test_state_reports_the_old_systems_fields():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(10.0)])
    assert monitor.state().day_start_equity is None
    monitor.observe(1200.0, at(0))
    monitor.observe(1080.0, at(1))
    state = monitor.state()
    assert (state.current_equity, state.entry_equity, state.peak_equity) == (1080.0, 1000.0, 1200.0)
    assert state.current_drawdown == pytest.approx(0.1)
    assert state.cap_triggered and state.trading_state is TradingState.HALTED
    assert state.last_check_time == at(1)
    assert state.day_start_equity == 1200.0


def test_daily_loss_guards_in_different_time_zones_are_refused():
    with pytest.raises(ValueError, match="Europe/London.*Asia/Tokyo"):
        RiskMonitor(1000.0, [DailyLossGuard(5.0, timezone="Europe/London"), DailyLossGuard(5.0, timezone="Asia/Tokyo")])


# --- the trading day ------------------------------------------------------------------------------


def test_the_day_starts_at_midnight_in_the_guards_time_zone_not_utc():
    # 23:30 UTC on 1 July is 00:30 in London (BST): a new London day, still the old UTC one.
    monitor = RiskMonitor(1000.0, [DailyLossGuard(5.0, timezone="Europe/London")])
    monitor.observe(1000.0, datetime(2024, 7, 1, 12, 0, tzinfo=UTC))
    monitor.observe(990.0, datetime(2024, 7, 1, 22, 59, tzinfo=UTC))
    assert monitor.record().day_start_equity == 1000.0
    monitor.observe(960.0, datetime(2024, 7, 1, 23, 30, tzinfo=UTC))
    record = monitor.record()
    assert record.day_start_equity == 960.0
    assert str(record.day) == "2024-07-02"


def test_a_daily_loss_fires_against_the_first_reading_of_the_day():
    monitor = RiskMonitor(1000.0, [DailyLossGuard(5.0)])
    monitor.observe(800.0, datetime(2024, 3, 1, 23, 0, tzinfo=UTC))  # first reading of 1 March
    assert monitor.trading_state is TradingState.ACTIVE
    monitor.observe(900.0, datetime(2024, 3, 2, 0, 0, tzinfo=UTC))  # first of 2 March
    assert monitor.observe(860.0, datetime(2024, 3, 2, 1, 0, tzinfo=UTC)) is None
    assessment = monitor.observe(855.0, datetime(2024, 3, 2, 2, 0, tzinfo=UTC))
    assert assessment is not None and assessment.newly_halted
    assert "start of day 900.00" in assessment.breaches[0].reason
    assert monitor.block_counts == {"daily_loss_block_total": 1}


@settings(max_examples=60, deadline=None)
@given(data=st.data(), zone=timezones(), curve=equity_curves(min_size=2, max_size=15))
def test_day_start_is_the_first_reading_of_each_local_day(data, zone, curve):
    moments = data.draw(day_rollovers(zone, min_size=len(curve), max_size=len(curve)), label="moments")
    monitor = RiskMonitor(curve[0], [DailyLossGuard(100.0, timezone=zone)])
    day, day_start = None, None
    for equity, moment in zip(curve, moments):
        if moment.astimezone(ZoneInfo(zone)).date() != day:
            day, day_start = moment.astimezone(ZoneInfo(zone)).date(), equity
        monitor.observe(equity, moment)
        record = monitor.record()
        assert record.day == day
        assert record.day_start_equity == day_start
        assert monitor.state().day_start_equity == day_start


@settings(max_examples=60)
@given(zone=timezones(), moments=st.data())
def test_day_rollovers_cross_a_local_midnight_and_never_go_back(zone, moments):
    drawn = moments.draw(day_rollovers(zone))
    local = ZoneInfo(zone)
    assert all(m.tzinfo is not None for m in drawn)
    # Compare instants: aware datetimes sharing a tzinfo compare by wall clock, ignoring fold.
    assert all(a.timestamp() <= b.timestamp() for a, b in zip(drawn, drawn[1:]))
    assert drawn[-1].astimezone(local).date() > drawn[0].astimezone(local).date()
    assert drawn[-1].timestamp() >= next_midnight(drawn[0], zone).timestamp()


@pytest.mark.parametrize(
    ("zone", "moment", "expected"),
    [
        ("America/Havana", datetime(2024, 3, 9, 12, tzinfo=UTC), "2024-03-10T01:00:00-04:00"),  # midnight skipped
        ("Europe/London", datetime(2024, 3, 30, 23, 30, tzinfo=UTC), "2024-03-31T00:00:00+00:00"),
        ("Asia/Tokyo", datetime(2024, 3, 1, 15, 0, tzinfo=UTC), "2024-03-03T00:00:00+09:00"),
    ],
)
def test_next_midnight_is_the_first_moment_of_the_next_local_day(zone, moment, expected):
    assert next_midnight(moment, zone).isoformat() == expected


# --- cash flows and restarts ----------------------------------------------------------------------


@settings(max_examples=60)
@given(data=st.data(), guards=guard_sets(), curve=equity_curves(max_size=20))
def test_a_cash_flow_moves_no_drawdown_and_no_daily_loss(data, guards, curve):
    monitor = RiskMonitor(curve[0], guards)
    monitor.observe_many(curve, T0)
    amount = data.draw(cash_flows(monitor.tracker.latest_equity), label="amount")
    before = monitor.record()
    drawdown = 1 - before.drawdown.latest_equity / before.drawdown.peak_equity
    daily_loss = 1 - before.drawdown.latest_equity / before.day_start_equity
    monitor.record_cash_flow(amount)
    after = monitor.record()
    assert math.isclose(monitor.tracker.drawdown, drawdown, rel_tol=1e-9, abs_tol=1e-12)
    assert after.drawdown.max_drawdown == before.drawdown.max_drawdown
    after_daily_loss = 1 - after.drawdown.latest_equity / after.day_start_equity
    assert math.isclose(after_daily_loss, daily_loss, rel_tol=1e-9, abs_tol=1e-12)
    assert after.trading_state is before.trading_state


@settings(max_examples=60, deadline=None)
@given(guards=guard_sets(timezone="UTC"), curve=equity_curves(min_size=2, max_size=30), data=st.data())
def test_a_monitor_restored_from_its_record_carries_on_exactly_as_the_original(guards, curve, data):
    cut = data.draw(st.integers(0, len(curve)), label="cut")
    original = RiskMonitor(curve[0], guards)
    original.observe_many(curve[:cut], T0)
    restored = RiskMonitor.from_record(original.record(), guards)
    assert restored.record() == original.record()
    for i, equity in enumerate(curve[cut:]):
        assert restored.observe(equity, at(3600 * i)) == original.observe(equity, at(3600 * i))
    assert restored.record() == original.record()
    assert restored.block_counts == original.block_counts


def test_a_record_holds_the_block_counts_and_survives_a_restart():
    guards = [MaxDrawdownGuard(20.0)]
    monitor = RiskMonitor(1000.0, guards)
    monitor.observe(700.0, T0)
    record = monitor.record()
    assert isinstance(record, GuardRecord)
    assert record.block_counts == (("drawdown_block_total", 1),)
    restored = RiskMonitor.from_record(record, guards)
    assert restored.trading_state is TradingState.HALTED
    assert restored.block_counts == {"drawdown_block_total": 1}


def test_assessment_levels_are_reported_per_guard():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(50.0, warn_at=0.5), MinEquityGuard(800.0)])
    assessment = monitor.observe(700.0, T0)
    assert assessment is not None
    assert [(v.guard, v.level) for v in assessment.breaches] == [("min_equity", Level.BREACH)]
    assert [(v.guard, v.level) for v in assessment.warnings] == [("max_drawdown", Level.WARN)]


def test_a_users_own_rule_without_a_clear_line_is_checked_on_every_reading():
    from runtime.risk.guards import Guard, Level, Verdict

    class NoBigSwings(Guard):
        """Breaches when equity is below 9,000 (a rule of a user's own)."""

        name = "no_big_swings"
        block_counter = "no_big_swings_block_total"

        def level(self, equity, peak, start, day_start):
            return Level.BREACH if equity < 9_000 else Level.OK

        def verdict(self, equity, peak, start, day_start):
            if equity >= 9_000:
                return None
            return Verdict(self.name, Level.BREACH, f"equity {equity:.2f} < 9000", self.block_counter)

    monitor = RiskMonitor(10_000, [NoBigSwings(), MaxDrawdownGuard(50)])
    assert monitor.observe(9_500.0, T0) is None
    assessment = monitor.observe(8_900.0, T0)
    assert assessment is not None and assessment.newly_halted
    assert [v.guard for v in assessment.breaches] == ["no_big_swings"]
