"""A run's report: the summary value and its summary.json form, a text digest, the equity and fills CSVs and a chart."""

from __future__ import annotations

import bisect
import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
from loguru import logger

from runtime.broker import Side
from runtime.events import Event, EventType
from runtime.payloads import PositionClosed, TradeExecuted
from runtime.replay.limits import DRAWDOWN_PANEL, LimitLevel
from runtime.validation import (
    attrs_finite,
    attrs_non_negative,
    attrs_positive,
    attrs_whole,
    aware_datetime,
    finite_number,
    whole_number,
)

__all__ = [
    "FILLS_CSV_HEADER",
    "FillRow",
    "GuardTrigger",
    "RunSummary",
    "fills_from_events",
    "format_summary",
    "write_equity_csv",
    "write_fills_csv",
    "plot_report",
    "report_figure",
    "PLOT_INSTALL_HINT",
]

PLOT_INSTALL_HINT = "pip install -e '.[plot]'"
"""The command that installs the optional plotting extra (matplotlib)."""


def _utc(value: Any) -> datetime:
    return aware_datetime("time", value).astimezone(UTC)


@attrs.frozen
class GuardTrigger:
    """One time a guard fired: when (UTC), which guard, and its reason with the numbers."""

    time: datetime = attrs.field(converter=_utc)
    guard: str = attrs.field(validator=attrs.validators.instance_of(str))
    reason: str = attrs.field(validator=attrs.validators.instance_of(str))

    def to_json_dict(self) -> dict[str, str]:
        """``{"time": ISO 8601, "guard": ..., "reason": ...}``, as in summary.json."""
        return {"time": self.time.isoformat(), "guard": self.guard, "reason": self.reason}


def _triggers(value: Iterable[GuardTrigger]) -> tuple[GuardTrigger, ...]:
    triggers = tuple(value)
    for index, trigger in enumerate(triggers):
        if not isinstance(trigger, GuardTrigger):
            raise TypeError(f"guard_triggers[{index}] must be a GuardTrigger, got {trigger!r}")
    return triggers


def _event_counts(value: Mapping[Any, int]) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise TypeError(f"events_by_type must be a mapping of event type to count, got {value!r}")
    counts: dict[str, int] = {}
    for key, count in value.items():
        name = key.value if isinstance(key, EventType) else key
        if not isinstance(name, str):
            raise TypeError(f"events_by_type keys must be event type names, got {key!r}")
        whole_number(f"events_by_type[{name!r}]", count)
        counts[name] = counts.get(name, 0) + count
    # Sorted so that summary.json is the same bytes for the same run.
    return dict(sorted(counts.items()))


@attrs.frozen
class RunSummary:
    """What a run came to: equity at start and end, worst drawdown (a fraction), trades made,
    guards fired, actor restarts, and how many events of each type were emitted.

    ``events_by_type`` is keyed by the event type's JSON name (`EventType` keys are converted).
    """

    start_equity: float = attrs.field(validator=attrs_positive)
    final_equity: float = attrs.field(validator=attrs_finite)
    max_drawdown: float = attrs.field(validator=attrs_non_negative)
    trades: int = attrs.field(validator=attrs_whole)
    guard_triggers: tuple[GuardTrigger, ...] = attrs.field(default=(), converter=_triggers)
    restarts: int = attrs.field(default=0, validator=attrs_whole)
    events_by_type: dict[str, int] = attrs.field(factory=dict, converter=_event_counts, hash=False)

    def to_json_dict(self) -> dict[str, Any]:
        """The summary.json object: exactly the keys start_equity, final_equity, max_drawdown,
        trades, guard_triggers (a list of {time, guard, reason}), restarts, events_by_type."""
        return {
            "start_equity": float(self.start_equity),
            "final_equity": float(self.final_equity),
            "max_drawdown": float(self.max_drawdown),
            "trades": self.trades,
            "guard_triggers": [trigger.to_json_dict() for trigger in self.guard_triggers],
            "restarts": self.restarts,
            "events_by_type": dict(self.events_by_type),
        }


def _money(amount: float, currency: str) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}{currency} {abs(amount):,.2f}"


def format_summary(summary: RunSummary, currency: str = "GBP") -> str:
    """A few lines a trader reads at a glance: profit or loss, worst drawdown, trades, what fired."""
    change = summary.final_equity - summary.start_equity
    lines = [
        f"Equity: {_money(summary.start_equity, currency)} -> {_money(summary.final_equity, currency)} "
        f"({'+' if change >= 0 else '-'}{_money(abs(change), currency)}, "
        f"{change / summary.start_equity:+.2%})",
        f"Max drawdown: {summary.max_drawdown:.2%}",
        f"Trades: {summary.trades}   Restarts: {summary.restarts}",
    ]
    if summary.guard_triggers:
        lines.append(f"Guards fired: {len(summary.guard_triggers)}")
        for trigger in summary.guard_triggers:
            lines.append(f"  {trigger.time:%Y-%m-%d %H:%M} UTC  {trigger.guard}: {trigger.reason}")
    else:
        lines.append("Guards fired: none")
    if summary.events_by_type:
        lines.append("Events: " + ", ".join(f"{name} {count}" for name, count in summary.events_by_type.items()))
    return "\n".join(lines)


def write_equity_csv(path: str | os.PathLike[str], rows: Iterable[tuple[datetime, float]]) -> int:
    """Write ``(time, equity)`` rows to a CSV with the header ``timestamp,equity``; returns the row count.

    Times must be timezone-aware (written as UTC ISO 8601) and equities finite; a bad row raises
    ``ValueError`` naming its index and value, and nothing is left at ``path``. Parent folders are
    created.
    """
    checked: list[tuple[str, float]] = []
    for index, row in enumerate(rows):
        try:
            time, equity = row
        except (TypeError, ValueError):
            raise ValueError(f"rows[{index}] must be a (timestamp, equity) pair, got {row!r}") from None
        try:
            moment = _utc(time)
        except ValueError:
            raise ValueError(f"rows[{index}] timestamp must be a timezone-aware datetime, got {time!r}") from None
        checked.append((moment.isoformat(), finite_number(f"rows[{index}] equity", equity)))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("timestamp", "equity"))
        writer.writerows(checked)
    return len(checked)


FILLS_CSV_HEADER = ("timestamp", "symbol", "side", "volume", "price", "costs", "realised_pnl", "why", "reason")
"""The columns of fills.csv, in order."""


@attrs.frozen
class FillRow:
    """One fill of a run, as fills.csv has it: when (UTC), what traded (``side`` is the fill's own:
    a guard's close of a long is a sell), at what price, what trading it cost, what it put into
    cash, and why: ``signal`` (the strategy's), ``order`` (placed without a signal), ``guard`` (a
    limit's liquidation), ``fail-safe`` or ``position_stop`` (that position's own stop);
    ``reason`` is the signal's or the guard's own words."""

    time: datetime
    symbol: str
    side: Side
    volume: float
    price: float
    costs: float
    realised_pnl: float
    why: str
    reason: str

    def csv_row(self) -> tuple[str, ...]:
        """The row in `FILLS_CSV_HEADER` order; numbers as Python writes them, exactly."""
        return (
            self.time.astimezone(UTC).isoformat(), self.symbol, self.side.value, repr(float(self.volume)),
            repr(float(self.price)), repr(float(self.costs)), repr(float(self.realised_pnl)), self.why, self.reason,
        )


_FAIL_SAFE_REASON = "fail-safe"  # what actors.fail_safe journals as a close's reason


def fills_from_events(events: Iterable[Event]) -> list[FillRow]:
    """Every fill in a journal, in journal order: TRADE_EXECUTED (orders, a position stop's close
    among them) and POSITION_CLOSED (liquidations), stamped with the event's time (a replay's
    data time). A position stop's close is one row: its POSITION_CLOSED repeats the order's fill."""
    rows = []
    rules: dict[str | None, str] = {}  # client order id -> the rule whose close it is
    for event in events:
        if event.event_type is EventType.ORDER_SUBMITTED:
            rule = event.metadata.get("rule")  # read alone: a fill's row needs nothing else of it
            if isinstance(rule, str):
                rules[event.metadata.get("client_order_id")] = rule
        elif event.event_type is EventType.TRADE_EXECUTED:
            trade = TradeExecuted.from_event(event)
            why = rules.get(trade.client_order_id) or ("signal" if trade.signal_id is not None else "order")
            rows.append(FillRow(
                event.timestamp, trade.symbol, trade.side, trade.filled_volume, trade.price, trade.costs,
                trade.realised_pnl, why, trade.reason,
            ))
        elif event.event_type is EventType.POSITION_CLOSED:
            closed = PositionClosed.from_event(event)
            if closed.rule is not None:
                continue  # a rule's close is an order: its fill is that order's TRADE_EXECUTED
            why = "fail-safe" if closed.reason == _FAIL_SAFE_REASON else "guard"
            rows.append(FillRow(
                event.timestamp, closed.symbol, closed.side.opposite, closed.volume, closed.price, closed.costs,
                closed.realised_pnl, why, closed.reason,
            ))
    return rows


def write_fills_csv(path: str | os.PathLike[str], fills: Iterable[FillRow]) -> int:
    """Write ``fills`` to a CSV with the header `FILLS_CSV_HEADER`; returns the row count. Parent
    folders are created; a run without fills gets the header alone."""
    rows = [fill.csv_row() for fill in fills]
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(FILLS_CSV_HEADER)
        writer.writerows(rows)
    return len(rows)


def _mark_time(value: Any, field: str, index: int) -> datetime:
    # Guard marks may be given as the summary's GuardTrigger values as well as plain times.
    moment = value.time if isinstance(value, GuardTrigger) else value
    try:
        return _utc(moment)
    except ValueError:
        raise ValueError(f"{field}[{index}] must be a timezone-aware datetime, got {value!r}") from None


def _drawdowns(equities: Sequence[float]) -> list[float]:
    peak = equities[0]
    out = []
    for equity in equities:
        peak = max(peak, equity)
        out.append((peak - equity) / peak)
    return out


def plot_report(
    path: str | os.PathLike[str],
    times: Sequence[datetime],
    equities: Sequence[float],
    drawdown_limit_fraction: float,
    guard_marks: Sequence[datetime | GuardTrigger] = (),
    close_marks: Sequence[datetime] = (),
    *,
    title: str = "tradewarden run",
    levels: Sequence[LimitLevel] | None = None,
) -> bool:
    """Save a PNG of `report_figure` (the same arguments); returns True once the file is written,
    or False (after logging how to install it: ``pip install -e '.[plot]'``) when matplotlib is
    missing. Bad inputs raise ``ValueError`` naming the argument and value, and write nothing."""
    try:
        figure = report_figure(
            times, equities, drawdown_limit_fraction, guard_marks, close_marks, title=title, levels=levels
        )
    except ImportError:
        logger.warning(
            "matplotlib is not installed, so no chart was drawn; install the plot extra with: {}", PLOT_INSTALL_HINT
        )
        return False
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png")
    return True


_GUARD_MARKERS = ("v", "X", "s", "D", "P")


def report_figure(
    times: Sequence[datetime],
    equities: Sequence[float],
    drawdown_limit_fraction: float,
    guard_marks: Sequence[datetime | GuardTrigger] = (),
    close_marks: Sequence[datetime] = (),
    *,
    title: str = "tradewarden run",
    levels: Sequence[LimitLevel] | None = None,
) -> Any:
    """The report chart as a matplotlib ``Figure`` (not saved): the equity curve with markers where
    guards fired (one marker per guard, named in the legend, when the marks are `GuardTrigger`
    values) and positions were closed, and below it the drawdown from the running peak.

    ``times`` and ``equities`` are the curve (same length, at least one point, first equity > 0);
    each mark is drawn on the curve at the last point at or before its time. ``levels`` are the
    limit lines to draw (`runtime.replay.limits.limit_levels`: floors, minimums and daily limits
    on the equity panel, drawdown limits on the drawdown panel, warnings dotted); without them the
    drawdown panel has ``drawdown_limit_fraction`` (the drawdown guard's limit, e.g. 0.2) as its
    line. An equity level far below the curve is named in the legend rather than squashing the
    curve. Raises ``ImportError`` without matplotlib, and ``ValueError`` naming a bad argument.
    """
    if len(times) != len(equities):
        raise ValueError(f"times and equities must have the same length, got {len(times)} and {len(equities)}")
    if not times:
        raise ValueError("times and equities must hold at least one point, got none")
    moments = [_mark_time(t, "times", i) for i, t in enumerate(times)]
    for index in range(1, len(moments)):
        if moments[index] < moments[index - 1]:
            raise ValueError(
                f"times must be in order, got times[{index}] {moments[index].isoformat()} "
                f"before times[{index - 1}] {moments[index - 1].isoformat()}"
            )
    values = [finite_number(f"equities[{i}]", e) for i, e in enumerate(equities)]
    if values[0] <= 0:
        raise ValueError(f"equities[0] must be > 0 to measure drawdown from it, got {equities[0]!r}")
    limit = finite_number("drawdown_limit_fraction", drawdown_limit_fraction)
    if not 0 < limit <= 1:
        raise ValueError(f"drawdown_limit_fraction must be in (0, 1], got {drawdown_limit_fraction!r}")
    guards = [_mark_time(m, "guard_marks", i) for i, m in enumerate(guard_marks)]
    names = [m.guard if isinstance(m, GuardTrigger) else "guard" for m in guard_marks]
    closes = [_mark_time(m, "close_marks", i) for i, m in enumerate(close_marks)]
    if levels is None:
        levels = [LimitLevel("max_drawdown", f"limit {limit:.0%}", DRAWDOWN_PANEL, (limit,) * len(values))]
    for index, level in enumerate(levels):
        if not isinstance(level, LimitLevel) or len(level.values) != len(values):
            raise ValueError(f"levels[{index}] must be a LimitLevel with a value per point ({len(values)}), got {level!r}")

    # The object API with the Agg canvas draws without pyplot's global state or a display,
    # so a report can be made from any thread and never changes the caller's backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    def on_curve(marks: list[datetime]) -> tuple[list[datetime], list[float]]:
        xs, ys = [], []
        for mark in marks:
            index = bisect.bisect_right(moments, mark) - 1
            xs.append(mark)
            ys.append(values[max(index, 0)])
        return xs, ys

    figure = Figure(figsize=(10, 6.5), dpi=100)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    top.plot(moments, values, color="tab:blue", linewidth=1.2, label="equity")
    colours = {"max_drawdown": "black", "min_equity": "tab:purple", "daily_loss": "tab:orange"}
    low, high = min(values), max(values)
    reach = low * 0.5  # an equity level below half the lowest equity would squash the curve
    shown_low = low
    for level in (lv for lv in levels if lv.panel != DRAWDOWN_PANEL):
        style = {"color": colours.get(level.guard, "tab:gray"), "linestyle": ":" if level.warning else "--", "linewidth": 1.0}
        if min(level.values) < reach:
            top.plot([], [], label=f"{level.label} (below the chart)", **style)
            continue
        shown_low = min(shown_low, min(level.values))
        top.plot(moments, level.values, drawstyle="steps-post", label=level.label, **style)
    margin = (high - shown_low) * 0.05 or high * 0.01
    top.set_ylim(shown_low - margin, high + margin)
    if closes:
        xs, ys = on_curve(closes)
        top.scatter(xs, ys, marker="o", s=36, facecolors="none", edgecolors="black", zorder=3, label="position closed")
    for number, guard in enumerate(dict.fromkeys(names)):
        xs, ys = on_curve([mark for mark, name in zip(guards, names) if name == guard])
        label = "guard fired" if guard == "guard" else f"{guard} fired"
        marker = _GUARD_MARKERS[number % len(_GUARD_MARKERS)]
        top.scatter(xs, ys, marker=marker, s=90, color="tab:red", zorder=4, label=label)
    top.set_ylabel("equity")
    top.set_title(title)
    top.grid(True, alpha=0.3)
    top.legend(loc="best", fontsize="small")

    drawdown_percent = [d * 100 for d in _drawdowns(values)]
    bottom.fill_between(moments, drawdown_percent, 0, color="tab:red", alpha=0.25)
    bottom.plot(moments, drawdown_percent, color="tab:red", linewidth=1.0, label="drawdown from peak")
    deepest = max(drawdown_percent)
    for level in (lv for lv in levels if lv.panel == DRAWDOWN_PANEL):
        percent = [v * 100 for v in level.values]
        deepest = max(deepest, max(percent))
        bottom.plot(
            moments, percent, drawstyle="steps-post", color=colours.get(level.guard, "tab:gray"),
            linestyle=":" if level.warning else "--", linewidth=1.0, label=level.label,
        )
    for mark in guards:
        bottom.axvline(mark, color="tab:red", linestyle=":", linewidth=1.0)
    bottom.set_ylim(deepest * 1.15 or 1.0, 0)  # inverted: losses go down
    bottom.set_ylabel("drawdown %")
    bottom.grid(True, alpha=0.3)
    bottom.legend(loc="lower left", fontsize="small")
    locator = AutoDateLocator()
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    figure.tight_layout()
    return figure
