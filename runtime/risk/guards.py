"""The risk rules, one small class per rule, and the values they report."""

from __future__ import annotations

import enum
import math
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

import attrs

from runtime.risk.drawdown import DrawdownTracker
from runtime.validation import attrs_boolean, attrs_finite, attrs_timezone, finite_number, percent_limit

__all__ = [
    "TradingState",
    "LIMIT_TOLERANCE",
    "Level",
    "Verdict",
    "Guard",
    "MaxDrawdownGuard",
    "MinEquityGuard",
    "DailyLossGuard",
    "GuardState",
    "enforce_max_drawdown",
    "min_equity_guard",
]


class TradingState(enum.Enum):
    """What the loop may do: trade freely, only reduce exposure, or nothing at all."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"

    @property
    def gauge(self) -> int:
        """The state as a number for a metrics gauge: 0 active, 1 reducing, 2 halted."""
        return _STATE_GAUGE[self]


_STATE_GAUGE = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}

LIMIT_TOLERANCE = 1e-12
"""Relative slack in "the loss reaches the limit": a loss that is exactly the limit in decimal
(peak 101.05, equity 80.84 is 20%) can come out a few units in the last place below it in binary
floating point, and must still fire."""


class Level(enum.IntEnum):
    """How far a reading is past a guard: within limits, past its warning level, or in breach."""

    OK = 0
    WARN = 1
    BREACH = 2


@attrs.frozen
class Verdict:
    """One guard's finding on one reading: which guard, how bad, and a reason with the numbers."""

    guard: str
    level: Level
    reason: str
    block_counter: str


def _warn_fraction(instance: object, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None and not 0.0 < finite_number(attribute.name, value) < 1.0:
        raise ValueError(f"{attribute.name} must be a fraction in (0, 1) of the limit, got {value!r}")


class Guard(Protocol):
    """A risk rule. ``level`` is on the hot path and allocates nothing; ``verdict`` explains it.

    Every guard sees the same four numbers for a reading: the equity, the running peak, the
    start equity (scaled by cash flows) and the start-of-day equity.
    """

    @property
    def name(self) -> str:
        """The rule's name in verdicts and events."""
        ...

    @property
    def block_counter(self) -> str:
        """The metric counted each time this rule's breach halts trading."""
        ...

    def level(self, equity: float, peak: float, start: float, day_start: float) -> Level:
        """How far this reading is past the rule."""
        ...

    def verdict(self, equity: float, peak: float, start: float, day_start: float) -> Verdict | None:
        """The finding for this reading with its numbers, or ``None`` when within limits."""
        ...

    def clear_line(self, start: float, day_start: float) -> tuple[float, float]:
        """``(peak_factor, floor)``: any equity above both ``peak * peak_factor`` and ``floor``
        is surely OK for this rule (no warning, no breach). It lets a monitor skip the rule for
        most readings; it may be cautious, never optimistic. A rule that does not say returns
        ``(inf, inf)``: no reading is clear, so the rule is checked on every one."""
        return math.inf, math.inf


_NO_LINE = -math.inf
_SLACK = 1e-9  # keeps a clear line cautious against rounding


class _ThresholdGuard:
    # Shared by every rule: the rule says how bad a reading is (its "severity") and where the
    # limit lies; warn and breach levels and the verdict follow the same way for all of them.
    name: str
    block_counter: str
    warn_at: float | None

    def _severity(self, equity: float, peak: float, start: float, day_start: float) -> float:
        raise NotImplementedError

    def _limit(self) -> float:
        raise NotImplementedError

    def _explain(self, severity: float, level: Level, equity: float, peak: float, start: float, day_start: float) -> str:
        raise NotImplementedError

    def _against(self, level: Level) -> tuple[str, str]:
        # (the level crossed, what to say of the limit first in the brackets): a warning names
        # the warning level it crossed, and the limit beside it.
        limit = self._limit()
        if level is Level.WARN and self.warn_at is not None:
            return f"warning {limit * self.warn_at:.2%}", f"limit {limit:.2%}, "
        return f"limit {limit:.2%}", ""

    def level(self, equity: float, peak: float, start: float, day_start: float) -> Level:
        """How far this reading is past the rule: OK, WARN (past the warning level) or BREACH."""
        severity = self._severity(equity, peak, start, day_start)
        limit = self._limit() * (1.0 - LIMIT_TOLERANCE)
        if severity >= limit:
            return Level.BREACH
        if self.warn_at is not None and severity >= limit * self.warn_at:
            return Level.WARN
        return Level.OK

    def _first_alarm(self) -> float:
        # The smallest loss fraction at which this rule says anything (its warning, else its limit).
        return self._limit() * (self.warn_at or 1.0)

    def verdict(self, equity: float, peak: float, start: float, day_start: float) -> Verdict | None:
        """The finding for this reading, with a reason that states the numbers; None when OK."""
        level = self.level(equity, peak, start, day_start)
        if level is Level.OK:
            return None
        severity = self._severity(equity, peak, start, day_start)
        reason = self._explain(severity, level, equity, peak, start, day_start)
        if level is Level.WARN:
            reason = f"warning: {reason}"
        return Verdict(self.name, level, reason, self.block_counter)


@attrs.frozen
class MaxDrawdownGuard(_ThresholdGuard):
    """Fires when the drawdown reaches ``limit_percent``.

    Trailing (the default) measures from the running peak equity; static measures from the start
    equity only, a fixed floor at ``start * (1 - limit)`` as prop firms set it. Blocks all new
    trading and liquidates.
    """

    limit_percent: float = attrs.field(converter=lambda v: percent_limit("limit_percent", v))
    trailing: bool = attrs.field(default=True, validator=attrs_boolean)
    warn_at: float | None = attrs.field(default=None, validator=_warn_fraction)
    name: str = attrs.field(default="max_drawdown", init=False)
    block_counter: str = attrs.field(default="drawdown_block_total", init=False)

    def _limit(self) -> float:
        return self.limit_percent / 100.0

    def clear_line(self, start: float, day_start: float) -> tuple[float, float]:
        """Above ``peak * (1 - first alarm)`` (trailing) or ``start * (1 - first alarm)`` (static)."""
        factor = 1.0 - self._first_alarm() + _SLACK
        return (factor, _NO_LINE) if self.trailing else (_NO_LINE, start * factor)

    def _severity(self, equity: float, peak: float, start: float, day_start: float) -> float:
        if self.trailing:
            return (peak - equity) / peak
        return (start - equity) / start

    def _explain(self, severity: float, level: Level, equity: float, peak: float, start: float, day_start: float) -> str:
        crossed, limit = self._against(level)
        if self.trailing:
            return f"max drawdown {severity:.2%} >= {crossed} ({limit}peak {peak:.2f}, equity {equity:.2f})"
        return (
            f"static drawdown {severity:.2%} >= {crossed} "
            f"({limit}start {start:.2f}, floor {start * (1 - self._limit()):.2f}, equity {equity:.2f})"
        )


@attrs.frozen
class MinEquityGuard(_ThresholdGuard):
    """Fires when equity falls below ``min_equity``. Blocks all new trading and liquidates.

    With a warning level ``w`` it warns once equity is below ``min_equity / w``.
    """

    min_equity: float = attrs.field(converter=lambda v: finite_number("min_equity", v))
    warn_at: float | None = attrs.field(default=None, validator=_warn_fraction)
    name: str = attrs.field(default="min_equity", init=False)
    block_counter: str = attrs.field(default="min_equity_block_total", init=False)

    @min_equity.validator
    def _check_min_equity(self, attribute: attrs.Attribute, value: float) -> None:
        if value < 0:
            raise ValueError(f"min_equity must be >= 0, got {value!r}")

    # The rule is "strictly below", unlike the percentage rules' "reaches", so it keeps its own test.
    def level(self, equity: float, peak: float, start: float, day_start: float) -> Level:
        """BREACH when equity < min_equity; WARN when equity < min_equity / warn_at."""
        if equity < self.min_equity:
            return Level.BREACH
        if self.warn_at is not None and equity < self.min_equity / self.warn_at:
            return Level.WARN
        return Level.OK

    def _severity(self, equity: float, peak: float, start: float, day_start: float) -> float:
        return self.min_equity - equity

    def clear_line(self, start: float, day_start: float) -> tuple[float, float]:
        """At or above the minimum (or its warning level ``min_equity / warn_at``)."""
        return _NO_LINE, self.min_equity if self.warn_at is None else self.min_equity / self.warn_at

    def _explain(self, severity: float, level: Level, equity: float, peak: float, start: float, day_start: float) -> str:
        if equity < self.min_equity:
            return _below(equity, "minimum", self.min_equity)
        assert self.warn_at is not None
        return f"{_below(equity, 'warning level', self.min_equity / self.warn_at)} (minimum {self.min_equity:.2f})"


def _below(equity: float, line: str, bound: float) -> str:
    # Money to two decimals, as every guard writes it. A reading within a cent of the line (a
    # liquidation filled where the minimum was crossed) would read "equity 9900.00 < minimum
    # 9900.00", and more digits would show only float noise (9899.999999999998): say how close.
    shown, limit = f"{equity:.2f}", f"{bound:.2f}"
    if shown == limit:
        return f"equity below {line} {limit} by less than 0.01"
    return f"equity {shown} < {line} {limit}"


@attrs.frozen
class DailyLossGuard(_ThresholdGuard):
    """Fires when the loss against start-of-day equity reaches ``limit_percent``.

    The start-of-day equity is the first reading at or after midnight in ``timezone``; the day
    bookkeeping lives in `RiskMonitor`, which reads the zone from this guard. Blocks all new
    trading and liquidates.
    """

    limit_percent: float = attrs.field(converter=lambda v: percent_limit("limit_percent", v))
    timezone: str = attrs.field(default="UTC", validator=attrs_timezone)
    warn_at: float | None = attrs.field(default=None, validator=_warn_fraction)
    name: str = attrs.field(default="daily_loss", init=False)
    block_counter: str = attrs.field(default="daily_loss_block_total", init=False)

    @property
    def zone(self) -> ZoneInfo:
        """The zone whose midnight starts a new trading day."""
        return ZoneInfo(self.timezone)

    def _limit(self) -> float:
        return self.limit_percent / 100.0

    def clear_line(self, start: float, day_start: float) -> tuple[float, float]:
        """Above ``day_start * (1 - first alarm)``; a day that began at or below zero never alarms."""
        if day_start <= 0:
            return _NO_LINE, _NO_LINE
        return _NO_LINE, day_start * (1.0 - self._first_alarm() + _SLACK)

    def _severity(self, equity: float, peak: float, start: float, day_start: float) -> float:
        if day_start <= 0:
            # A day that started at or below zero has no meaningful percentage loss.
            return 0.0
        return (day_start - equity) / day_start

    def _explain(self, severity: float, level: Level, equity: float, peak: float, start: float, day_start: float) -> str:
        crossed, limit = self._against(level)
        return f"daily loss {severity:.2%} >= {crossed} ({limit}start of day {day_start:.2f}, equity {equity:.2f})"


def _none_or_finite(instance: object, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None:
        attrs_finite(instance, attribute, value)


@attrs.frozen
class GuardState:
    """What the guard knows after a check; the old system's fields plus the trading state.

    ``current_drawdown`` is a fraction; ``cap_triggered`` is true while trading is halted by a
    breach; ``reason`` says which rule fired and with what numbers.
    """

    current_equity: float = attrs.field(validator=attrs_finite)
    entry_equity: float = attrs.field(validator=attrs_finite)
    peak_equity: float = attrs.field(validator=attrs_finite)
    current_drawdown: float = attrs.field(validator=attrs_finite)
    cap_triggered: bool
    reason: str | None
    last_check_time: datetime | None
    trading_state: TradingState = TradingState.ACTIVE
    max_drawdown: float = attrs.field(default=0.0, validator=attrs_finite)
    day_start_equity: float | None = attrs.field(default=None, validator=_none_or_finite)


def enforce_max_drawdown(
    tracker: DrawdownTracker, equity: float, limit_percent: float, *, at: datetime | None = None
) -> GuardState:
    """Observe ``equity`` on ``tracker`` and say whether the trailing drawdown limit is reached.

    The caller owns the tracker and passes the same one on every call, so the peak carries over
    between calls (the old system rebuilt it on every call, and its guard could never fire).
    """
    guard = MaxDrawdownGuard(limit_percent)
    tracker.observe(equity)
    verdict = guard.verdict(tracker.latest_equity, tracker.peak_equity, tracker.start_equity, tracker.start_equity)
    breached = verdict is not None and verdict.level is Level.BREACH
    return GuardState(
        current_equity=tracker.latest_equity,
        entry_equity=tracker.start_equity,
        peak_equity=tracker.peak_equity,
        current_drawdown=tracker.drawdown,
        cap_triggered=breached,
        reason=verdict.reason if verdict is not None and breached else None,
        last_check_time=at,
        trading_state=TradingState.HALTED if breached else TradingState.ACTIVE,
        max_drawdown=tracker.max_drawdown,
    )


def min_equity_guard(equity: float, min_equity: float) -> Verdict | None:
    """The minimum-equity rule as one call: a BREACH verdict when ``equity < min_equity``, else None."""
    reading = finite_number("equity", equity)
    return MinEquityGuard(min_equity).verdict(reading, reading, reading, reading)
