"""The guard limits a run had, as its report shows them: the lines on the chart and the lines of
text, and the run's equity bar by bar as the guard saw it, inside each bar included."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import attrs

from runtime.risk.drawdown import DrawdownTracker
from runtime.risk.guards import LIMIT_TOLERANCE
from runtime.validation import (
    attrs_boolean,
    attrs_non_negative,
    attrs_positive,
    attrs_timezone,
    aware_datetime,
    finite_number,
)

if TYPE_CHECKING:  # report.py draws these levels, so it is the one that imports at run time
    from runtime.replay.report import RunSummary

__all__ = ["EquityPath", "LimitLevel", "ReportLimits", "describe_limits", "limit_levels"]

EQUITY_PANEL = "equity"
DRAWDOWN_PANEL = "drawdown"


def _fraction(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not 0 < finite_number(attribute.name, value) <= 1:
        raise ValueError(f"{attribute.name} must be a fraction in (0, 1], got {value!r}")


def _optional_fraction(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        _fraction(instance, attribute, value)


@attrs.frozen
class ReportLimits:
    """The guards of a run: the drawdown limit (a fraction; ``trailing`` from the running peak, else
    a static floor below the start), the minimum equity (0 for none), the daily loss limit (a
    fraction, or None), the warning level as a fraction of each limit (or None) and the zone whose
    midnight starts a trading day."""

    max_drawdown: float = attrs.field(validator=_fraction)
    trailing: bool = attrs.field(default=True, validator=attrs_boolean)
    min_equity: float = attrs.field(default=0.0, validator=attrs_non_negative)
    daily_loss: float | None = attrs.field(default=None, validator=_optional_fraction)
    warn_at: float | None = attrs.field(default=None, validator=_optional_fraction)
    timezone: str = attrs.field(default="UTC", validator=attrs_timezone)

    @classmethod
    def from_settings(cls, settings: Any) -> ReportLimits:
        """The limits a `runtime.settings.Settings` sets its guards to."""
        daily = settings.daily_loss_percent
        return cls(
            settings.max_drawdown_percent / 100.0,
            settings.drawdown_trailing,
            settings.min_equity,
            None if daily is None else daily / 100.0,
            settings.guard_warn_fraction,
            settings.trading_timezone,
        )


@attrs.frozen
class LimitLevel:
    """One line of the chart: a guard's limit (or its warning level, ``warning``) with a value at
    every point of the curve. On the ``equity`` panel the values are equities (a static floor, a
    minimum, a day's loss limit that steps from day to day); on the ``drawdown`` panel they are
    fractions below the running peak. ``guard`` is the guard's name, as GUARD_TRIGGERED has it."""

    guard: str
    label: str
    panel: str
    values: tuple[float, ...]
    warning: bool = False


def _floats(field: str, values: Iterable[Any]) -> tuple[float, ...]:
    return tuple(finite_number(f"{field}[{index}]", value) for index, value in enumerate(values))


def _closes(values: Iterable[Any]) -> tuple[float, ...]:
    return _floats("closes", values)


def _lows(values: Iterable[Any]) -> tuple[float, ...]:
    return _floats("lows", values)


def _highs(values: Iterable[Any]) -> tuple[float, ...]:
    return _floats("highs", values)


def _rises(values: Iterable[Any]) -> tuple[float, ...]:
    return _floats("rises", values)


def _times(values: Iterable[Any]) -> tuple[datetime, ...]:
    return tuple(aware_datetime(f"times[{index}]", value) for index, value in enumerate(values))


def _baselines(values: Iterable[Any]) -> tuple[tuple[datetime, float], ...]:
    pairs = tuple(values)
    return tuple(
        (aware_datetime(f"baselines[{index}] time", moment), finite_number(f"baselines[{index}] equity", equity))
        for index, (moment, equity) in enumerate(pairs)
    )


@attrs.frozen
class EquityPath:
    """A run's equity bar by bar, as its guard saw it: ``start_equity`` (the account before the
    first bar), and for each bar its time, its close (``closes``: the equity after the bar, marked
    at its close after its orders and any liquidation), its low (``lows``: the lowest equity the
    guard was shown in the bar: what was held marked at the bar's worst price, or at the price
    where a limit was crossed, or the close when that is lower), its high (``highs``: the
    highest, what was held marked at the bar's best price, or the close when that is higher;
    the closes when not given) and the highest it was shown before its low (``rises``: the open
    of a bar that gapped up, the high of a falling bar, `actors.replay.PaperFeed.intrabar`; the
    lows, which raise no peak, when not given).

    Every "worst" the report gives comes from here, read as the guard reads a bar: the low against
    the peak before the bar or what the bar rose to before it, then the high, then the close
    against the peak the high may have raised; a trading day starts from the equity carried into
    it.
    A ``ValueError`` names a value that is not finite, a time that is not aware, a low above its
    close, or lengths that differ."""

    start_equity: float = attrs.field(validator=attrs_positive)
    times: tuple[datetime, ...] = attrs.field(converter=_times)
    closes: tuple[float, ...] = attrs.field(converter=_closes)
    lows: tuple[float, ...] = attrs.field(converter=_lows)
    # (time, equity) of each resume that set the guard's start, peak and day's start to the
    # equity then (REBASELINED): from the first bar at or after it the guard measures from there.
    baselines: tuple[tuple[datetime, float], ...] = attrs.field(default=(), converter=_baselines)
    highs: tuple[float, ...] = attrs.field(
        default=attrs.Factory(lambda path: path.closes, takes_self=True), converter=_highs
    )
    rises: tuple[float, ...] = attrs.field(
        default=attrs.Factory(lambda path: path.lows, takes_self=True), converter=_rises
    )

    def __attrs_post_init__(self) -> None:
        if not len(self.times) == len(self.closes) == len(self.lows):
            raise ValueError(
                f"times, closes and lows must have the same length, got {len(self.times)}, {len(self.closes)} "
                f"and {len(self.lows)}"
            )
        for name in ("highs", "rises"):
            if len(getattr(self, name)) != len(self.closes):
                raise ValueError(
                    f"{name} must have as many values as closes ({len(self.closes)}), got {len(getattr(self, name))}"
                )
        for index, (low, close, high, rise) in enumerate(zip(self.lows, self.closes, self.highs, self.rises)):
            if low > close:
                raise ValueError(f"lows[{index}] must be <= closes[{index}] {close!r}, got {low!r}")
            if high < close:
                raise ValueError(f"highs[{index}] must be >= closes[{index}] {close!r}, got {high!r}")
            if not low <= rise <= high:
                raise ValueError(f"rises[{index}] must be within lows[{index}] {low!r} and highs[{index}] {high!r}, "
                                 f"got {rise!r}")

    @classmethod
    def of(
        cls,
        start_equity: float,
        equity: Iterable[tuple[datetime, float]],
        inside: Mapping[datetime, Sequence[float]],
        baselines: Iterable[tuple[datetime, float]] = (),
    ) -> EquityPath:
        """The path of a replay from the equity after each bar (``(time, equity)`` pairs, as
        `actors.replay.ReplayResult.equity` has them), the equity inside the bars that held a
        position, by bar time, at each point of the bar's path in order
        (`actors.replay.PaperFeed.inside_readings`), and the resumes that rebaselined the guard
        (``baselines``)."""
        rows = list(equity)
        lows, highs, rises = [], [], []
        for moment, close in rows:
            readings = tuple(inside.get(moment, ()))
            low = min((close, *readings))
            # What came before the low: every reading when the close is the low (it comes last).
            before = readings if close <= min(readings, default=close) else readings[: readings.index(low)]
            lows.append(low)
            highs.append(max((close, *readings)))
            rises.append(max(before, default=low))
        return cls(start_equity, [moment for moment, _ in rows], [close for _, close in rows], lows, baselines,
                   highs, rises)

    def _rebaselined(self) -> list[float | None]:
        # For each bar, the equity a resume set the guard's start to just before it, else None.
        marks: list[float | None] = [None] * len(self.times)
        for moment, equity in self.baselines:
            index = bisect_left(self.times, moment)
            if index < len(marks):
                marks[index] = equity
        return marks

    def rows(self) -> Iterator[tuple[datetime, float, float, float]]:
        """``(time, close, low, high)`` for each bar: the rows of equity.csv."""
        return zip(self.times, self.closes, self.lows, self.highs)

    def drawdowns(self) -> list[float]:
        """For each bar, its worst drawdown (a fraction), by the guard's own rule
        (`runtime.risk.drawdown.DrawdownTracker`), in the order the bar's path met them: its low
        against the peak before it or what the bar rose to before it (``rises``), or its close
        against the peak its high may have raised, whichever is deeper."""
        tracker = DrawdownTracker(self.start_equity)
        worst = []
        for low, close, high, rise, mark in zip(self.lows, self.closes, self.highs, self.rises,
                                                 self._rebaselined()):
            if mark is not None and mark > 0:  # a resume measured from here on (the guard's own reset)
                tracker = DrawdownTracker(mark)
            tracker.observe(rise)
            tracker.observe(low)
            deepest = tracker.drawdown
            tracker.observe(high)
            tracker.observe(close)
            worst.append(max(deepest, tracker.drawdown))
        return worst

    def max_drawdown(self) -> float:
        """The worst drawdown of the run from its running peak (a fraction; 0 with no bars)."""
        return max(self.drawdowns(), default=0.0)

    def lowest(self) -> float:
        """The lowest equity of the run, inside its bars included (the start with no bars)."""
        return min(self.lows, default=self.start_equity)

    def day_starts(self, zone: ZoneInfo) -> list[float]:
        """For each bar, the start of its trading day in ``zone`` as the guard takes it: the
        equity carried into the day, the close of the bar before (the start equity on the first)."""
        starts: list[float] = []
        day = None
        start = carried = self.start_equity
        for moment, close, mark in zip(self.times, self.closes, self._rebaselined()):
            today = moment.astimezone(zone).date()
            if today != day:
                day, start = today, carried
            if mark is not None:
                start = mark  # (a rebaselining resume sets the day's start too)
            starts.append(start)
            carried = close
        return starts

    def worst_day(self, zone: ZoneInfo) -> float:
        """The worst loss of any trading day in ``zone`` (a fraction of the day's start, 0 when no
        day lost): each bar's low against its day's start."""
        losses = ((start - low) / start for start, low in zip(self.day_starts(zone), self.lows) if start > 0)
        return max(0.0, max(losses, default=0.0))


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def limit_levels(limits: ReportLimits, path: EquityPath) -> list[LimitLevel]:
    """Every line the chart draws for ``limits`` along the run's ``path``, a value per bar: each
    limit, then its warning level when there is one."""
    count = len(path.times)
    start_equity = path.start_equity
    warn = limits.warn_at
    levels: list[LimitLevel] = []

    def level(guard: str, label: str, panel: str, values: Sequence[float], warning: bool = False) -> None:
        levels.append(LimitLevel(guard, label, panel, tuple(values), warning))

    drawdown = limits.max_drawdown
    if limits.trailing:
        level("max_drawdown", f"max drawdown limit {_percent(drawdown)}", DRAWDOWN_PANEL, [drawdown] * count)
        if warn is not None:
            level("max_drawdown", f"max drawdown warning {_percent(drawdown * warn)}", DRAWDOWN_PANEL,
                  [drawdown * warn] * count, True)
    else:
        # Fixed for the account's life: a rebaseline moves the peak and the day's start, never the start.
        floor = start_equity * (1 - drawdown)
        level("max_drawdown", f"static floor {floor:,.2f} ({_percent(drawdown)} below start)", EQUITY_PANEL,
              [floor] * count)
        if warn is not None:
            line = start_equity * (1 - drawdown * warn)
            level("max_drawdown", f"static floor warning {line:,.2f}", EQUITY_PANEL, [line] * count, True)
    if limits.min_equity > 0:
        level("min_equity", f"min equity {limits.min_equity:,.2f}", EQUITY_PANEL, [limits.min_equity] * count)
        if warn is not None:
            line = limits.min_equity / warn
            level("min_equity", f"min equity warning {line:,.2f}", EQUITY_PANEL, [line] * count, True)
    if limits.daily_loss is not None:
        starts = path.day_starts(ZoneInfo(limits.timezone))
        loss = limits.daily_loss
        level("daily_loss", f"daily loss limit {_percent(loss)}", EQUITY_PANEL, [s * (1 - loss) for s in starts])
        if warn is not None:
            level("daily_loss", f"daily loss warning {_percent(loss * warn)}", EQUITY_PANEL,
                  [s * (1 - loss * warn) for s in starts], True)
    return levels


def _fired(guard: str, summary: RunSummary, warning: str | None = None) -> str:
    # ``warning``: the warning level the run went past, when it did (the guard then held trading
    # reducing, which is not the limit firing; the stretches section says when and how long).
    times = [t.time for t in summary.guard_triggers if t.guard == guard]
    if times:
        return "fired " + ", ".join(f"{moment:%Y-%m-%d %H:%M} UTC" for moment in times)
    if warning is not None:
        return f"not fired, past its warning level {warning}"
    return "not fired"


def _reached(severity: float, limit: float) -> bool:
    # As the guard judges a percentage rule (`MaxDrawdownGuard.level`): reaching the level counts.
    return severity >= limit * (1.0 - LIMIT_TOLERANCE)


def describe_limits(limits: ReportLimits, path: EquityPath, summary: RunSummary) -> list[str]:
    """The report's text on the limits: a line per active guard with its level, the worst the run
    came to against it, inside its bars included (the trailing drawdown is the summary's
    ``max_drawdown``, so the two always agree; the rest come from ``path``), and whether it fired
    (from the summary's guard triggers, the GUARD_TRIGGERED events) or, when it did not, whether
    the run went past its warning level (which held trading reducing: not the limit firing), then
    the warning level when there is one."""
    lines = ["Limits:"]
    lowest = path.lowest()
    start_equity = path.start_equity
    drawdown = limits.max_drawdown
    warn = limits.warn_at

    def warned(severity: float, limit: float) -> str | None:
        return f"{limit * warn:.2%}" if warn is not None and _reached(severity, limit * warn) else None

    if limits.trailing:
        lines.append(
            f"  max drawdown {drawdown:.2%} (trailing): worst {summary.max_drawdown:.2%} below the peak; "
            f"{_fired('max_drawdown', summary, warned(summary.max_drawdown, drawdown))}"
        )
    else:
        floor = start_equity * (1 - drawdown)
        below = (start_equity - lowest) / start_equity
        lines.append(
            f"  max drawdown {drawdown:.2%} (static): floor {floor:,.2f}, lowest equity {lowest:,.2f} "
            f"({below:.2%} below start); {_fired('max_drawdown', summary, warned(below, drawdown))}"
        )
    if limits.min_equity > 0:
        line = None if warn is None else limits.min_equity / warn
        past = f"{line:,.2f}" if line is not None and lowest < line else None  # (strictly below, as its guard judges)
        lines.append(
            f"  min equity {limits.min_equity:,.2f}: lowest equity {lowest:,.2f}; {_fired('min_equity', summary, past)}"
        )
    if limits.daily_loss is not None:
        worst_day = path.worst_day(ZoneInfo(limits.timezone))
        lines.append(
            f"  daily loss {limits.daily_loss:.2%} (trading days in {limits.timezone}): worst day {worst_day:.2%}; "
            f"{_fired('daily_loss', summary, warned(worst_day, limits.daily_loss))}"
        )
    if warn is not None:
        lines.append(f"  warnings at {_percent(warn)} of each limit")
    return lines
