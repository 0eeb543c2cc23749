"""The guards' bookkeeping in one pure object: peak, start of day, the latched trading state."""

from __future__ import annotations

import math
import operator
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from itertools import accumulate, repeat
from zoneinfo import ZoneInfo

import attrs

from runtime.errors import TradewardenError
from runtime.risk.drawdown import DrawdownSnapshot, DrawdownTracker
from runtime.risk.guards import (
    DailyLossGuard,
    Guard,
    GuardState,
    Level,
    MaxDrawdownGuard,
    TradingState,
    Verdict,
)
from runtime.validation import aware_datetime, finite_number

__all__ = ["Assessment", "GuardRecord", "Latch", "Rebaseline", "ResumeRefused", "RiskMonitor", "SeriesInterrupted"]

_UTC = ZoneInfo("UTC")
_NEVER = datetime.min.replace(tzinfo=UTC)
_ONE_DAY = timedelta(days=1)
_RECAPITALISED = (
    "money was deposited after equity fell to zero or below (a deposit is not a recovery: the loss before it "
    "cannot be measured as a drawdown)"
)


@attrs.frozen
class Assessment:
    """What one reading changed: the findings and the trading state before and after it.

    ``newly_halted`` is true on the reading that moved trading to HALTED: the one that must
    liquidate, alert and be counted. A breach while already halted has ``breaches`` but is not new.
    """

    breaches: tuple[Verdict, ...]
    warnings: tuple[Verdict, ...]
    previous_state: TradingState
    state: TradingState
    equity: float
    at: datetime
    peak_equity: float  # the peak as the reading left it (later readings of a batch may move it)

    @property
    def drawdown(self) -> float:
        """The drawdown from the peak at this reading, as a fraction."""
        return (self.peak_equity - self.equity) / self.peak_equity

    @property
    def newly_halted(self) -> bool:
        """True when this reading is the one that latched HALTED."""
        return self.state is TradingState.HALTED and self.previous_state is not TradingState.HALTED

    @property
    def state_changed(self) -> bool:
        """True when the trading state differs from before the reading."""
        return self.state is not self.previous_state


@attrs.frozen
class GuardRecord:
    """Everything the guard must get back after a restart; what the state store persists.

    ``state_since`` is when the HALTED or REDUCING in force began, and ``latched_at`` when it
    was last latched: its start, or a halt laid again over it since (a kill switch pressed while
    halted), as the guard published them (see `RiskMonitor.date_latch`). Both None while ACTIVE.
    A non-ACTIVE record without them (saved before they were kept, or by a part that could not
    date its halt, such as the fail-safe) has a halt of unknown start: a guard that loads it
    dates it at its own start, the safe side (only a resume sent after that start lifts it).

    ``day_start_kept_into`` is the day, by the guard's clock, on which a fresh guard took its
    first reading stamped the day before (see `RiskMonitor.open_on`): when the readings reach
    it, that day keeps ``day_start_equity`` as its start. None otherwise, and in records saved
    before it was kept.
    """

    drawdown: DrawdownSnapshot
    trading_state: TradingState
    reason: str | None
    day: date | None
    day_start_equity: float | None
    last_check_time: datetime | None
    block_counts: tuple[tuple[str, int], ...] = ()
    net_deposits: float | None = None  # the account's net deposits at the latest reading, when known
    state_since: datetime | None = None
    latched_at: datetime | None = None
    day_start_kept_into: date | None = None


class SeriesInterrupted(TradewardenError, RuntimeError):
    """A rule raised on the reading at ``index`` of a series (`RiskMonitor.observe_series`):
    the readings before it were taken, ``found`` holding their assessments; that one was left
    as `RiskMonitor.observe` leaves a reading on which a rule raises; the rest were not taken.
    The rule's exception is the ``__cause__``."""

    def __init__(self, index: int, found: list[Assessment]) -> None:
        super().__init__(f"a rule raised on reading {index} of the series")
        self.index = index
        self.found = found


class ResumeRefused(TradewardenError, RuntimeError):
    """A resume was refused because the account is still past a hard limit; the message names
    the limit and the numbers, and how to resume anyway (rebaseline) where that can help, when
    ``rebaseline_helps`` is True: a resume with a rebaseline would be taken."""

    def __init__(self, message: str, rebaseline_helps: bool = False) -> None:
        super().__init__(message)
        self.rebaseline_helps = rebaseline_helps

    def __reduce__(self) -> tuple[type[ResumeRefused], tuple[str, bool]]:
        # Pickled whole (to a fleet's caller through Ray): the flag is not one of the args.
        return type(self), (str(self), self.rebaseline_helps)


@attrs.frozen
class Rebaseline:
    """What a rebaselining resume changed: the peak and the day's start, before and after."""

    old_peak: float
    new_peak: float
    old_day_start: float
    new_day_start: float


@attrs.frozen
class Latch:
    """A HALTED or REDUCING state in force, as a resume must weigh it: the ``state``, its
    ``reason``, when it began (``since``, what the status shows as ``state_since``) and when it
    was last latched (``latched_at``: its start, or a halt laid again over it since)."""

    state: TradingState
    reason: str | None
    since: datetime
    latched_at: datetime

    def refuses(self, sent_at: datetime) -> ResumeRefused | None:
        """The refusal of a resume sent at ``sent_at`` (timezone-aware), before this latch was
        last laid: whoever sent it had not seen it, so it must not lift it. The message says when
        the resume was sent, when the latch began (and was laid again, if it was), its reason,
        and to send the resume again. None for a resume sent at or after ``latched_at``."""
        if sent_at >= self.latched_at:
            return None
        what = "the halt" if self.state is TradingState.HALTED else "the reducing state"
        why = self.reason or "no reason recorded"
        if self.latched_at == self.since:
            when = f"began at {_moment(self.since)} ({why})"
        else:
            when = f"was laid again at {_moment(self.latched_at)} ({self.state.value} since {_moment(self.since)}: {why})"
        return ResumeRefused(
            f"resume refused: it was sent at {_moment(sent_at)}, before {what} in force {when}; "
            "send the resume again if you still mean to lift it"
        )


def _moment(at: datetime) -> str:
    # To the millisecond: a halt and a resume can fall within one second.
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _clear_line_of(guard: Guard, key: tuple[float, float]) -> tuple[float, float]:
    # A line that is not two real numbers (None, NaN, text) settles nothing: that rule is
    # always checked. (A NaN kept here would be dropped by max() or not, by the rules' order.)
    method = getattr(guard, "clear_line", None)
    line = method(*key) if callable(method) else None
    if isinstance(line, tuple) and len(line) == 2 and all(_real(part) for part in line):
        return float(line[0]), float(line[1])
    return math.inf, math.inf


def _real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


# The times a trading day can be worked out for in any zone: the day (and the day after it)
# of a time closer to the ends of datetime's range can fall outside it (OverflowError).
_EARLIEST = datetime(1, 1, 3, tzinfo=UTC)
_LATEST = datetime(9999, 12, 29, tzinfo=UTC)


def _check_time(at: datetime, field: str = "at") -> None:
    aware_datetime(field, at)
    if not _EARLIEST <= at <= _LATEST:  # (compared as instants, which cannot overflow)
        raise ValueError(f"{field} must be between {_EARLIEST.date()} and {_LATEST.date()} (UTC), got {at!r}")


def _plain(equities: Sequence[float], times: Sequence[datetime]) -> bool:
    # Every reading a finite float and every time a datetime in UTC, in order: then a series
    # needs no check per reading. In UTC a time's wall clock is its instant (no fold, no
    # offset), so comparing them (and bisecting on them) is comparing instants. Each test runs
    # in C over the whole series.
    if set(map(type, equities)) - {float} or set(map(type, times)) - {datetime}:
        return False
    if not math.isfinite(sum(equities)):  # (any NaN or infinity makes the sum one)
        return False
    if set(map(_TZINFO, times)) - {UTC}:
        return False
    return all(map(operator.le, times, times[1:]))


_TZINFO = operator.attrgetter("tzinfo")


class RiskMonitor:
    """Runs every guard on each equity reading and latches HALTED on the first breach.

    Rules: a breach moves trading to HALTED, which stays until `resume`; a warning moves ACTIVE to
    REDUCING, and REDUCING returns to ACTIVE when no guard warns. The peak never resets. Each new
    HALTED counts once for every guard in breach (``block_counts``, keyed by its counter name).

    A change of state leaves the new state undated (``state_since`` and ``latched_at`` None), and
    a halt laid over a halt leaves ``latched_at`` undated, until the owner dates it with
    `date_latch` as it makes the change public: the monitor cannot know when anyone could see it.
    """

    def __init__(self, start_equity: float, guards: Sequence[Guard]) -> None:
        self._tracker = DrawdownTracker(start_equity)
        self._guards = tuple(guards)
        daily = [g for g in self._guards if isinstance(g, DailyLossGuard)]
        if len({g.timezone for g in daily}) > 1:
            raise ValueError(f"daily loss guards must share one timezone, got {[g.timezone for g in daily]!r}")
        self._zone = daily[0].zone if daily else _UTC
        self._state = TradingState.ACTIVE
        self._reason: str | None = None
        self._day: date | None = None
        self._day_start: float = self._tracker.start_equity
        self._last_check: datetime | None = None
        self._block_counts: dict[str, int] = {g.block_counter: 0 for g in self._guards}
        self._day_from = self._day_until = _NEVER  # the current day's bounds in UTC, once known
        self._opened_on: date | None = None  # the owner's day as it opened this monitor (see open_on)
        self._late_into: date | None = None  # the day a late first reading was taken on: it keeps that day's start
        self._net_deposits: float | None = None
        self._since: datetime | None = None
        self._latched_at: datetime | None = None
        self._clear_for: tuple[float, float] | None = None
        self._clear = (math.inf, math.inf)

    @classmethod
    def from_record(cls, record: GuardRecord, guards: Sequence[Guard]) -> RiskMonitor:
        """A monitor that carries on exactly where the one that wrote ``record`` stopped."""
        monitor = cls(record.drawdown.start_equity, guards)
        monitor._tracker = DrawdownTracker.restore(record.drawdown)
        monitor._state = record.trading_state
        monitor._reason = record.reason
        monitor._day = record.day
        if record.day_start_equity is not None:
            monitor._day_start = record.day_start_equity
        monitor._last_check = record.last_check_time
        monitor._block_counts.update(dict(record.block_counts))
        monitor._net_deposits = record.net_deposits
        monitor._since, monitor._latched_at = record.state_since, record.latched_at
        monitor._late_into = record.day_start_kept_into
        return monitor

    def record(self) -> GuardRecord:
        """The monitor's whole state as a frozen value, for the state store."""
        return GuardRecord(
            drawdown=self._tracker.snapshot(),
            trading_state=self._state,
            reason=self._reason,
            day=self._day,
            day_start_equity=self._day_start,
            last_check_time=self._last_check,
            block_counts=tuple(sorted(self._block_counts.items())),
            net_deposits=self._net_deposits,
            state_since=self._since,
            latched_at=self._latched_at,
            day_start_kept_into=self._late_into,
        )

    def observe(self, equity: float, at: datetime, *, changes_only: bool = False) -> Assessment | None:
        """Take one reading made at ``at`` (timezone-aware); None when nothing is found or changed.

        With ``changes_only``, None for every reading taken while HALTED: nothing but `resume`
        moves a HALTED monitor, so the breaches such a reading finds change nothing, and they are
        not worked out (their reasons are formatted text). The monitor's state after the reading
        is the same either way. A caller that acts only on what changed (the guard) asks for it.

        A bad reading raises ``TypeError``/``ValueError`` naming the value and changes nothing.
        """
        if type(equity) is not float or equity - equity != 0.0:
            equity = finite_number("equity", equity)
        _check_time(at)
        return self._step(equity, at, changes_only)

    def observe_many(self, equities: Iterable[float], at: datetime, *, changes_only: bool = False) -> list[Assessment]:
        """Take a batch of readings made at ``at``; exactly as observing them one at a time
        (with the same ``changes_only``).

        The batch is checked whole before any of it is taken, so a bad reading (named with its
        index) leaves the monitor unchanged. Returns the assessments in reading order.
        """
        _check_time(at)
        readings = [
            e if type(e) is float and e - e == 0.0 else finite_number(f"equities[{i}]", e)
            for i, e in enumerate(equities)
        ]
        step = self._step
        found = []
        for equity in readings:
            assessment = step(equity, at, changes_only)
            if assessment is not None:
                found.append(assessment)
        return found

    def observe_series(
        self, equities: Sequence[float], times: Sequence[datetime], *, changes_only: bool = False
    ) -> list[Assessment]:
        """Take readings each made at its own time (``equities[i]`` at ``times[i]``), in order;
        exactly as observing them one at a time (with the same ``changes_only``).

        The series is checked whole before any of it is taken, so a bad reading or time (named
        with its index) leaves the monitor unchanged. A rule that raises on a reading ends the
        series there with `SeriesInterrupted`, saying which reading and what was found before
        it. Returns the assessments in reading order. Readings in UTC and in time order are
        taken a run at a time where they can only move the tracker: inside the current trading
        day, and clear of every rule (or HALTED, with ``changes_only``).
        """
        if len(equities) != len(times):
            raise ValueError(f"equities and times must be as long as each other, got {len(equities)} and {len(times)}")
        plain = _plain(equities, times)
        readings = equities
        if not plain:
            readings = [
                e if type(e) is float and e - e == 0.0 else finite_number(f"equities[{i}]", e)
                for i, e in enumerate(equities)
            ]
            for index, at in enumerate(times):
                _check_time(at, f"times[{index}]")
        elif times:  # in UTC and in order: its ends bound the rest
            _check_time(times[0], "times[0]")
            _check_time(times[-1], f"times[{len(times) - 1}]")
        step = self._step
        found: list[Assessment] = []
        index, count = 0, len(readings)
        while index < count:
            end = self._clear_run(readings, times, index, changes_only) if plain else index
            if end > index:
                self._tracker.observe_many(readings[index:end])
                self._last_check = times[end - 1]
                index = end
                continue
            try:
                assessment = step(readings[index], times[index], changes_only)
            except Exception as exc:  # a rule's own code (the readings and times were checked)
                raise SeriesInterrupted(index, found) from exc
            if assessment is not None:
                found.append(assessment)
            index += 1
        return found

    def _clear_run(self, equities: Sequence[float], times: Sequence[datetime], start: int, changes_only: bool) -> int:
        # The end of the run of readings from ``start`` that would change only the tracker and
        # the last check (``start`` itself when there is none): inside the current day (so no
        # day rolls; the times are in order) and settled by the clear line of _step, each
        # against the peak that includes it, or all taken while HALTED with changes_only. The
        # tests run in C and stop at the first reading that fails.
        state = self._state
        if state is TradingState.REDUCING or (state is TradingState.HALTED and not changes_only):
            return start
        if not self._day_from <= times[start] < self._day_until:
            return start
        end = bisect_left(times, self._day_until, start)
        if state is TradingState.HALTED:
            return end
        try:
            factor, floor = self._clear_line()
        except Exception:  # a rule's own line failed: the reading is judged alone, and fails there as alone
            return start
        run = range(start, end)
        peaks = accumulate(map(equities.__getitem__, run), max, initial=self._tracker.peak_equity)
        next(peaks)
        lines = map(max, repeat(floor), map(operator.mul, peaks, repeat(factor)))
        try:
            return start + operator.indexOf(map(operator.gt, map(equities.__getitem__, run), lines), False)
        except ValueError:  # every reading of the run is clear
            return end

    def _step(self, equity: float, at: datetime, changes_only: bool) -> Assessment | None:
        tracker = self._tracker
        tracker.observe(equity)
        self._last_check = at
        if not self._day_from <= at < self._day_until:
            self._roll_day(at, equity)
        previous = self._state
        if previous is not TradingState.REDUCING:
            if changes_only and previous is TradingState.HALTED:
                return None  # (see _assess: nothing moves a HALTED monitor but resume)
            # Most readings are far from every limit: one comparison settles them.
            factor, floor = self._clear_line()
            if equity > floor and equity > tracker.peak_equity * factor:
                return None
        peak, start, day_start = tracker.peak_equity, tracker.start_equity, self._day_start
        worst = Level.OK
        for guard in self._guards:
            level = guard.level(equity, peak, start, day_start)
            if level > worst:
                worst = level
        if worst is Level.OK and previous is not TradingState.REDUCING:
            return None
        return self._assess(equity, at, previous)

    def _roll_day(self, at: datetime, equity: float) -> None:
        day = at.astimezone(self._zone).date()
        if self._day is not None and day < self._day:
            # A reading stamped before the current trading day (a late bar, a delayed message)
            # was still made on this account: it is judged against this day's start, which can
            # only add to what is found. Starting that earlier day again would take its equity
            # as a new day's start, and the next reading a third, hiding the day's loss.
            return
        if day != self._day:
            # See open_on: a late first reading's equity starts the day it was taken on too.
            keeps = self._day is not None and day == self._late_into
            first_late = self._day is None and self._opened_on is not None and day == self._opened_on - _ONE_DAY
            self._late_into = self._opened_on if first_late else None
            self._day = day
            if not keeps:
                self._day_start = equity
        begins = datetime.combine(day, time(), tzinfo=self._zone).astimezone(UTC)
        ends = datetime.combine(day + timedelta(days=1), time(), tzinfo=self._zone).astimezone(UTC)
        # A zone whose midnight is skipped or doubled may not bracket ``at``: then no shortcut.
        self._day_from, self._day_until = (begins, ends) if begins <= at < ends else (_NEVER, _NEVER)

    def _clear_line(self) -> tuple[float, float]:
        key = (self._tracker.start_equity, self._day_start)
        if key != self._clear_for:
            # A rule of the user's own without a usable clear line is simply always checked.
            lines = [_clear_line_of(guard, key) for guard in self._guards]
            self._clear = (max((f for f, _ in lines), default=-math.inf), max((g for _, g in lines), default=-math.inf))
            self._clear_for = key
        return self._clear

    def _assess(self, equity: float, at: datetime, previous: TradingState) -> Assessment:
        tracker = self._tracker
        args = (equity, tracker.peak_equity, tracker.start_equity, self._day_start)
        verdicts = [v for v in (g.verdict(*args) for g in self._guards) if v is not None]
        breaches = tuple(v for v in verdicts if v.level is Level.BREACH)
        warnings = tuple(v for v in verdicts if v.level is Level.WARN)
        if breaches:
            if previous is not TradingState.HALTED:
                self._become(TradingState.HALTED, "; ".join(v.reason for v in breaches))
                for verdict in breaches:
                    self._block_counts[verdict.block_counter] += 1
        elif previous is not TradingState.HALTED:
            self._become(TradingState.REDUCING if warnings else TradingState.ACTIVE,
                         "; ".join(v.reason for v in warnings) or None)
        return Assessment(breaches, warnings, previous, self._state, equity, at, tracker.peak_equity)

    def _become(self, state: TradingState, reason: str | None) -> None:
        # Every change of state goes through here: a new state is undated until its owner dates it.
        if state is not self._state:
            self._since = self._latched_at = None
        self._state, self._reason = state, reason

    def resume(self, rebaseline: bool = False) -> tuple[TradingState, Rebaseline | None]:
        """Lift a HALTED or REDUCING state back to ACTIVE; returns the old state, and what a
        rebaseline changed (None without one).

        While the latest equity is still past a hard limit, resuming would only halt again at the
        next reading (after an order has gone out), so it is refused with `ResumeRefused` naming
        the limit and the numbers, and nothing changes. So is a resume of an account that was
        `recapitalised` (money deposited while its equity was zero or below): its loss before
        the deposit cannot be measured as a drawdown, and the deposit must not read as a
        recovery. ``rebaseline=True`` first sets the peak and the day's start to the latest
        equity (the trailing and daily limits then measure from there); a fixed level that still
        breaches refuses even so: a minimum equity, or a static floor, whose start a rebaseline
        never moves (it is fixed for the account's life: a rebaseline must not lower it). A
        refusal without a rebaseline suggests one only when it would be taken, and else names
        the limits it cannot lift and why.
        """
        refused = self.resume_refusal(rebaseline)
        if refused is not None:
            raise refused
        changed = None
        if rebaseline:
            tracker = self._tracker
            old_peak, old_day_start = tracker.peak_equity, self._day_start
            tracker.rebaseline()
            self._day_start = tracker.latest_equity
            changed = Rebaseline(old_peak, tracker.peak_equity, old_day_start, self._day_start)
        previous = self._state
        self._become(TradingState.ACTIVE, None)
        return previous, changed

    def resume_refusal(self, rebaseline: bool = False) -> ResumeRefused | None:
        """The `ResumeRefused` that `resume` with ``rebaseline`` would raise now, or None when it
        would be taken. Changes nothing."""
        if rebaseline:
            left = self._left_by_rebaseline()
            if left is None:
                return ResumeRefused(
                    f"resume refused: cannot rebaseline at equity {self._tracker.latest_equity:.2f} (must be > 0)"
                )
            if left:
                return ResumeRefused(
                    f"resume refused, even with a rebaseline: {'; '.join(v.reason for v in left)}"
                    f"{self._static_floor_among(left)}"
                )
            return None
        found = [v.reason for v in self._breaches_now()]
        if self._tracker.recapitalised:
            found.append(_RECAPITALISED)
        if not found:
            return None
        reasons = "; ".join(found)
        blocked = self.rebaseline_blocked()
        if blocked is not None:
            # Suggesting a rebaseline that would be refused too costs an incident time.
            return ResumeRefused(f"resume refused: {reasons}; {blocked}")
        return ResumeRefused(
            f"resume refused: {reasons}; resume with a rebaseline to measure from equity "
            f"{self._tracker.latest_equity:.2f} (the peak and the day's start set to it)",
            rebaseline_helps=True,
        )

    def rebaseline_blocked(self) -> str | None:
        """Why a resume with a rebaseline would be refused now, in the words a refusal without
        one uses (``a rebaseline cannot lift min_equity (...)``, or ``no rebaseline can be taken
        at equity ...``), or None when one would be taken. Changes nothing."""
        left = self._left_by_rebaseline()
        if left is None:
            return f"no rebaseline can be taken at equity {self._tracker.latest_equity:.2f} (must be > 0)"
        if left:
            names = ", ".join(dict.fromkeys(v.guard for v in left))
            return (f"a rebaseline cannot lift {names} (it moves the peak and the day's start, not a fixed level"
                    f"{self._static_floor_among(left)})")
        return None

    def _left_by_rebaseline(self) -> list[Verdict] | None:
        # The breaches a rebaseline would leave (limits of fixed levels; none when nothing
        # breaches now), or None when none can be taken (no equity to measure from).
        if self._tracker.latest_equity <= 0:
            return None
        return self._breaches_after_rebaseline() if self._breaches_now() else []

    def _static_floor_among(self, verdicts: Sequence[Verdict]) -> str:
        # Why a rebaseline leaves a static floor's breach, when one is among ``verdicts``.
        static = {g.name for g in self._guards if isinstance(g, MaxDrawdownGuard) and not g.trailing}
        return "; a static floor is fixed for the account's life" if any(v.guard in static for v in verdicts) else ""

    def _breaches_after_rebaseline(self) -> list[Verdict]:
        # The breaches a rebaseline to the latest equity (> 0) would leave: the limits of fixed
        # levels (the tracker's rebaseline keeps the start a static floor is measured from).
        after = DrawdownTracker.restore(self._tracker.snapshot())
        after.rebaseline()
        return self._breaches_now(after.latest_equity, after.peak_equity, after.start_equity, after.latest_equity)

    def _breaches_now(
        self, equity: float | None = None, peak: float | None = None, start: float | None = None, day_start: float | None = None
    ) -> list[Verdict]:
        tracker = self._tracker
        args = (
            tracker.latest_equity if equity is None else equity,
            tracker.peak_equity if peak is None else peak,
            tracker.start_equity if start is None else start,
            self._day_start if day_start is None else day_start,
        )
        return [v for v in (g.verdict(*args) for g in self._guards) if v is not None and v.level is Level.BREACH]

    def degrade(self, state: TradingState, reason: str) -> TradingState:
        """Move to ``state`` (REDUCING or HALTED) for a reason outside the guards, such as an
        equity that cannot be read; never to a lesser state than the current one. A REDUCING set
        this way lifts at the next reading within limits, as a warning's does. Returns the old state.
        HALTED while HALTED only gives the halt this reason: it keeps its dates (a resume is
        refused while its owner cannot read the equity, so no resume meets it unseen)."""
        previous = self._state
        if state is TradingState.HALTED or previous is TradingState.ACTIVE:
            self._become(state, reason)
        return previous

    def halt(self, reason: str) -> TradingState:
        """Latch HALTED for a reason outside the guards (a fail-safe, the kill switch). Returns
        the old state. Laid over a halt in force, it keeps that halt's start (``state_since``)
        and leaves ``latched_at`` undated until `date_latch` dates it: a resume sent before this
        halt must not lift it either (undated in a record, a guard loading it dates it then)."""
        previous = self._state
        if previous is TradingState.HALTED:
            self._latched_at = None
        self._become(TradingState.HALTED, reason)
        return previous

    def open_on(self, now: datetime) -> None:
        """Say when the owner opened this monitor, by its own clock (timezone-aware), so that a
        late first reading does not hide that day's loss.

        The first reading starts the trading day from its stamp, as always. One stamped on the
        day before ``now``'s (late: a delayed message, a feed some hours behind) was taken on
        ``now``'s day, so when the readings reach that day, it keeps the same start of day
        instead of starting from its own first reading: the loss between the two is that day's.
        A first reading stamped further back is not a message some hours late: it is a feed's
        last bar from before a market closed (a weekend, a holiday), or a feed on a time of its
        own (a replay of its own days, fixed dates in tests). Its days, and ``now``'s, start as
        ever, as they would for a monitor that had run all along (one that saw the bar before the
        weekend starts the next trading day from that day's first reading, not from the bar).
        A reading stamped after ``now``'s day is the owner's to take as now (the guard does).

        Nothing once a reading has set the day. The day to keep the start for is saved with the
        record (``day_start_kept_into``), so a monitor restored from it before the readings reach
        that day keeps the start all the same."""
        aware_datetime("now", now)
        if self._day is None:
            self._opened_on = now.astimezone(self._zone).date()

    def date_latch(self, at: datetime, *, again: bool = False) -> None:
        """Date the HALTED or REDUCING in force as its owner made it public at ``at`` (a
        timezone-aware moment on the owner's clock): it began then, or with ``again`` a halt was
        laid again over it then (its start kept; undated, it is taken to begin then too). A
        resume sent before ``latched_at`` then does not lift it (see `latch`). Nothing while ACTIVE."""
        aware_datetime("at", at)
        if self._state is TradingState.ACTIVE:
            return
        if not again or self._since is None:
            self._since = at
        self._latched_at = at

    @property
    def state_since(self) -> datetime | None:
        """When the HALTED or REDUCING in force began, as dated by `date_latch`; None while
        ACTIVE or not yet dated."""
        return self._since

    @property
    def latched_at(self) -> datetime | None:
        """When the HALTED or REDUCING in force was last latched (its start, or a halt laid again
        over it), as dated by `date_latch`; None while ACTIVE or not yet dated."""
        return self._latched_at

    def latch(self) -> Latch | None:
        """The HALTED or REDUCING in force with its dates, or None while ACTIVE or not yet dated."""
        if self._state is TradingState.ACTIVE or self._since is None or self._latched_at is None:
            return None
        return Latch(self._state, self._reason, self._since, self._latched_at)

    def take_net_deposits(self, net_deposits: float) -> float:
        """Take the account's cumulative net deposits as read with the next reading (before it is
        observed): a change since the last one is a cash flow, recorded so that it is neither a
        gain nor a drawdown. Returns the flow taken (0.0 for none, and for the first one known).

        A flow that cannot be taken (a withdrawal that would take equity to zero or below, or any
        while it is there) raises ``ValueError``; the new figure is kept even so, so the same flow
        is never taken twice. A deposit while equity is zero or below is taken as `record_cash_flow` says.
        """
        value = finite_number("net_deposits", net_deposits)
        previous, self._net_deposits = self._net_deposits, value
        if previous is None or value == previous:
            return 0.0
        flow = value - previous
        self.record_cash_flow(flow)
        return flow

    @property
    def net_deposits(self) -> float | None:
        """The account's net deposits as last taken, or None before any was known."""
        return self._net_deposits

    def record_cash_flow(self, amount: float) -> None:
        """A deposit or withdrawal: scales peak, start and start-of-day equity (see DrawdownTracker).

        A deposit while equity is zero or below is added to each instead, and the account is
        `DrawdownTracker.recapitalised`: only a rebaseline resumes it (see `resume`)."""
        before = self._tracker.latest_equity
        self._tracker.record_cash_flow(amount)
        after = self._tracker.latest_equity
        if before > 0:
            self._day_start *= after / before
        else:  # (the tracker took it as money: see DrawdownTracker.record_cash_flow)
            self._day_start += after - before

    @property
    def trading_state(self) -> TradingState:
        """ACTIVE, REDUCING or HALTED."""
        return self._state

    @property
    def tracker(self) -> DrawdownTracker:
        """The drawdown tracker (read it; feed readings through `observe`)."""
        return self._tracker

    @property
    def day(self) -> date | None:
        """The trading day (in the daily guard's zone) of the latest reading."""
        return self._day

    @property
    def guards(self) -> tuple[Guard, ...]:
        """The rules this monitor checks, in order."""
        return self._guards

    @property
    def block_counts(self) -> dict[str, int]:
        """How many times each guard's breach has halted trading, by counter name."""
        return dict(self._block_counts)

    def state(self) -> GuardState:
        """A snapshot in the old system's shape."""
        tracker = self._tracker
        return GuardState(
            current_equity=tracker.latest_equity,
            entry_equity=tracker.start_equity,
            peak_equity=tracker.peak_equity,
            current_drawdown=tracker.drawdown,
            cap_triggered=self._state is TradingState.HALTED,
            reason=self._reason,
            last_check_time=self._last_check,
            trading_state=self._state,
            max_drawdown=tracker.max_drawdown,
            day_start_equity=self._day_start if self._day is not None else None,
        )
