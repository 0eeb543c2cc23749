"""RiskMonitor as a state machine, against a small independent model of what it must do.

The model keeps its own peak, start, start-of-day equity, trading state and block counts from the
documented rules; after every step the monitor must agree with it. Guard decisions use the rules'
formulas written out here; their inputs are the model's numbers, which are exact until the first
cash flow. After a cash flow the model's scaled numbers may differ from the monitor's by rounding,
so there the numbers are compared with isclose and the decisions use the monitor's numbers from
before the step updated exactly (a running max, a day reset), never the monitor's own decision.

The trading day only moves forward: a reading stamped before it (a late one) is judged against
its start. A rebaseline moves the peak and the day's start, never the start (a static floor is
fixed). A deposit while equity is zero or below is added as money and marks the account
recapitalised, which no plain resume gets past.
"""

from __future__ import annotations

import math
from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from strategies import (
    aware_datetimes,
    cash_flows,
    day_rollovers,
    equities,
    equity_curves,
    guard_sets,
    timezones,
)

from runtime import DailyLossGuard, Level, MaxDrawdownGuard, MinEquityGuard, RiskMonitor, TradingState
from runtime.risk.guards import LIMIT_TOLERANCE
from runtime.risk.monitor import ResumeRefused

CLOSE = {"rel_tol": 1e-9, "abs_tol": 1e-9}


def expected_level(guard, equity: float, peak: float, start: float, day_start: float) -> Level:
    """Each rule as the issue states it."""
    if isinstance(guard, MinEquityGuard):
        if equity < guard.min_equity:
            return Level.BREACH
        if guard.warn_at is not None and equity < guard.min_equity / guard.warn_at:
            return Level.WARN
        return Level.OK
    if isinstance(guard, DailyLossGuard):
        if day_start <= 0:
            return Level.OK
        base = day_start
    else:
        assert isinstance(guard, MaxDrawdownGuard)
        base = peak if guard.trailing else start
    loss = (base - equity) / base
    limit = guard.limit_percent / 100 * (1 - LIMIT_TOLERANCE)  # "reaches", as the guards document it
    if loss >= limit:
        return Level.BREACH
    if guard.warn_at is not None and loss >= limit * guard.warn_at:
        return Level.WARN
    return Level.OK


def near(a: float, b: float) -> bool:
    return math.isclose(a, b, **CLOSE)


class RiskMonitorMachine(RuleBasedStateMachine):
    @initialize(
        setup=timezones().flatmap(lambda zone: st.tuples(st.just(zone), guard_sets(timezone=zone))),
        start=equities(),
        data=st.data(),
    )
    def begin(self, setup, start, data):
        zone, guards = setup
        self.guards = guards
        daily = [g for g in guards if isinstance(g, DailyLossGuard)]
        # The monitor's day is in its daily guard's zone, UTC without one (its documented rule).
        self.zone = daily[0].timezone if daily else "UTC"
        self.monitor = RiskMonitor(start, guards)
        self.now = data.draw(aware_datetimes(zone), label="now")
        # The model.
        self.start = start
        self.peak = start
        self.latest = start
        self.day = None
        self.day_start = start
        self.exact = True  # no cash flow yet: every model number must match exactly
        self.since_flow: list[float] = []
        self.state = TradingState.ACTIVE
        self.counts = {g.block_counter: 0 for g in guards}
        self.max_drawdown = 0.0
        self.previous_max_drawdown = 0.0
        self.last_check = None
        self.recapitalised = False
        self.previous_day = None

    # --- the model's step ------------------------------------------------------------------------

    def _expect(self, equity: float, base_peak: float, base_start: float, base_day_start: float, at=None):
        """Advance the model by one reading made at ``at`` (now by default); return what the
        monitor must report for it.

        ``base_*`` are the decision inputs before the reading; they are updated here exactly.
        """
        at = self.now if at is None else at
        day = at.astimezone(ZoneInfo(self.zone)).date()
        new_day = self.day is None or day > self.day  # never back: a late reading is judged against today
        if new_day:
            self.day = day
            self.day_start = equity
        day_start = equity if new_day else base_day_start
        peak = max(base_peak, equity)
        self.peak = max(self.peak, equity)
        self.latest = equity
        self.since_flow.append(equity)
        self.last_check = at
        self.max_drawdown = max(self.max_drawdown, 1 - equity / peak)

        levels = [expected_level(g, equity, peak, base_start, day_start) for g in self.guards]
        breaching = [g.name for g, lv in zip(self.guards, levels) if lv is Level.BREACH]
        warning = [g.name for g, lv in zip(self.guards, levels) if lv is Level.WARN]
        previous = self.state
        if breaching:
            if previous is not TradingState.HALTED:
                self.state = TradingState.HALTED
                for guard, level in zip(self.guards, levels):
                    if level is Level.BREACH:
                        self.counts[guard.block_counter] += 1
        elif previous is not TradingState.HALTED:
            self.state = TradingState.REDUCING if warning else TradingState.ACTIVE
        silent = not breaching and not warning and previous is not TradingState.REDUCING
        expected = None if silent else (breaching, warning, previous, self.state, equity)
        return expected, peak, day_start

    def _bases(self):
        record = self.monitor.record()
        return record.drawdown.peak_equity, record.drawdown.start_equity, record.day_start_equity

    @staticmethod
    def _seen(assessment):
        if assessment is None:
            return None
        return (
            [v.guard for v in assessment.breaches],
            [v.guard for v in assessment.warnings],
            assessment.previous_state,
            assessment.state,
            assessment.equity,
        )

    def _next_equities(self, data, size: int) -> list[float]:
        start = min(max(self.latest, 1e-2), 1e9)
        return data.draw(equity_curves(start=start, min_size=size + 1, max_size=size + 1), label="equities")[1:]

    # --- rules ---------------------------------------------------------------------------------

    @rule(data=st.data())
    def observe(self, data):
        (equity,) = self._next_equities(data, 1)
        peak, start, day_start = self._bases()
        expected, _, _ = self._expect(equity, peak, start, day_start)
        assert self._seen(self.monitor.observe(equity, self.now)) == expected

    @rule(equity=equities())
    def observe_a_jump(self, equity):
        peak, start, day_start = self._bases()
        expected, _, _ = self._expect(equity, peak, start, day_start)
        assert self._seen(self.monitor.observe(equity, self.now)) == expected

    @rule()
    def observe_the_peak_again(self):
        equity = self.monitor.tracker.peak_equity
        peak, start, day_start = self._bases()
        expected, _, _ = self._expect(equity, peak, start, day_start)
        assert self._seen(self.monitor.observe(equity, self.now)) == expected
        assert self.monitor.tracker.drawdown == 0.0

    @rule(data=st.data(), back=st.integers(1, 3 * 86400))
    def observe_a_late_reading(self, data, back):
        # Stamped up to three days before now (a late bar, a delayed message): it may fall on an
        # earlier trading day, which must not start again.
        (equity,) = self._next_equities(data, 1)
        late = (self.now.astimezone(UTC) - timedelta(seconds=back)).astimezone(self.now.tzinfo)
        peak, start, day_start = self._bases()
        expected, _, _ = self._expect(equity, peak, start, day_start, at=late)
        assert self._seen(self.monitor.observe(equity, late)) == expected

    @rule(equity=st.one_of(st.just(0.0), st.floats(-1e6, 0.0)))
    def wipe_out(self, equity):
        peak, start, day_start = self._bases()
        expected, _, _ = self._expect(equity, peak, start, day_start)
        assert self._seen(self.monitor.observe(equity, self.now)) == expected

    @precondition(lambda self: self.monitor.tracker.latest_equity <= 0)
    @rule(amount=st.one_of(st.floats(1e-2, 1e9), st.sampled_from([100.0, 10_000.0])))
    def deposit_at_or_below_zero(self, amount):
        # No unit value to scale by: the money is added to the peak, the start and the day's
        # start, so the loss in money stays, and the account is recapitalised.
        loss = self.monitor.tracker.peak_equity - self.monitor.tracker.latest_equity
        self.monitor.record_cash_flow(amount)
        self.peak += amount
        self.start += amount
        self.day_start += amount
        self.latest += amount
        self.exact = False
        self.since_flow = []
        self.recapitalised = True
        tracker = self.monitor.tracker
        assert math.isclose(tracker.peak_equity - tracker.latest_equity, loss, rel_tol=1e-9, abs_tol=1e-6)

    @rule(data=st.data(), size=st.integers(1, 6))
    def observe_a_batch(self, data, size):
        batch = self._next_equities(data, size)
        peak, start, day_start = self._bases()
        expected = []
        for equity in batch:
            found, peak, day_start = self._expect(equity, peak, start, day_start)
            if found is not None:
                expected.append(found)
        assert [self._seen(a) for a in self.monitor.observe_many(batch, self.now)] == expected

    @rule(data=st.data(), size=st.integers(1, 6))
    def observe_changes_only(self, data, size):
        # The same steps, with nothing worked out for a reading taken while HALTED.
        batch = self._next_equities(data, size)
        peak, start, day_start = self._bases()
        expected = []
        for equity in batch:
            halted = self.state is TradingState.HALTED
            found, peak, day_start = self._expect(equity, peak, start, day_start)
            expected.append(None if halted else found)
        if size == 1:
            assert [self._seen(self.monitor.observe(batch[0], self.now, changes_only=True))] == expected
        else:
            found = self.monitor.observe_many(batch, self.now, changes_only=True)
            assert [self._seen(a) for a in found] == [e for e in expected if e is not None]

    @rule(data=st.data(), size=st.integers(1, 12), changes_only=st.booleans())
    def observe_a_series(self, data, size, changes_only):
        # Readings each at its own time, some an hour or more apart (so a series may cross
        # midnight): as many single readings, whether taken in one pass or one by one.
        batch = self._next_equities(data, size)
        gaps = data.draw(st.lists(st.integers(0, 3 * 3600), min_size=size, max_size=size), label="gaps")
        times = []
        peak, start, day_start = self._bases()
        expected = []
        for equity, gap in zip(batch, gaps):
            self.now = (self.now.astimezone(UTC) + timedelta(seconds=gap)).astimezone(self.now.tzinfo)
            times.append(self.now)
            halted = self.state is TradingState.HALTED
            found, peak, day_start = self._expect(equity, peak, start, day_start)
            if found is not None and not (changes_only and halted):
                expected.append(found)
        found = self.monitor.observe_series(batch, times, changes_only=changes_only)
        assert [self._seen(a) for a in found] == expected
        assert self.monitor.record().last_check_time == times[-1]

    @rule(seconds=st.integers(0, 4 * 3600))
    def tick(self, seconds):
        # In UTC: adding to a local datetime adds wall-clock time, which DST can run backwards.
        self.now = (self.now.astimezone(UTC) + timedelta(seconds=seconds)).astimezone(self.now.tzinfo)

    @rule(data=st.data())
    def roll_over_midnight(self, data):
        before = self.now.astimezone(ZoneInfo(self.zone)).date()
        moments = data.draw(day_rollovers(self.zone, start=self.now, min_size=2, max_size=3), label="moments")
        self.now = moments[-1]
        assert self.now.astimezone(ZoneInfo(self.zone)).date() > before

    @precondition(lambda self: 1.0 <= self.monitor.tracker.latest_equity <= 1e8)
    @rule(data=st.data())
    def cash_flow(self, data):
        latest = self.monitor.tracker.latest_equity
        amount = data.draw(cash_flows(latest), label="amount")
        drawdown = self.monitor.tracker.drawdown
        factor = (latest + amount) / latest
        self.monitor.record_cash_flow(amount)
        self.peak *= factor
        self.start *= factor
        self.day_start *= factor
        self.latest += amount
        self.exact = False
        self.since_flow = []
        assert near(self.monitor.tracker.drawdown, drawdown)

    @rule(rebaseline=st.booleans())
    def resume(self, rebaseline):
        # Refused while the latest equity is past a hard limit, judged by the model's own rules
        # on the numbers the monitor decides with (after a rebaseline: the peak and the day's
        # start at the latest equity, the start where it was); without a rebaseline, refused
        # too while the account is recapitalised.
        peak, start, day_start = self._bases()
        latest = self.monitor.tracker.latest_equity
        if rebaseline:
            peak = day_start = latest
        breaching = (rebaseline and latest <= 0) or (not rebaseline and self.recapitalised) or any(
            expected_level(g, latest, peak, start, day_start) is Level.BREACH for g in self.guards
        )
        before = self.monitor.record()
        try:
            previous, changed = self.monitor.resume(rebaseline)
        except ResumeRefused as exc:
            assert breaching, f"refused although no limit is breached: {exc}"
            assert self.monitor.record() == before
            return
        assert not breaching
        assert previous is self.state
        self.state = TradingState.ACTIVE
        if rebaseline:
            assert changed is not None and changed.new_peak == changed.new_day_start == latest
            self.peak = self.day_start = self.latest = latest
            self.since_flow = [latest]
            self.recapitalised = False
        else:
            assert changed is None

    @rule()
    def fail_safe_halt(self):
        assert self.monitor.halt("fail-safe") is self.state
        self.state = TradingState.HALTED

    @rule()
    def restart(self):
        record = self.monitor.record()
        self.monitor = RiskMonitor.from_record(record, self.guards)
        assert self.monitor.record() == record

    # --- invariants ------------------------------------------------------------------------------

    @invariant()
    def trading_state_matches_the_model(self):
        assert self.monitor.trading_state is self.state
        assert self.monitor.state().cap_triggered is (self.state is TradingState.HALTED)

    @invariant()
    def block_counts_count_each_new_halt_once_per_guard_in_breach(self):
        assert self.monitor.block_counts == self.counts

    @invariant()
    def peak_is_at_least_every_reading_since_the_last_cash_flow_and_the_model_peak(self):
        tracker = self.monitor.tracker
        assert all(tracker.peak_equity >= equity for equity in self.since_flow)
        assert tracker.peak_equity >= tracker.latest_equity
        if self.exact:
            assert (tracker.peak_equity, tracker.start_equity, tracker.latest_equity) == (
                self.peak,
                self.start,
                self.latest,
            )
        else:
            assert near(tracker.peak_equity, self.peak)
            assert near(tracker.start_equity, self.start)
            assert near(tracker.latest_equity, self.latest)

    @invariant()
    def drawdown_is_zero_exactly_at_the_peak(self):
        tracker = self.monitor.tracker
        assert (tracker.drawdown == 0.0) is (tracker.latest_equity == tracker.peak_equity)

    @invariant()
    def max_drawdown_only_rises_and_matches_the_model(self):
        worst = self.monitor.tracker.max_drawdown
        assert worst >= self.previous_max_drawdown
        assert worst >= self.monitor.tracker.drawdown - 1e-12
        assert near(worst, self.max_drawdown)
        self.previous_max_drawdown = worst

    @invariant()
    def day_start_is_the_first_reading_of_the_day(self):
        record = self.monitor.record()
        assert record.day == self.day
        if self.exact:
            assert record.day_start_equity == self.day_start
        else:
            assert near(record.day_start_equity, self.day_start)
        assert record.last_check_time == self.last_check

    @invariant()
    def the_day_never_goes_back(self):
        day = self.monitor.record().day
        assert self.previous_day is None or (day is not None and day >= self.previous_day)
        self.previous_day = day

    @invariant()
    def only_a_deposit_at_or_below_zero_recapitalises_and_only_a_rebaseline_clears_it(self):
        assert self.monitor.tracker.recapitalised is self.recapitalised
        assert self.monitor.record().drawdown.recapitalised is self.recapitalised

    @invariant()
    def the_record_round_trips(self):
        record = self.monitor.record()
        assert RiskMonitor.from_record(record, self.guards).record() == record


RiskMonitorMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=30, deadline=None, report_multiple_bugs=False
)
TestRiskMonitorMachine = RiskMonitorMachine.TestCase
