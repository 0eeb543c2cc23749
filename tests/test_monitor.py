"""RiskMonitor: batches, bad readings, the latched state, the trading day, restarts."""

from __future__ import annotations

import math
import pickle
import sys
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import attrs
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
from runtime.risk.drawdown import DrawdownSnapshot
from runtime.risk.guards import GuardState, Verdict
from runtime.risk.monitor import Assessment, Latch, Rebaseline, ResumeRefused, SeriesInterrupted

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


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    guards=guard_sets(),
    curve=equity_curves(min_size=2, max_size=40),
    changes_only=st.booleans(),
)
def test_observe_series_gives_the_same_assessments_and_record_as_one_at_a_time(data, guards, curve, changes_only):
    # Each reading at its own time, minutes to hours apart (so some series cross midnight, and
    # some go back in time), after a first reading that starts the day: runs that can only move
    # the tracker are taken in one pass, the rest reading by reading, either way exactly as
    # single readings.
    zone = guards[-1].timezone if isinstance(guards[-1], DailyLossGuard) else "UTC"
    first = data.draw(day_rollovers(zone, min_size=2, max_size=2), label="first")[0]
    earliest = -6 * 3600 if data.draw(st.booleans(), label="back in time") else 0
    gaps = data.draw(st.lists(st.integers(earliest, 6 * 3600), min_size=len(curve), max_size=len(curve)), label="gaps")
    times = [first]
    for gap in gaps[1:]:
        times.append(times[-1] + timedelta(seconds=gap))
    if data.draw(st.booleans(), label="in UTC"):  # (as a replay's: then runs are taken in one pass)
        times = [moment.astimezone(UTC) for moment in times]
    cuts = sorted(data.draw(st.sets(st.integers(1, len(curve)), max_size=4), label="cuts"))
    bounds = [1, *cuts, len(curve)]
    single, series = RiskMonitor(curve[0], guards), RiskMonitor(curve[0], guards)
    single.observe(curve[0], first)
    series.observe(curve[0], first)
    one_at_a_time, in_series = [], []
    for low, high in zip(bounds, bounds[1:]):
        for equity, moment in zip(curve[low:high], times[low:high]):
            found = single.observe(equity, moment, changes_only=changes_only)
            if found is not None:
                one_at_a_time.append(found)
        in_series.extend(series.observe_series(curve[low:high], times[low:high], changes_only=changes_only))
        assert series.record() == single.record()
    assert in_series == one_at_a_time


def test_a_series_that_makes_a_new_peak_and_falls_from_it_halts_at_the_fall():
    # A clear line judged against the peak before the series would let the fall through.
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    monitor.observe(1000.0, T0)
    found = monitor.observe_series([1100.0, 1500.0, 1190.0, 1300.0], [at(60), at(120), at(180), at(240)])
    assert [(a.previous_state, a.state, a.equity, a.at) for a in found] == [
        (TradingState.ACTIVE, TradingState.HALTED, 1190.0, at(180))
    ]
    assert [v.reason for v in found[0].breaches] == ["max drawdown 20.67% >= limit 20.00% (peak 1500.00, equity 1190.00)"]
    tracker = monitor.tracker
    assert (tracker.peak_equity, tracker.latest_equity, tracker.max_drawdown) == (1500.0, 1300.0, 310.0 / 1500.0)
    assert monitor.record().last_check_time == at(240)


def test_a_series_whose_wall_clock_rises_while_its_instants_do_not_is_taken_as_single_readings():
    # Clocks go back in London on 2024-10-27: 01:10 the second time (fold=1) is 01:10Z, after
    # midnight in Cape Verde (01:00Z), while the readings around it are before it.
    london = ZoneInfo("Europe/London")
    guards = [DailyLossGuard(limit_percent=5.0, timezone="Atlantic/Cape_Verde")]

    def moment(hour: int, minute: int, fold: int = 0) -> datetime:
        return datetime(2024, 10, 27, hour, minute, tzinfo=london, fold=fold)

    times = [moment(1, 5), moment(1, 10, fold=1), moment(1, 20), moment(1, 30), moment(1, 40), moment(1, 50)]
    equities = [1000.0, 990.0, 985.0, 984.0, 983.0, 982.0]
    single, series = RiskMonitor(1000.0, guards), RiskMonitor(1000.0, guards)
    for monitor in (single, series):
        monitor.observe(1000.0, moment(0, 1))
    for equity, at in zip(equities, times):
        single.observe(equity, at, changes_only=True)
    series.observe_series(equities, times, changes_only=True)
    assert series.record() == single.record()
    # The fold starts the 27th in Cape Verde; the readings after it are before that midnight
    # again, judged against the 27th's start, and the day never goes back to the 26th.
    assert (single.record().day, single.record().day_start_equity) == (date(2024, 10, 27), 990.0)


class Refusing:
    """A rule of the user's own that raises on a reading it cannot judge."""

    name = "refusing"
    block_counter = "refusing_block_total"

    def level(self, equity, peak, start, day_start):
        if equity > 1.15 * start:
            raise ValueError(f"implausible equity {equity!r}")
        return Level.OK if equity > 0.5 * start else Level.BREACH

    def verdict(self, equity, peak, start, day_start):
        if self.level(equity, peak, start, day_start) is Level.BREACH:
            return Verdict(self.name, Level.BREACH, "below half the start", self.block_counter)
        return None


def test_a_rule_that_raises_in_a_series_ends_it_there_saying_where_and_what_was_found_before():
    guards = [MaxDrawdownGuard(20.0, warn_at=0.5), Refusing()]
    single, series = RiskMonitor(10_000.0, guards), RiskMonitor(10_000.0, guards)
    equities = [8_500.0, 9_600.0, 12_000.0, 11_000.0]
    times = [at(60), at(120), at(180), at(240)]
    found = [single.observe(equities[0], times[0]), single.observe(equities[1], times[1])]
    with pytest.raises(ValueError, match=r"^implausible equity 12000\.0$"):
        single.observe(equities[2], times[2])
    with pytest.raises(SeriesInterrupted) as stopped:
        series.observe_series(equities, times)
    assert str(stopped.value) == "a rule raised on reading 2 of the series"
    assert stopped.value.index == 2
    assert stopped.value.found == [a for a in found if a is not None]
    assert [(a.previous_state, a.state) for a in stopped.value.found] == [
        (TradingState.ACTIVE, TradingState.REDUCING), (TradingState.REDUCING, TradingState.ACTIVE),
    ]
    assert repr(stopped.value.__cause__) == "ValueError('implausible equity 12000.0')"
    assert series.record() == single.record()


@pytest.mark.parametrize("line", [(math.nan, math.nan), (0.5, math.nan), (None, 1.0), ("0.9", 0.0), (True, 0.0)])
def test_a_rule_whose_clear_line_is_not_two_real_numbers_is_always_checked_in_any_order(line):
    # 940 is 6% down: clear of a 20% drawdown rule, but past this rule's 990.
    class Custom(_PlainRule):
        def clear_line(self, start, day_start):
            return line

    for guards in ([MaxDrawdownGuard(20.0), Custom()], [Custom(), MaxDrawdownGuard(20.0)]):
        monitor = RiskMonitor(1_000.0, guards)
        found = monitor.observe(940.0, T0)
        assert found is not None and [v.guard for v in found.breaches] == ["plain"], guards
        assert monitor.trading_state is TradingState.HALTED


def test_a_bad_value_or_time_in_a_series_leaves_the_monitor_unchanged_and_names_its_index():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    monitor.observe(1000.0, T0)
    before = monitor.record()
    with pytest.raises(ValueError, match=r"^equities\[1\] must be a finite real number, got nan$"):
        monitor.observe_series([990.0, math.nan, 980.0], [at(1), at(2), at(3)])
    with pytest.raises(ValueError, match=r"^times\[2\] must be a timezone-aware datetime, got datetime\.datetime\(2024, 3, 1, 12, 0, 3\)$"):
        monitor.observe_series([990.0, 985.0, 980.0], [at(1), at(2), datetime(2024, 3, 1, 12, 0, 3)])
    with pytest.raises(ValueError, match=r"^equities and times must be as long as each other, got 2 and 1$"):
        monitor.observe_series([990.0, 985.0], [at(1)])
    assert monitor.record() == before
    assert monitor.observe_series([], []) == []
    assert monitor.record() == before


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
    with pytest.raises(ValueError, match=r"^equity must be a finite real number, got nan$"):
        monitor.observe(math.nan, at(1))
    assert monitor.record() == before


def test_a_reading_without_a_time_zone_is_refused():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    naive = r"^at must be a timezone-aware datetime, got datetime\.datetime\(2024, 3, 1, 12, 0\)$"
    with pytest.raises(ValueError, match=naive):
        monitor.observe(900.0, datetime(2024, 3, 1, 12))
    with pytest.raises(ValueError, match=naive):
        monitor.observe_many([900.0], datetime(2024, 3, 1, 12))
    with pytest.raises(TypeError, match=r"^at must be a timezone-aware datetime, got '2024' \(str\)$"):
        monitor.observe(900.0, "2024")
    assert monitor.record().last_check_time is None


def test_a_time_whose_trading_day_lies_past_the_ends_of_datetimes_range_is_refused_naming_it():
    # New York's day of 0001-01-01 00:00 UTC is the day before datetime.min: working it out overflowed.
    monitor = RiskMonitor(1000.0, [DailyLossGuard(5.0, timezone="America/New_York")])
    early, late = datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"^at must be between 0001-01-03 and 9999-12-29 \(UTC\), got datetime\.datetime\(1, 1, 1, 0, 0, "):
        monitor.observe(900.0, early)
    with pytest.raises(ValueError, match=r"^at must be between 0001-01-03 and 9999-12-29 \(UTC\), got datetime\.datetime\(9999, "):
        monitor.observe_many([900.0], late)
    with pytest.raises(ValueError, match=r"^times\[0\] must be between 0001-01-03 and 9999-12-29 \(UTC\), got "):
        monitor.observe_series([900.0, 950.0], [early, at(1)])  # (in UTC and in order)
    with pytest.raises(ValueError, match=r"^times\[1\] must be between 0001-01-03 and 9999-12-29 \(UTC\), got "):
        monitor.observe_series([900.0, 950.0], [at(1), late])
    assert monitor.record().last_check_time is None
    monitor.observe(900.0, datetime(1, 1, 3, tzinfo=UTC))  # the ends themselves are taken
    monitor.observe(900.0, datetime(9999, 12, 29, tzinfo=UTC))


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
    # (the start, a static floor's base, stays)
    assert (monitor.tracker.peak_equity, monitor.tracker.start_equity, monitor.tracker.drawdown) == (700.0, 1000.0, 0.0)
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
    assert monitor.state().reason == (
        "max drawdown 30.00% >= limit 20.00% (peak 1000.00, equity 700.00); equity 700.00 < minimum 900.00"
    )


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


def test_a_late_first_reading_keeps_its_start_for_the_day_it_was_taken_on_and_a_day_between_starts_afresh():
    opened = RiskMonitor(10_000.0, [DailyLossGuard(5.0)])
    opened.open_on(T0)
    opened.observe(10_000.0, T0 - timedelta(hours=13))  # taken on T0's day, stamped the day before
    found = opened.observe(8_850.0, T0)
    assert (found.breaches[0].reason, opened.record().day) == (
        "daily loss 11.50% >= limit 5.00% (start of day 10000.00, equity 8850.00)", T0.date())
    # Stamped further back: a feed on a time of its own, whose days start as ever.
    feed = RiskMonitor(10_000.0, [DailyLossGuard(5.0)])
    feed.open_on(T0)
    feed.observe(10_000.0, T0 - timedelta(days=2))
    feed.observe(9_800.0, T0 - timedelta(days=1))
    assert feed.state().day_start_equity == 9_800.0
    assert feed.observe(9_400.0, T0) is None
    assert feed.state().day_start_equity == 9_400.0
    with pytest.raises(ValueError, match=r"^now must be a timezone-aware datetime, got datetime.datetime\(2024, 3, 1, 0, 0\)$"):
        feed.open_on(datetime(2024, 3, 1))


@pytest.mark.parametrize("late", [timedelta(hours=13), timedelta(days=1)], ids=["13 h late", "a day late"])
def test_a_late_first_readings_kept_start_survives_a_restore_from_the_record(late):
    # Not saved, the marker was lost with a restart before the readings reached the clock's day:
    # that day then started from its own first reading, and the 11.5% fall was no one's loss.
    opened = RiskMonitor(10_000.0, [DailyLossGuard(5.0)])
    opened.open_on(T0)
    opened.observe(10_000.0, T0 - late)
    record = opened.record()
    assert record.day_start_kept_into == T0.date()
    restored = RiskMonitor.from_record(record, [DailyLossGuard(5.0)])
    restored.open_on(T0 + timedelta(hours=1))  # (as the guard does at each start: nothing once a day is set)
    found = restored.observe(8_850.0, T0 + timedelta(hours=1))
    assert found is not None and found.breaches[0].reason == (
        "daily loss 11.50% >= limit 5.00% (start of day 10000.00, equity 8850.00)")
    assert restored.record().day_start_kept_into is None  # used: the next day starts afresh
    assert restored.record().day_start_equity == 10_000.0


def test_a_first_reading_days_late_starts_its_own_day_and_the_clocks_day_from_its_first_reading_restored_or_not():
    # The bar before a weekend, read first by a guard started on Monday: Monday starts from its own
    # first reading, as it would for a guard that had run through the weekend.
    monday = T0 + timedelta(days=3)
    for restart in (False, True):
        monitor = RiskMonitor(10_000.0, [DailyLossGuard(5.0)])
        monitor.open_on(monday)
        monitor.observe(10_000.0, T0)
        assert monitor.record().day_start_kept_into is None
        if restart:
            monitor = RiskMonitor.from_record(monitor.record(), [DailyLossGuard(5.0)])
        assert monitor.observe(8_850.0, monday) is None
        assert monitor.record().day_start_equity == 8_850.0


def test_daily_loss_guards_in_different_time_zones_are_refused():
    with pytest.raises(
        ValueError, match=r"^daily loss guards must share one timezone, got \['Europe/London', 'Asia/Tokyo'\]$"
    ):
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
    assert assessment.breaches[0].reason == "daily loss 5.00% >= limit 5.00% (start of day 900.00, equity 855.00)"
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


# --- exact values: whole assessments, records and states ------------------------------------------

DRAWDOWN_20 = "max drawdown 20.00% >= limit 20.00% (peak 1000.00, equity 800.00)"


def test_a_breach_gives_the_whole_assessment():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0), MinEquityGuard(100.0)])
    assert monitor.observe(800.0, at(5)) == Assessment(
        breaches=(Verdict("max_drawdown", Level.BREACH, DRAWDOWN_20, "drawdown_block_total"),),
        warnings=(),
        previous_state=TradingState.ACTIVE,
        state=TradingState.HALTED,
        equity=800.0,
        at=at(5),
        peak_equity=1000.0,
    )
    assert monitor.state().reason == DRAWDOWN_20
    assert monitor.block_counts == {"drawdown_block_total": 1, "min_equity_block_total": 0}


def test_assessment_flags_for_every_pair_of_states():
    def flags(previous, state):
        found = Assessment((), (), previous, state, 1.0, T0, 1.0)
        return found.newly_halted, found.state_changed

    assert flags(TradingState.ACTIVE, TradingState.HALTED) == (True, True)
    assert flags(TradingState.REDUCING, TradingState.HALTED) == (True, True)
    assert flags(TradingState.HALTED, TradingState.HALTED) == (False, False)
    assert flags(TradingState.ACTIVE, TradingState.REDUCING) == (False, True)
    assert flags(TradingState.REDUCING, TradingState.ACTIVE) == (False, True)
    assert flags(TradingState.ACTIVE, TradingState.ACTIVE) == (False, False)


def test_the_limit_tolerance_holds_through_the_monitor_on_both_sides():
    just_inside = 1.0 - 0.2 * (1 - 0.5e-12)  # short of 20% by half the tolerance: a breach
    just_outside = 1.0 - 0.2 * (1 - 2e-12)  # short by twice the tolerance: within the limit
    for guard in (MaxDrawdownGuard(20.0), DailyLossGuard(20.0)):
        calm = RiskMonitor(1.0, [guard])
        assert calm.observe(1.0, T0) is None  # the day's first reading is its start
        assert calm.observe(just_outside, T0) is None
        assert calm.trading_state is TradingState.ACTIVE
        fired = RiskMonitor(1.0, [guard])
        fired.observe(1.0, T0)
        found = fired.observe(just_inside, T0)
        assert found is not None and found.newly_halted and [v.guard for v in found.breaches] == [guard.name]


def test_a_reading_just_below_a_warning_level_is_found_past_the_clear_line():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0, warn_at=0.5)])
    assert monitor.observe(900.01, at(0)) is None
    warned = monitor.observe(900.0, at(1))
    assert warned == Assessment(
        (),
        (
            Verdict(
                "max_drawdown",
                Level.WARN,
                "warning: max drawdown 10.00% >= warning 10.00% (limit 20.00%, peak 1000.00, equity 900.00)",
                "drawdown_block_total",
            ),
        ),
        TradingState.ACTIVE,
        TradingState.REDUCING,
        900.0,
        at(1),
        1000.0,
    )
    assert monitor.state().reason == "warning: max drawdown 10.00% >= warning 10.00% (limit 20.00%, peak 1000.00, equity 900.00)"


def test_a_reading_just_above_the_minimum_is_clear_and_one_below_breaches():
    monitor = RiskMonitor(1000.0, [MinEquityGuard(500.0)])
    assert monitor.observe(500.0, at(0)) is None
    found = monitor.observe(499.99, at(1))
    assert found is not None and found.breaches[0].reason == "equity 499.99 < minimum 500.00"


class _PlainRule:
    """A user's own rule written without subclassing Guard: it has no clear_line at all."""

    name = "plain"
    block_counter = "plain_block_total"

    def level(self, equity, peak, start, day_start):
        return Level.BREACH if equity < 990.0 else Level.OK

    def verdict(self, equity, peak, start, day_start):
        if equity >= 990.0:
            return None
        return Verdict(self.name, Level.BREACH, f"equity {equity:.2f} < 990", self.block_counter)


class _OddLineRule(_PlainRule):
    """A user's rule whose clear_line answers something that is not a (factor, floor) pair."""

    name = "odd"
    block_counter = "odd_block_total"

    def clear_line(self, start, day_start):
        return 0.0


def test_a_users_rule_without_clear_line_is_checked_on_the_first_and_every_reading():
    for rule in (_PlainRule(), _OddLineRule()):
        monitor = RiskMonitor(1000.0, [rule, MaxDrawdownGuard(50.0)])
        assert monitor.observe(995.0, at(0)) is None
        found = monitor.observe(989.0, at(1))
        assert found is not None and found.newly_halted
        assert [v.reason for v in found.breaches] == ["equity 989.00 < 990"]
        assert monitor.block_counts == {rule.block_counter: 1, "drawdown_block_total": 0}


def test_a_users_rule_alone_halts_on_the_very_first_reading():
    monitor = RiskMonitor(1000.0, [_PlainRule()])
    found = monitor.observe(100.0, T0)
    assert found is not None and found.state is TradingState.HALTED


def test_a_monitor_with_no_guards_takes_every_reading_and_never_halts():
    monitor = RiskMonitor(1000.0, [])
    assert monitor.guards == ()
    assert monitor.observe(1.0, at(0)) is None
    assert monitor.observe(-500.0, at(1)) is None
    assert monitor.observe_many([2000.0, 10.0], at(2)) == []
    assert monitor.trading_state is TradingState.ACTIVE
    assert monitor.block_counts == {}
    assert (monitor.tracker.peak_equity, monitor.tracker.latest_equity) == (2000.0, 10.0)
    monitor.degrade(TradingState.REDUCING, "equity unavailable")
    lifted = monitor.observe(20.0, at(3))
    assert lifted == Assessment((), (), TradingState.REDUCING, TradingState.ACTIVE, 20.0, at(3), 2000.0)
    assert monitor.state().reason is None


def test_the_daily_guards_default_zone_is_utc_even_when_london_is_not():
    # In July London is UTC+1: 23:30 UTC is already tomorrow there, and still today in UTC.
    monitor = RiskMonitor(1000.0, [DailyLossGuard(5.0)])
    monitor.observe(1000.0, datetime(2024, 7, 1, 12, 0, tzinfo=UTC))
    monitor.observe(990.0, datetime(2024, 7, 1, 23, 30, tzinfo=UTC))
    assert (monitor.day, monitor.record().day_start_equity) == (date(2024, 7, 1), 1000.0)
    monitor.observe(980.0, datetime(2024, 7, 2, 0, 0, tzinfo=UTC))
    assert (monitor.day, monitor.record().day_start_equity) == (date(2024, 7, 2), 980.0)
    # ... and a monitor with no daily guard counts days in UTC too.
    plain = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    plain.observe(990.0, datetime(2024, 7, 1, 23, 30, tzinfo=UTC))
    assert plain.day == date(2024, 7, 1)


def test_a_reading_one_microsecond_before_midnight_is_still_today():
    monitor = RiskMonitor(1000.0, [DailyLossGuard(5.0, timezone="Europe/London")])
    monitor.observe(1000.0, datetime(2024, 7, 1, 12, 0, tzinfo=UTC))
    monitor.observe(990.0, datetime(2024, 7, 1, 22, 59, 59, 999999, tzinfo=UTC))
    assert (monitor.day, monitor.record().day_start_equity) == (date(2024, 7, 1), 1000.0)
    monitor.observe(970.0, datetime(2024, 7, 1, 23, 0, tzinfo=UTC))
    assert (monitor.day, monitor.record().day_start_equity) == (date(2024, 7, 2), 970.0)
    monitor.observe(960.0, datetime(2024, 7, 1, 23, 0, 1, tzinfo=UTC))
    assert (monitor.day, monitor.record().day_start_equity) == (date(2024, 7, 2), 970.0)


def test_a_daily_loss_measured_from_the_days_first_reading_in_london():
    monitor = RiskMonitor(1000.0, [DailyLossGuard(5.0, timezone="Europe/London")])
    monitor.observe(1000.0, datetime(2024, 7, 1, 22, 0, tzinfo=UTC))
    assert monitor.observe(960.0, datetime(2024, 7, 1, 23, 30, tzinfo=UTC)) is None  # a new London day
    found = monitor.observe(912.0, datetime(2024, 7, 2, 1, 0, tzinfo=UTC))
    assert found is not None and found.breaches[0].reason == (
        "daily loss 5.00% >= limit 5.00% (start of day 960.00, equity 912.00)"
    )


def test_state_gives_every_field_before_and_after_a_reading():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(10.0)])
    assert monitor.state() == GuardState(
        current_equity=1000.0,
        entry_equity=1000.0,
        peak_equity=1000.0,
        current_drawdown=0.0,
        cap_triggered=False,
        reason=None,
        last_check_time=None,
        trading_state=TradingState.ACTIVE,
        max_drawdown=0.0,
        day_start_equity=None,
    )
    monitor.observe(1200.0, at(0))
    monitor.observe(1140.0, at(1))
    assert monitor.state() == GuardState(
        current_equity=1140.0,
        entry_equity=1000.0,
        peak_equity=1200.0,
        current_drawdown=0.05,
        cap_triggered=False,
        reason=None,
        last_check_time=at(1),
        trading_state=TradingState.ACTIVE,
        max_drawdown=0.05,
        day_start_equity=1200.0,
    )


def _halted_monitor() -> RiskMonitor:
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0), DailyLossGuard(50.0)])
    monitor.take_net_deposits(300.0)
    monitor.observe(1000.0, at(0))
    monitor.observe(800.0, at(60))
    return monitor


HALTED_RECORD = GuardRecord(
    drawdown=DrawdownSnapshot(1000.0, 1000.0, 800.0, 0.2),
    trading_state=TradingState.HALTED,
    reason=DRAWDOWN_20,
    day=date(2024, 3, 1),
    day_start_equity=1000.0,
    last_check_time=at(60),
    block_counts=(("daily_loss_block_total", 0), ("drawdown_block_total", 1)),
    net_deposits=300.0,
)


def test_a_record_is_every_field_of_the_monitor_as_literal_values():
    assert _halted_monitor().record() == HALTED_RECORD


def test_a_monitor_restored_from_a_literal_record_has_every_field_back():
    guards = [MaxDrawdownGuard(20.0), DailyLossGuard(50.0)]
    restored = RiskMonitor.from_record(HALTED_RECORD, guards)
    assert restored.record() == HALTED_RECORD
    assert restored.trading_state is TradingState.HALTED
    assert restored.state().reason == DRAWDOWN_20  # the halt reason survives a restart
    assert restored.day == date(2024, 3, 1)
    assert restored.net_deposits == 300.0
    assert restored.block_counts == {"daily_loss_block_total": 0, "drawdown_block_total": 1}
    assert restored.state() == GuardState(
        current_equity=800.0,
        entry_equity=1000.0,
        peak_equity=1000.0,
        current_drawdown=0.2,
        cap_triggered=True,
        reason=DRAWDOWN_20,
        last_check_time=at(60),
        trading_state=TradingState.HALTED,
        max_drawdown=0.2,
        day_start_equity=1000.0,
    )
    # the same day carries on: its start is not re-taken from the next reading
    restored.observe(790.0, at(120))
    assert restored.record().day_start_equity == 1000.0


def test_a_record_without_a_day_start_keeps_the_start_equity_as_the_days_start():
    record = attrs.evolve(HALTED_RECORD, day=None, day_start_equity=None, block_counts=(), net_deposits=None)
    restored = RiskMonitor.from_record(record, [MaxDrawdownGuard(20.0)])
    assert restored.record() == attrs.evolve(
        record, day_start_equity=1000.0, block_counts=(("drawdown_block_total", 0),)
    )
    assert restored.net_deposits is None


def test_net_deposits_the_first_figure_is_no_flow_and_a_change_is_one():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    assert monitor.net_deposits is None
    assert monitor.take_net_deposits(500) == 0.0
    assert monitor.net_deposits == 500.0 and type(monitor.net_deposits) is float
    assert monitor.take_net_deposits(500.0) == 0.0
    assert monitor.tracker.snapshot() == DrawdownSnapshot(1000.0, 1000.0, 1000.0, 0.0)
    assert monitor.take_net_deposits(1000.0) == 500.0
    assert monitor.tracker.snapshot() == DrawdownSnapshot(1500.0, 1500.0, 1500.0, 0.0)
    assert monitor.take_net_deposits(700.0) == -300.0
    assert monitor.tracker.snapshot() == DrawdownSnapshot(1200.0, 1200.0, 1200.0, 0.0)
    assert monitor.net_deposits == 700.0


def test_a_flow_that_cannot_be_taken_is_refused_but_its_figure_is_kept():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    monitor.take_net_deposits(0.0)
    with pytest.raises(ValueError, match=r"^cash flow amount -1000\.0 would take equity from 1000\.0 to 0\.0 \(must stay > 0\)$"):
        monitor.take_net_deposits(-1000.0)
    assert monitor.net_deposits == -1000.0
    assert monitor.take_net_deposits(-1000.0) == 0.0
    with pytest.raises(ValueError, match=r"^net_deposits must be a finite real number, got nan$"):
        monitor.take_net_deposits(math.nan)
    assert monitor.net_deposits == -1000.0


def test_a_cash_flow_scales_the_days_start_with_the_equity():
    monitor = RiskMonitor(1000.0, [DailyLossGuard(50.0)])
    monitor.observe(1000.0, at(0))
    monitor.observe(800.0, at(1))
    monitor.record_cash_flow(800.0)
    record = monitor.record()
    assert (record.day_start_equity, record.drawdown.latest_equity, record.drawdown.peak_equity) == (2000.0, 1600.0, 2000.0)


def test_a_withdrawal_while_equity_is_exactly_zero_is_refused_with_the_documented_error():
    monitor = RiskMonitor(1000.0, [MinEquityGuard(10.0)])
    monitor.observe(0.0, at(0))
    before = monitor.record()
    message = r"^cannot record a cash flow of -50\.0 while equity is 0\.0 \(must be > 0\)$"
    with pytest.raises(ValueError, match=message):
        monitor.record_cash_flow(-50.0)
    assert monitor.record() == before
    monitor.take_net_deposits(0.0)
    with pytest.raises(ValueError, match=message):
        monitor.take_net_deposits(-50.0)
    assert monitor.net_deposits == -50.0  # (kept even so: the same flow is never taken twice)


def test_resume_from_reducing_and_a_rebaseline_with_nothing_in_breach():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0, warn_at=0.5)])
    monitor.observe(880.0, at(0))
    assert monitor.trading_state is TradingState.REDUCING
    assert monitor.resume() == (TradingState.REDUCING, None)
    assert (monitor.trading_state, monitor.state().reason) == (TradingState.ACTIVE, None)
    assert monitor.resume(rebaseline=True) == (
        TradingState.ACTIVE,
        Rebaseline(old_peak=1000.0, new_peak=880.0, old_day_start=880.0, new_day_start=880.0),
    )
    assert monitor.record().drawdown == DrawdownSnapshot(1000.0, 880.0, 880.0, 0.12)


@pytest.mark.parametrize(("equity", "shown"), [(0.0, "0.00"), (-5.0, "-5.00")])
def test_a_rebaseline_at_zero_or_below_is_refused_and_changes_nothing(equity, shown):
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    monitor.observe(equity, at(0))
    before = monitor.record()
    with pytest.raises(ResumeRefused, match=rf"^resume refused: cannot rebaseline at equity {shown} \(must be > 0\)$"):
        monitor.resume(rebaseline=True)
    assert monitor.record() == before


def test_a_rebaseline_that_clears_a_drawdown_breach_resumes():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0), MinEquityGuard(500.0)])
    monitor.observe(700.0, at(0))
    assert monitor.resume(rebaseline=True) == (
        TradingState.HALTED,
        Rebaseline(old_peak=1000.0, new_peak=700.0, old_day_start=700.0, new_day_start=700.0),
    )
    assert monitor.state().reason is None


def test_a_rebaseline_is_refused_by_a_daily_loss_only_when_it_would_still_breach():
    # The daily loss measures from the latest equity after a rebaseline, so it clears.
    monitor = RiskMonitor(1000.0, [DailyLossGuard(5.0)])
    monitor.observe(1000.0, at(0))
    monitor.observe(900.0, at(1))
    with pytest.raises(ResumeRefused, match=r"^resume refused: daily loss 10\.00% >= limit 5\.00% \(start of day 1000\.00"):
        monitor.resume()
    assert monitor.resume(rebaseline=True)[0] is TradingState.HALTED
    assert monitor.record().day_start_equity == 900.0


def test_resume_without_a_rebaseline_names_every_breach_and_no_rebaseline_that_would_be_refused_too():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0), MinEquityGuard(900.0)])
    monitor.observe(700.0, at(0))
    with pytest.raises(ResumeRefused) as refused:
        monitor.resume()
    assert str(refused.value) == (
        "resume refused: max drawdown 30.00% >= limit 20.00% (peak 1000.00, equity 700.00); "
        "equity 700.00 < minimum 900.00; a rebaseline cannot lift min_equity "
        "(it moves the peak and the day's start, not a fixed level)"
    )


def test_a_resume_at_no_equity_is_refused_saying_no_rebaseline_can_be_taken():
    # It raised ValueError from the rebaseline it tried, answered 500 by the control API.
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    monitor.observe(-150.0, at(0))
    with pytest.raises(ResumeRefused) as refused:
        monitor.resume()
    assert str(refused.value) == (
        "resume refused: max drawdown 115.00% >= limit 20.00% (peak 1000.00, equity -150.00); no rebaseline can be "
        "taken at equity -150.00 (must be > 0)")
    assert refused.value.rebaseline_helps is False and monitor.trading_state is TradingState.HALTED


def test_a_refused_resume_says_whether_a_rebaseline_would_be_taken_also_once_pickled():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0), MinEquityGuard(750.0)])
    monitor.observe(700.0, at(0))
    with pytest.raises(ResumeRefused) as both:
        monitor.resume()
    monitor.observe(760.0, at(1))
    with pytest.raises(ResumeRefused) as drawdown_only:
        monitor.resume()
    for refused, helps in ((both.value, False), (drawdown_only.value, True)):
        copy = pickle.loads(pickle.dumps(refused))  # as a fleet's account sends it back through Ray
        assert (type(copy), str(copy), copy.rebaseline_helps) == (ResumeRefused, str(refused), helps)
        assert refused.rebaseline_helps is helps


def test_degrade_keeps_the_first_reducing_reason_and_halt_replaces_it():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    monitor.degrade(TradingState.REDUCING, "first")
    assert monitor.degrade(TradingState.REDUCING, "second") is TradingState.REDUCING
    assert monitor.state().reason == "first"
    assert monitor.degrade(TradingState.HALTED, "stale equity") is TradingState.REDUCING
    assert (monitor.trading_state, monitor.state().reason) == (TradingState.HALTED, "stale equity")
    assert monitor.halt("broker down") is TradingState.HALTED
    assert monitor.state().reason == "broker down"


def test_observe_many_returns_the_assessments_in_reading_order_with_their_equity():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0, warn_at=0.5)])
    found = monitor.observe_many([950.0, 890, 960.0, 700.0], at(0))
    assert [(a.equity, a.previous_state, a.state) for a in found] == [
        (890.0, TradingState.ACTIVE, TradingState.REDUCING),
        (960.0, TradingState.REDUCING, TradingState.ACTIVE),
        (700.0, TradingState.ACTIVE, TradingState.HALTED),
    ]
    with pytest.raises(TypeError, match=r"^equities\[1\] must be a finite real number, got None \(NoneType\)$"):
        monitor.observe_many([900.0, None], at(1))
    assert monitor.record().last_check_time == at(0)


# --- gaps left by the mutation run of 2026-12-01 (written after it; see TESTING.md) ---------------


def test_a_static_drawdown_breach_is_refused_with_and_without_a_rebaseline_and_none_is_offered():
    # A rebaseline used to set the start to 850, so the floor fell from 900 to 765.
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(10.0, trailing=False)])
    monitor.observe(850.0, at(0))
    before = monitor.record()
    with pytest.raises(ResumeRefused) as plain:
        monitor.resume()
    assert str(plain.value) == (
        "resume refused: static drawdown 15.00% >= limit 10.00% (start 1000.00, floor 900.00, equity 850.00); a "
        "rebaseline cannot lift max_drawdown (it moves the peak and the day's start, not a fixed level; a static "
        "floor is fixed for the account's life)"
    )
    assert plain.value.rebaseline_helps is False
    with pytest.raises(ResumeRefused) as rebaselined:
        monitor.resume(rebaseline=True)
    assert str(rebaselined.value) == (
        "resume refused, even with a rebaseline: static drawdown 15.00% >= limit 10.00% (start 1000.00, floor 900.00, "
        "equity 850.00); a static floor is fixed for the account's life"
    )
    assert rebaselined.value.rebaseline_helps is False
    assert monitor.record() == before and monitor.trading_state is TradingState.HALTED


def test_every_warning_is_in_the_reason_joined_by_semicolons():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0, warn_at=0.5), MinEquityGuard(500.0, warn_at=0.5)])
    monitor.observe(880.0, at(0))
    assert monitor.state().reason == (
        "warning: max drawdown 12.00% >= warning 10.00% (limit 20.00%, peak 1000.00, equity 880.00); "
        "warning: equity 880.00 < warning level 1000.00 (minimum 500.00)"
    )


def test_a_rebaseline_refused_names_every_limit_still_breached():
    monitor = RiskMonitor(1000.0, [MinEquityGuard(900.0), MinEquityGuard(800.0)])
    monitor.observe(700.0, at(0))
    with pytest.raises(ResumeRefused) as refused:
        monitor.resume(rebaseline=True)
    assert str(refused.value) == (
        "resume refused, even with a rebaseline: equity 700.00 < minimum 900.00; equity 700.00 < minimum 800.00"
    )


def test_a_rebaseline_just_above_zero_equity_is_taken():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    monitor.observe(0.5, at(0))
    assert monitor.resume(rebaseline=True) == (
        TradingState.HALTED,
        Rebaseline(old_peak=1000.0, new_peak=0.5, old_day_start=0.5, new_day_start=0.5),
    )


def test_observe_takes_an_int_as_a_float_and_names_a_string():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    found = monitor.observe(700, at(0))
    assert found is not None and found.equity == 700.0 and type(found.equity) is float
    with pytest.raises(TypeError, match=r"^equity must be a finite real number, got '900' \(str\)$"):
        monitor.observe("900", at(1))


def test_a_new_tokyo_day_starts_at_tokyo_midnight_even_right_after_a_reading_of_the_old_day():
    monitor = RiskMonitor(1000.0, [DailyLossGuard(5.0, timezone="Asia/Tokyo")])
    monitor.observe(1000.0, datetime(2024, 3, 1, 14, 0, tzinfo=UTC))  # 23:00 on 1 March in Tokyo
    monitor.observe(990.0, datetime(2024, 3, 1, 15, 30, tzinfo=UTC))  # 00:30 on 2 March in Tokyo
    assert (monitor.day, monitor.record().day_start_equity) == (date(2024, 3, 2), 990.0)


# --- the latch's dates: a resume lifts only what its sender could have seen -----------------------

DRAWDOWN_30 = "max drawdown 30.00% >= limit 20.00% (peak 1000.00, equity 700.00)"



def test_a_new_state_is_undated_until_its_owner_dates_it_and_the_record_keeps_the_dates():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0, warn_at=0.5)])
    monitor.observe(880.0, at(0))  # REDUCING
    assert (monitor.state_since, monitor.latched_at, monitor.latch()) == (None, None, None)
    monitor.date_latch(at(1))
    reducing = monitor.state().reason
    assert monitor.latch() == Latch(TradingState.REDUCING, reducing, at(1), at(1))
    monitor.observe(700.0, at(2))  # HALTED: a new state, so undated again
    assert (monitor.state_since, monitor.latched_at, monitor.latch()) == (None, None, None)
    monitor.date_latch(at(3))
    record = monitor.record()
    assert (record.state_since, record.latched_at) == (at(3), at(3))
    assert RiskMonitor.from_record(record, monitor.guards).latch() == Latch(TradingState.HALTED, DRAWDOWN_30, at(3), at(3))
    monitor.resume(rebaseline=True)
    assert (monitor.record().state_since, monitor.record().latched_at, monitor.latch()) == (None, None, None)
    monitor.date_latch(at(4))  # nothing to date while ACTIVE
    assert (monitor.state_since, monitor.latched_at) == (None, None)



def test_a_halt_laid_over_a_halt_keeps_its_start_and_is_latched_again_when_dated():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    monitor.halt("halted by alice: news")
    monitor.date_latch(at(10))
    monitor.halt("halted by alice: news")  # the kill switch pressed again
    # Undated, the record tells a guard loading it that this halt's latest latch is unknown.
    assert (monitor.record().state_since, monitor.record().latched_at, monitor.latch()) == (at(10), None, None)
    monitor.date_latch(at(70), again=True)
    assert monitor.latch() == Latch(TradingState.HALTED, "halted by alice: news", at(10), at(70))
    # A blind guard's halt over it only rewrites the reason: it keeps both dates.
    monitor.degrade(TradingState.HALTED, "no valid equity reading")
    assert monitor.latch() == Latch(TradingState.HALTED, "no valid equity reading", at(10), at(70))
    undated = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    undated.halt("supervisor gave up")
    undated.date_latch(at(5), again=True)  # a halt of unknown start, dated as it is loaded
    assert undated.latch() == Latch(TradingState.HALTED, "supervisor gave up", at(5), at(5))


def test_a_latch_refuses_a_resume_sent_before_it_saying_when_each_happened():
    halt = Latch(TradingState.HALTED, "halted by alice: news at 14:30", at(5), at(5))
    assert halt.refuses(at(5)) is None and halt.refuses(at(6)) is None
    refused = halt.refuses(datetime(2024, 3, 1, 13, 0, 4, 250_000, tzinfo=ZoneInfo("Europe/Paris")))
    assert isinstance(refused, ResumeRefused) and refused.rebaseline_helps is False
    assert str(refused) == (
        "resume refused: it was sent at 2024-03-01 12:00:04.250 UTC, before the halt in force began at "
        "2024-03-01 12:00:05.000 UTC (halted by alice: news at 14:30); send the resume again if you still mean to lift it"
    )
    again = Latch(TradingState.HALTED, "halted by alice: news at 14:30", at(5), at(65))
    assert str(again.refuses(at(30))) == (
        "resume refused: it was sent at 2024-03-01 12:00:30.000 UTC, before the halt in force was laid again at "
        "2024-03-01 12:01:05.000 UTC (halted since 2024-03-01 12:00:05.000 UTC: halted by alice: news at 14:30); "
        "send the resume again if you still mean to lift it"
    )
    reducing = Latch(TradingState.REDUCING, None, at(5), at(5))
    assert str(reducing.refuses(at(1))) == (
        "resume refused: it was sent at 2024-03-01 12:00:01.000 UTC, before the reducing state in force began at "
        "2024-03-01 12:00:05.000 UTC (no reason recorded); send the resume again if you still mean to lift it"
    )


def test_date_latch_takes_only_a_timezone_aware_moment():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0)])
    monitor.halt("drill")
    with pytest.raises(ValueError, match=r"^at must be a timezone-aware datetime, got datetime\.datetime\(2024, 3, 1, 12, 0\)$"):
        monitor.date_latch(datetime(2024, 3, 1, 12, 0))
    assert monitor.latch() is None


def test_rebaseline_blocked_says_why_a_rebaseline_would_be_refused_and_none_when_it_would_be_taken():
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(20.0), MinEquityGuard(750.0)])
    monitor.observe(900.0, at(0))
    assert monitor.rebaseline_blocked() is None  # nothing in breach: a rebaseline would be taken
    monitor.observe(760.0, at(1))
    assert monitor.rebaseline_blocked() is None  # a drawdown only: a rebaseline lifts it
    monitor.observe(700.0, at(2))
    assert monitor.rebaseline_blocked() == (
        "a rebaseline cannot lift min_equity (it moves the peak and the day's start, not a fixed level)"
    )
    monitor.observe(-5.0, at(3))
    assert monitor.rebaseline_blocked() == "no rebaseline can be taken at equity -5.00 (must be > 0)"
    assert monitor.trading_state is TradingState.HALTED  # (asking changes nothing)


# --- the trading day only moves forward -----------------------------------------------------------


def test_a_reading_stamped_before_the_trading_day_is_judged_against_its_start_and_never_takes_the_day_back():
    # A late bar or a delayed message stamped yesterday used to start yesterday again from its
    # equity, and the next reading today again from its own: a 5% limit never fired on 8%.
    monitor = RiskMonitor(10_000.0, [DailyLossGuard(5.0), MaxDrawdownGuard(50.0)])
    monitor.observe(10_000.0, at(0))
    assert monitor.observe(9_600.0, at(60)) is None
    assert monitor.observe(9_600.0, at(-86_400)) is None  # 4% below today's start
    assert (monitor.day, monitor.record().day_start_equity) == (date(2024, 3, 1), 10_000.0)
    found = monitor.observe(9_200.0, at(120))
    assert found is not None and found.breaches == (
        Verdict("daily_loss", Level.BREACH, "daily loss 8.00% >= limit 5.00% (start of day 10000.00, equity 9200.00)",
                "daily_loss_block_total"),
    )
    assert (monitor.day, monitor.record().day_start_equity) == (date(2024, 3, 1), 10_000.0)


def test_a_late_reading_past_todays_limit_fires_and_one_after_a_restart_keeps_the_saved_day():
    monitor = RiskMonitor(10_000.0, [DailyLossGuard(5.0)])
    monitor.observe(10_000.0, at(0))
    restarted = RiskMonitor.from_record(monitor.record(), monitor.guards)
    found = restarted.observe(9_400.0, at(-3 * 86_400))
    assert found is not None and [v.reason for v in found.breaches] == [
        "daily loss 6.00% >= limit 5.00% (start of day 10000.00, equity 9400.00)"
    ]
    assert (restarted.trading_state, restarted.day, restarted.record().day_start_equity) == (
        TradingState.HALTED, date(2024, 3, 1), 10_000.0)


# --- money deposited into an account at or below zero ---------------------------------------------

_RECAPITALISED = (
    "money was deposited after equity fell to zero or below (a deposit is not a recovery: the loss before it "
    "cannot be measured as a drawdown)"
)


def test_a_deposit_after_equity_fell_below_zero_is_money_added_and_only_a_rebaseline_resumes():
    # The deposit used to be refused as unscalable, and the new money then read as a recovery
    # from 101% to 1%: a plain resume lifted the halt.
    monitor = RiskMonitor(10_000.0, [MaxDrawdownGuard(20.0), MinEquityGuard(500.0)])
    monitor.observe(-100.0, at(0))
    monitor.record_cash_flow(10_000.0)
    monitor.observe(9_900.0, at(1))
    assert monitor.record().drawdown == DrawdownSnapshot(20_000.0, 20_000.0, 9_900.0, 1.01, recapitalised=True)
    assert monitor.record().day_start_equity == 9_900.0  # (the day began at -100: the same money added)
    before = monitor.record()
    with pytest.raises(ResumeRefused) as refused:
        monitor.resume()
    assert str(refused.value) == (
        "resume refused: max drawdown 50.50% >= limit 20.00% (peak 20000.00, equity 9900.00); " + _RECAPITALISED +
        "; resume with a rebaseline to measure from equity 9900.00 (the peak and the day's start set to it)"
    )
    assert refused.value.rebaseline_helps is True
    assert monitor.record() == before and monitor.trading_state is TradingState.HALTED
    assert monitor.resume(rebaseline=True) == (
        TradingState.HALTED,
        Rebaseline(old_peak=20_000.0, new_peak=9_900.0, old_day_start=9_900.0, new_day_start=9_900.0),
    )
    assert monitor.record().drawdown == DrawdownSnapshot(20_000.0, 9_900.0, 9_900.0, 1.01)
    monitor.halt("drill")
    assert monitor.resume() == (TradingState.HALTED, None)  # measured afresh: a plain resume is taken again


def test_a_deposit_into_an_emptied_account_large_enough_to_clear_every_limit_still_refuses_a_plain_resume():
    monitor = RiskMonitor(10_000.0, [MaxDrawdownGuard(20.0)])
    monitor.observe(-100.0, at(0))
    monitor.take_net_deposits(0.0)
    assert monitor.take_net_deposits(100_000.0) == 100_000.0
    assert monitor.observe(99_900.0, at(1)) is None  # 9.18% below a peak of 110,000: within 20%
    with pytest.raises(ResumeRefused) as refused:
        monitor.resume()
    assert str(refused.value) == (
        "resume refused: " + _RECAPITALISED + "; resume with a rebaseline to measure from equity 99900.00 (the peak "
        "and the day's start set to it)"
    )
    assert refused.value.rebaseline_helps is True and monitor.trading_state is TradingState.HALTED
    monitor.observe(-5.0, at(2))  # lost again before anyone resumed: no rebaseline can be taken now
    with pytest.raises(ResumeRefused) as broke:
        monitor.resume()
    assert str(broke.value) == (
        "resume refused: max drawdown 100.00% >= limit 20.00% (peak 110000.00, equity -5.00); " + _RECAPITALISED +
        "; no rebaseline can be taken at equity -5.00 (must be > 0)"
    )


def test_a_static_floor_blown_through_zero_stays_failed_whatever_is_deposited():
    # The deposit raises the start by the same money, so the floor is still out of reach.
    monitor = RiskMonitor(10_000.0, [MaxDrawdownGuard(10.0, trailing=False)])
    monitor.observe(-100.0, at(0))
    monitor.record_cash_flow(10_000.0)
    monitor.observe(9_900.0, at(1))
    with pytest.raises(ResumeRefused) as plain:
        monitor.resume()
    assert str(plain.value) == (
        "resume refused: static drawdown 50.50% >= limit 10.00% (start 20000.00, floor 18000.00, equity 9900.00); "
        + _RECAPITALISED + "; a rebaseline cannot lift max_drawdown (it moves the peak and the day's start, not a "
        "fixed level; a static floor is fixed for the account's life)"
    )
    assert plain.value.rebaseline_helps is False
    with pytest.raises(ResumeRefused, match=r"^resume refused, even with a rebaseline: static drawdown 50\.50% "):
        monitor.resume(rebaseline=True)
    assert monitor.tracker.recapitalised is True


# --- a static floor is fixed ----------------------------------------------------------------------


def test_a_rebaseline_for_a_daily_loss_leaves_the_static_floor_where_it_was():
    # The rebaseline used to set the start to 9,400 too: the floor fell from 9,000 to 8,460 and
    # a fall to 9,000 went through it unseen.
    monitor = RiskMonitor(10_000.0, [MaxDrawdownGuard(10.0, trailing=False), DailyLossGuard(5.0)])
    monitor.observe(10_000.0, at(0))
    monitor.observe(9_400.0, at(1))
    with pytest.raises(ResumeRefused) as refused:
        monitor.resume()
    assert str(refused.value) == (
        "resume refused: daily loss 6.00% >= limit 5.00% (start of day 10000.00, equity 9400.00); resume with a "
        "rebaseline to measure from equity 9400.00 (the peak and the day's start set to it)"
    )
    assert refused.value.rebaseline_helps is True
    monitor.resume(rebaseline=True)
    assert monitor.record().drawdown == DrawdownSnapshot(10_000.0, 9_400.0, 9_400.0, 0.06)
    found = monitor.observe(9_000.0, at(2))
    assert found is not None and [v.reason for v in found.breaches] == [
        "static drawdown 10.00% >= limit 10.00% (start 10000.00, floor 9000.00, equity 9000.00)"
    ]


@settings(max_examples=100, deadline=None)
@given(curve=equity_curves(min_size=2, max_size=30), limit=st.floats(1.0, 50.0), data=st.data())
def test_no_resume_of_any_kind_moves_a_static_floor(curve, limit, data):
    # Past the floor every resume is refused, offering no rebaseline; above it every one is taken.
    guard = MaxDrawdownGuard(limit, trailing=False)
    monitor = RiskMonitor(curve[0], [guard])
    for index, equity in enumerate(curve):
        monitor.observe(equity, at(index))
        rebaseline = data.draw(st.booleans(), label="rebaseline")
        if guard.level(equity, equity, curve[0], equity) is Level.BREACH:
            with pytest.raises(ResumeRefused) as refused:
                monitor.resume(rebaseline=rebaseline)
            assert refused.value.rebaseline_helps is False
        else:
            monitor.resume(rebaseline=rebaseline)
            assert monitor.trading_state is TradingState.ACTIVE
        assert monitor.tracker.start_equity == curve[0]


def test_readings_at_the_ends_of_a_floats_range_halt_and_leave_a_record_that_can_be_saved():
    # The drawdown came to infinity: HALTED, and then record() and state() raised, so the guard
    # could not save the halt it had latched (from a property-test trial).
    monitor = RiskMonitor(1.0, [MaxDrawdownGuard(20)])
    monitor.observe(1.7976931348623155e308, T0)
    assert monitor.observe(-2.9937604643020797e292, T0 + timedelta(hours=1)).state is TradingState.HALTED
    record = monitor.record()
    assert record.drawdown.max_drawdown == monitor.state().current_drawdown == sys.float_info.max
    assert RiskMonitor.from_record(record, [MaxDrawdownGuard(20)]).trading_state is TradingState.HALTED
