"""The guard limits a run had, as its report shows them: the lines on the chart and the lines of text."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import attrs

from runtime.validation import attrs_boolean, attrs_non_negative, attrs_timezone, finite_number

if TYPE_CHECKING:  # report.py draws these levels, so it is the one that imports at run time
    from runtime.replay.report import GuardTrigger

__all__ = ["LimitLevel", "ReportLimits", "describe_limits", "limit_levels"]

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


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def _day_starts(times: Sequence[datetime], equities: Sequence[float], zone: ZoneInfo) -> list[float]:
    # The first equity of each trading day, as the guard takes it (its first reading of the day).
    starts: list[float] = []
    day = None
    start = equities[0] if equities else 0.0
    for moment, equity in zip(times, equities):
        today = moment.astimezone(zone).date()
        if today != day:
            day, start = today, equity
        starts.append(start)
    return starts


def limit_levels(
    limits: ReportLimits, times: Sequence[datetime], equities: Sequence[float], start_equity: float
) -> list[LimitLevel]:
    """Every line the chart draws for ``limits`` along the curve ``times``/``equities`` of a run
    that started at ``start_equity``: each limit, then its warning level when there is one."""
    count = len(times)
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
        floor = start_equity * (1 - drawdown)
        level("max_drawdown", f"static floor {floor:,.2f} ({_percent(drawdown)} below start)", EQUITY_PANEL, [floor] * count)
        if warn is not None:
            line = start_equity * (1 - drawdown * warn)
            level("max_drawdown", f"static floor warning {line:,.2f}", EQUITY_PANEL, [line] * count, True)
    if limits.min_equity > 0:
        level("min_equity", f"min equity {limits.min_equity:,.2f}", EQUITY_PANEL, [limits.min_equity] * count)
        if warn is not None:
            line = limits.min_equity / warn
            level("min_equity", f"min equity warning {line:,.2f}", EQUITY_PANEL, [line] * count, True)
    if limits.daily_loss is not None:
        starts = _day_starts(times, equities, ZoneInfo(limits.timezone))
        loss = limits.daily_loss
        level("daily_loss", f"daily loss limit {_percent(loss)}", EQUITY_PANEL, [s * (1 - loss) for s in starts])
        if warn is not None:
            level("daily_loss", f"daily loss warning {_percent(loss * warn)}", EQUITY_PANEL,
                  [s * (1 - loss * warn) for s in starts], True)
    return levels


def _fired(guard: str, triggers: Sequence[GuardTrigger]) -> str:
    times = [t.time for t in triggers if t.guard == guard]
    if not times:
        return "not fired"
    return "fired " + ", ".join(f"{moment:%Y-%m-%d %H:%M} UTC" for moment in times)


def describe_limits(
    limits: ReportLimits,
    times: Sequence[datetime],
    equities: Sequence[float],
    start_equity: float,
    triggers: Sequence[GuardTrigger],
) -> list[str]:
    """The report's text on the limits: a line per active guard with its level, the worst the run's
    equity came to against it, and whether it fired (from the run's ``triggers``, the
    GUARD_TRIGGERED events), then the warning level when there is one."""
    lines = ["Limits:"]
    lowest = min(equities, default=start_equity)
    drawdown = limits.max_drawdown
    if limits.trailing:
        peak, worst = start_equity, 0.0
        for equity in equities:
            peak = max(peak, equity)
            worst = max(worst, (peak - equity) / peak)
        lines.append(
            f"  max drawdown {drawdown:.2%} (trailing): worst {worst:.2%} below the peak; {_fired('max_drawdown', triggers)}"
        )
    else:
        floor = start_equity * (1 - drawdown)
        below = (start_equity - lowest) / start_equity
        lines.append(
            f"  max drawdown {drawdown:.2%} (static): floor {floor:,.2f}, lowest equity {lowest:,.2f} "
            f"({below:.2%} below start); {_fired('max_drawdown', triggers)}"
        )
    if limits.min_equity > 0:
        lines.append(
            f"  min equity {limits.min_equity:,.2f}: lowest equity {lowest:,.2f}; {_fired('min_equity', triggers)}"
        )
    if limits.daily_loss is not None:
        starts = _day_starts(times, equities, ZoneInfo(limits.timezone))
        worst_day = max(((s - e) / s for s, e in zip(starts, equities) if s > 0), default=0.0)
        lines.append(
            f"  daily loss {limits.daily_loss:.2%}: worst day {max(worst_day, 0.0):.2%}; {_fired('daily_loss', triggers)}"
        )
    if limits.warn_at is not None:
        lines.append(f"  warnings at {_percent(limits.warn_at)} of each limit")
    return lines
