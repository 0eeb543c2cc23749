"""A run's report: the summary value and its summary.json form, a text digest, the equity and fills CSVs and a chart."""

from __future__ import annotations

import bisect
import csv
import math
import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import attrs
from loguru import logger

from runtime.broker import Side, to_side
from runtime.events import Event, EventType
from runtime.payloads import PositionClosed, TradeExecuted
from runtime.replay.limits import DRAWDOWN_PANEL, EquityPath, LimitLevel
from runtime.replay.refusals import FirstRefusal, Refusal, refusals_from_events
from runtime.replay.spans import StateSpan, as_utc, span_lines, span_notes, span_totals
from runtime.risk.gate import TRADING_STATE
from runtime.risk.guards import TradingState
from runtime.validation import (
    attrs_finite,
    attrs_non_negative,
    attrs_positive,
    attrs_whole,
    finite_number,
    whole_number,
)

__all__ = [
    "EQUITY_CSV_HEADER",
    "FILLS_CSV_HEADER",
    "MONEY_DIGITS",
    "PRICE_DIGITS_UNKNOWN",
    "FillRow",
    "FirstRefusal",
    "GuardTrigger",
    "OpenPosition",
    "Refusal",
    "RunSummary",
    "StateSpan",
    "end_of_run_lines",
    "fills_from_events",
    "format_price",
    "format_summary",
    "open_positions",
    "price_digits",
    "refusals_from_events",
    "write_equity_csv",
    "write_fills_csv",
    "plot_report",
    "report_figure",
    "PLOT_INSTALL_HINT",
]

PLOT_INSTALL_HINT = "pip install -e '.[plot]'"
"""The command that installs the optional plotting extra (matplotlib)."""

MONEY_DIGITS = 4
"""Decimal places of money (equity, costs, realised profit) in equity.csv, fills.csv and
summary.json: finer than a cent, so a commission of a fraction of a cent still shows and the
realised_pnl column adds up to the change in cash to the cent over thousands of fills."""

PRICE_DIGITS_UNKNOWN = 6
"""Decimal places of a price when the instrument's own are not known."""

_MAX_PRICE_DIGITS = 10  # a price written with more decimals than this is computed, not quoted
_VOLUME_DIGITS = 8  # finer than any broker's volume step (MT5's finest is 1e-8 lots)


def _fixed(value: float, digits: int) -> str:
    """``value`` with exactly ``digits`` decimals; a value that rounds to zero is written
    unsigned (a zero commission taken off is 0, not -0)."""
    written = f"{value:.{digits}f}"
    return written.lstrip("-") if float(written) == 0 else written


def _trimmed(value: float, digits: int) -> str:
    """``value`` rounded to ``digits`` decimals, without trailing zeros: 100, 0.5, 79.681275."""
    return _fixed(value, digits).rstrip("0").rstrip(".")


def format_price(value: float, digits: int, volume: float) -> str:
    """``value`` as a price of ``volume`` units: with the instrument's ``digits`` decimals when
    that moves the position's worth (price x volume) by at most half of money's last decimal
    (`MONEY_DIGITS`), so a quoted price loses its float noise and nothing else (1.1000000000000001
    is 1.10000); else with the fewest more decimals, up to 10, that do, so that a price between the
    instrument's ticks (a guard's close where a limit was crossed, an average entry) still agrees
    with its volume and its profit as fills.csv writes them: 174.2419999833 for 99.661152 shares
    quoted in cents is 174.242."""
    half_money = 0.5 * 10.0**-MONEY_DIGITS
    # A volume so large that no decimal could keep to half a money unit still has its float
    # noise taken off: a few units in the last place are never a decimal of the price.
    noise = 4 * math.ulp(value)
    for places in range(digits, max(digits, _MAX_PRICE_DIGITS) + 1):
        error = abs(round(value, places) - value)
        if error * abs(volume) <= half_money or error <= noise:
            return _fixed(value, places)
    return _fixed(value, max(digits, _MAX_PRICE_DIGITS))


def price_digits(prices: Iterable[float]) -> int:
    """The decimal places an instrument is quoted to, read from its own prices (the bars' open,
    high, low and close, and any spread or slippage added to them): the most any one needs when
    written as Python writes a float, without trailing zeros (100.0 needs none, 1e-05 five), so
    rounding a fill's price to them removes float noise and nothing else. `PRICE_DIGITS_UNKNOWN`
    for no prices; at most 10."""
    digits = [max(0, -int(Decimal(repr(float(price))).normalize().as_tuple().exponent)) for price in prices]
    if not digits:
        return PRICE_DIGITS_UNKNOWN
    return min(max(digits), _MAX_PRICE_DIGITS)


@attrs.frozen
class GuardTrigger:
    """One time a guard fired: when (UTC), which guard, and its reason with the numbers."""

    time: datetime = attrs.field(converter=as_utc)
    guard: str = attrs.field(validator=attrs.validators.instance_of(str))
    reason: str = attrs.field(validator=attrs.validators.instance_of(str))

    def to_json_dict(self) -> dict[str, str]:
        """``{"time": ISO 8601, "guard": ..., "reason": ...}``, as in summary.json."""
        return {"time": self.time.isoformat(), "guard": self.guard, "reason": self.reason}

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> GuardTrigger:
        """The trigger `to_json_dict` wrote."""
        return cls(datetime.fromisoformat(data["time"]), data["guard"], data["reason"])


_Value = TypeVar("_Value")


def _read_back(field: str, kind: type[_Value], value: Iterable[_Value | Mapping[str, Any]]) -> tuple[_Value, ...]:
    # ``field``'s values of ``kind``, each given as itself or as summary.json's form (a mapping
    # that ``kind.from_json_dict`` reads back); anything else raises TypeError.
    items = []
    for index, item in enumerate(value):
        if isinstance(item, Mapping):
            item = kind.from_json_dict(item)  # type: ignore[attr-defined]
        if not isinstance(item, kind):
            raise TypeError(f"{field}[{index}] must be a {kind.__name__}, got {item!r}")
        items.append(item)
    return tuple(items)


def _triggers(value: Iterable[GuardTrigger | Mapping[str, Any]]) -> tuple[GuardTrigger, ...]:
    return _read_back("guard_triggers", GuardTrigger, value)


def _spans(value: Iterable[StateSpan | Mapping[str, Any]]) -> tuple[StateSpan, ...]:
    return _read_back("state_spans", StateSpan, value)


def _counts(field: str, what: str, value: Mapping[Any, int]) -> dict[str, int]:
    # A mapping of names to counts, checked; an EventType key becomes its JSON name.
    if not isinstance(value, Mapping):
        raise TypeError(f"{field} must be a mapping of {what} to count, got {value!r}")
    counts: dict[str, int] = {}
    for key, count in value.items():
        name = key.value if isinstance(key, EventType) else key
        if not isinstance(name, str):
            raise TypeError(f"{field} keys must be {what}s, got {key!r}")
        whole_number(f"{field}[{name!r}]", count)
        counts[name] = counts.get(name, 0) + count
    # Sorted so that summary.json is the same bytes for the same run.
    return dict(sorted(counts.items()))


def _event_counts(value: Mapping[Any, int]) -> dict[str, int]:
    return _counts("events_by_type", "event type name", value)


def _fill_counts(value: Mapping[str, int]) -> dict[str, int]:
    return _counts("fills_by_why", "why", value)


def _refusal_counts(value: Mapping[str, int]) -> dict[str, int]:
    return _counts("orders_refused_by", "cause", value)


def _first_refusals(value: Iterable[FirstRefusal | Mapping[str, Any]]) -> tuple[FirstRefusal, ...]:
    return _read_back("first_refusals", FirstRefusal, value)


_POSITION_SIDES = {Side.BUY: "long", Side.SELL: "short"}


def _position_side(value: Any) -> Side:
    # "long" and "short" as summary.json writes them, or a Side (or its name) as the journal has it.
    for side, word in _POSITION_SIDES.items():
        if value == word:
            return side
    return to_side(value)


@attrs.frozen
class OpenPosition:
    """A position still open when a run ended, as its fills left it: the symbol, the side
    (BUY for a long), the volume and the volume-weighted entry price of the fills that opened it."""

    symbol: str = attrs.field(validator=attrs.validators.instance_of(str))
    side: Side = attrs.field(converter=_position_side)
    volume: float = attrs.field(validator=attrs_positive)
    entry_price: float = attrs.field(validator=attrs_positive)

    def describe(self, digits: int) -> str:
        """``long 100 SYNTH from 139.2495``: the entry price to ``digits`` decimals."""
        return (
            f"{_POSITION_SIDES[self.side]} {_trimmed(self.volume, _VOLUME_DIGITS)} {self.symbol} "
            f"from {format_price(self.entry_price, digits, self.volume)}"
        )

    def to_json_dict(self, digits: int) -> dict[str, Any]:
        """``{"symbol", "side": "long" or "short", "volume", "entry_price"}``, as in summary.json
        (the entry price rounded to ``digits`` decimals)."""
        return {
            "symbol": self.symbol,
            "side": _POSITION_SIDES[self.side],
            "volume": float(self.volume),
            "entry_price": float(format_price(self.entry_price, digits, self.volume)),
        }


def _open_positions(value: Iterable[OpenPosition | Mapping[str, Any]]) -> tuple[OpenPosition, ...]:
    positions = []
    for index, item in enumerate(value):
        if isinstance(item, Mapping):  # summary.json's form, read back
            item = OpenPosition(**item)
        if not isinstance(item, OpenPosition):
            raise TypeError(f"open_positions[{index}] must be an OpenPosition, got {item!r}")
        positions.append(item)
    return tuple(positions)


@attrs.frozen
class RunSummary:
    """What a run came to: whether it was interrupted (it ended before its last bar), the bars
    played of those it was given, equity at start and end, worst drawdown from the peak (a fraction: the
    worst the guard saw, inside bars included), its fills
    counted by why (fills.csv's ``why`` column: one per row), guards fired, every stretch the
    guard held trading halted or reducing (`runtime.replay.spans.state_spans`), actor restarts, orders
    refused counted by cause (`refusals_from_events`) and the first of each cause with its reason
    (`runtime.replay.refusals.first_refusals`), the positions still open at the end with
    their unrealised profit at the last close (part of the final equity), how many events of each
    type were emitted, and the decimals its prices are written with.

    ``events_by_type`` is keyed by the event type's JSON name (`EventType` keys are converted).
    """

    start_equity: float = attrs.field(validator=attrs_positive)
    final_equity: float = attrs.field(validator=attrs_finite)
    max_drawdown: float = attrs.field(validator=attrs_non_negative)
    interrupted: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    bars_played: int = attrs.field(default=0, validator=attrs_whole)
    bars_total: int = attrs.field(default=0, validator=attrs_whole)
    fills_by_why: dict[str, int] = attrs.field(factory=dict, converter=_fill_counts, hash=False)
    guard_triggers: tuple[GuardTrigger, ...] = attrs.field(default=(), converter=_triggers)
    state_spans: tuple[StateSpan, ...] = attrs.field(default=(), converter=_spans)
    restarts: int = attrs.field(default=0, validator=attrs_whole)
    events_by_type: dict[str, int] = attrs.field(factory=dict, converter=_event_counts, hash=False)
    orders_refused_by: dict[str, int] = attrs.field(factory=dict, converter=_refusal_counts, hash=False)
    first_refusals: tuple[FirstRefusal, ...] = attrs.field(default=(), converter=_first_refusals)
    open_positions: tuple[OpenPosition, ...] = attrs.field(default=(), converter=_open_positions)
    unrealised_pnl: float = attrs.field(default=0.0, validator=attrs_finite)
    price_digits: int = attrs.field(default=PRICE_DIGITS_UNKNOWN, validator=attrs_whole)

    @property
    def fills(self) -> int:
        """Every fill of the run: the rows of fills.csv."""
        return sum(self.fills_by_why.values())

    @property
    def orders_refused(self) -> int:
        """Every order that did not trade."""
        return sum(self.orders_refused_by.values())

    def to_json_dict(self) -> dict[str, Any]:
        """The summary.json object: exactly the keys interrupted, bars_played, bars_total,
        start_equity, final_equity, max_drawdown,
        fills (the rows of fills.csv), fills_by_why, guard_triggers (a list of {time, guard,
        reason}), state_spans (a list of `StateSpan` objects), restarts, orders_refused, orders_refused_by,
        first_refusals (a list of `FirstRefusal` objects), open_positions (a list of `OpenPosition`
        objects), unrealised_pnl, price_digits, events_by_type. Money is rounded to `MONEY_DIGITS`
        decimals, as in equity.csv, and prices to ``price_digits``."""
        return {
            "interrupted": self.interrupted,
            "bars_played": self.bars_played,
            "bars_total": self.bars_total,
            "start_equity": round(float(self.start_equity), MONEY_DIGITS),
            "final_equity": round(float(self.final_equity), MONEY_DIGITS),
            "max_drawdown": float(self.max_drawdown),
            "fills": self.fills,
            "fills_by_why": dict(self.fills_by_why),
            "guard_triggers": [trigger.to_json_dict() for trigger in self.guard_triggers],
            "state_spans": [span.to_json_dict() for span in self.state_spans],
            "restarts": self.restarts,
            "orders_refused": self.orders_refused,
            "orders_refused_by": dict(self.orders_refused_by),
            "first_refusals": [first.to_json_dict() for first in self.first_refusals],
            "open_positions": [position.to_json_dict(self.price_digits) for position in self.open_positions],
            "unrealised_pnl": round(float(self.unrealised_pnl), MONEY_DIGITS),
            "price_digits": self.price_digits,
            "events_by_type": dict(self.events_by_type),
        }

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> RunSummary:
        """The summary a summary.json object holds (`to_json_dict`'s form). Its totals must
        agree with their counts: a ``ValueError`` names the one that does not."""
        fields = {name: data[name] for name in attrs.fields_dict(cls) if name in data}
        summary = cls(**fields)
        for total in ("fills", "orders_refused"):
            if total in data and data[total] != getattr(summary, total):
                raise ValueError(f"{total} must be the sum of its counts, {getattr(summary, total)}, got {data[total]!r}")
        return summary


def _money(amount: float, currency: str, plus: str = "") -> str:
    # Signed as written, to the cent: -0.004 is 0.00 (with ``plus``), never -0.00.
    cents = round(amount, 2)
    return f"{'-' if cents < 0 else plus}{currency} {abs(cents):,.2f}"


def _percent_change(change: float, start: float) -> str:
    # Signed as the change is written to the cent (`_money`): a change of -0.004 is +0.00%.
    return f"{'-' if round(change, 2) < 0 else '+'}{abs(change / start):.2%}"


_WHY_WORDS = {
    "signal": "by signal",
    "order": "placed without a signal",
    "guard": "closed by the guard",
    "position_stop": "closed by a position stop",
    "fail-safe": "closed by the fail-safe",
}
_CAUSE_WORDS = {
    "broker": "the broker refused or failed it",
}


def _refused_by_state(summary: RunSummary, count: int) -> str:
    # Which state refused the trading_state refusals, as the spans counted them; any no span
    # accounts for (a summary written before spans were) are said as "halted or reducing".
    counts = {state: 0 for state in (TradingState.HALTED.value, TradingState.REDUCING.value)}
    for span in summary.state_spans:
        counts[span.state] += span.orders_refused
    parts = [f"{state}: {n:,}" for state, n in counts.items() if n]
    rest = count - sum(counts.values())
    if rest > 0:
        parts.append(f"halted or reducing: {rest:,}")
    return "the guard was " + ", ".join(parts)


def end_of_run_lines(summary: RunSummary, currency: str = "GBP") -> list[str]:
    """What the run's end leaves a trader to know, in two lines: the positions still open, which
    the final equity values at the last close (with their unrealised profit), and the orders
    refused, counted by cause (those the trading state refused, by the state: ``trading_state 139
    (the guard was reducing: 139)``). The report's chart shows the same lines."""
    if summary.open_positions:
        held = ", ".join(position.describe(summary.price_digits) for position in summary.open_positions)
        unrealised = _money(summary.unrealised_pnl, currency, plus="+")
        opened = (
            f"Open at the end: {held}; unrealised {unrealised} "
            "at the last close, in the final equity"
        )
    else:
        opened = "Open at the end: none (flat)"
    if summary.orders_refused:
        causes = []
        for cause, count in summary.orders_refused_by.items():
            words = _refused_by_state(summary, count) if cause == TRADING_STATE else _CAUSE_WORDS.get(cause)
            causes.append(f"{cause} {count}" + (f" ({words})" if words else ""))
        refused = f"Orders refused: {summary.orders_refused}: {', '.join(causes)}"
    else:
        refused = "Orders refused: none"
    return [opened, refused]


def format_summary(summary: RunSummary, currency: str = "GBP") -> str:
    """A few lines a trader reads at a glance: profit or loss, worst drawdown, fills (as many as
    fills.csv has rows) by why, what is still open, orders refused (the first of each cause with
    its reason, and how many were alike), what fired, and when, why and
    for how long trading was halted or reducing (`runtime.replay.spans.span_lines`)."""
    change = summary.final_equity - summary.start_equity
    # Trades first, then closes, as _WHY_WORDS lists them; a why it does not know goes last, by name.
    order = {why: place for place, why in enumerate(_WHY_WORDS)}
    whys = sorted(summary.fills_by_why, key=lambda why: (order.get(why, len(order)), why))
    by_why = ", ".join(f"{summary.fills_by_why[why]} {_WHY_WORDS.get(why, why)}" for why in whys)
    lines = [
        f"Equity: {_money(summary.start_equity, currency)} -> {_money(summary.final_equity, currency)} "
        f"({_money(change, currency, plus='+')}, {_percent_change(change, summary.start_equity)})",
        f"Max drawdown: {summary.max_drawdown:.2%}",
        f"Fills: {summary.fills} in fills.csv" + (f": {by_why}" if by_why else "") + f"   Restarts: {summary.restarts}",
        *end_of_run_lines(summary, currency),
        *(first.describe(summary.orders_refused_by.get(first.cause, first.alike)) for first in summary.first_refusals),
    ]
    if summary.guard_triggers:
        lines.append(f"Guards fired: {len(summary.guard_triggers)}")
        for trigger in summary.guard_triggers:
            lines.append(f"  {trigger.time:%Y-%m-%d %H:%M} UTC  {trigger.guard}: {trigger.reason}")
    else:
        lines.append("Guards fired: none")
    lines.extend(span_lines(summary.state_spans))
    if summary.events_by_type:
        lines.append("Events: " + ", ".join(f"{name} {count}" for name, count in summary.events_by_type.items()))
    return "\n".join(lines)


EQUITY_CSV_HEADER = ("timestamp", "equity", "worst_equity", "best_equity")
"""The columns of equity.csv, in order: each bar's time, the equity at its close, and the lowest
and the highest equity the guard saw in it (`runtime.replay.limits.EquityPath`)."""


def write_equity_csv(path: str | os.PathLike[str], rows: Iterable[tuple[datetime, float, float, float]]) -> int:
    """Write ``(time, equity, worst_equity, best_equity)`` rows (`runtime.replay.limits.EquityPath.rows`)
    to a CSV with the header `EQUITY_CSV_HEADER`; returns the row count.

    Times must be timezone-aware (written as UTC ISO 8601) and equities finite (written with
    `MONEY_DIGITS` decimals); a bad row raises
    ``ValueError`` naming its index and value, and nothing is left at ``path``. Parent folders are
    created.
    """
    checked: list[tuple[str, str, str, str]] = []
    for index, row in enumerate(rows):
        try:
            time, equity, worst, best = row
        except (TypeError, ValueError):
            raise ValueError(
                f"rows[{index}] must be a (timestamp, equity, worst_equity, best_equity) row, got {row!r}"
            ) from None
        try:
            moment = as_utc(time)
        except ValueError:
            raise ValueError(f"rows[{index}] timestamp must be a timezone-aware datetime, got {time!r}") from None
        checked.append((
            moment.isoformat(),
            _fixed(finite_number(f"rows[{index}] equity", equity), MONEY_DIGITS),
            _fixed(finite_number(f"rows[{index}] worst_equity", worst), MONEY_DIGITS),
            _fixed(finite_number(f"rows[{index}] best_equity", best), MONEY_DIGITS),
        ))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(EQUITY_CSV_HEADER)
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

    def csv_row(self, price_digits: int = PRICE_DIGITS_UNKNOWN) -> tuple[str, ...]:
        """The row in `FILLS_CSV_HEADER` order: the price with ``price_digits`` decimals (the
        instrument's, `price_digits`), costs and profit with `MONEY_DIGITS`, the volume with up
        to 8 and no trailing zeros, so float noise (1.1000000000000001) never reaches the file."""
        return (
            self.time.astimezone(UTC).isoformat(), self.symbol, self.side.value, _trimmed(self.volume, _VOLUME_DIGITS),
            format_price(self.price, price_digits, self.volume), _fixed(self.costs, MONEY_DIGITS),
            _fixed(self.realised_pnl, MONEY_DIGITS), self.why, self.reason,
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


def open_positions(fills: Iterable[FillRow]) -> list[OpenPosition]:
    """The positions ``fills`` leave open, one per symbol, netted as the paper broker nets them: a
    fill on the side held adds to it at the volume-weighted price, one on the other side reduces
    it at the same entry, and one larger than the position reverses it at the fill's price."""
    held: dict[str, OpenPosition] = {}
    for fill in fills:
        position = held.pop(fill.symbol, None)
        if position is None:
            held[fill.symbol] = OpenPosition(fill.symbol, fill.side, fill.volume, fill.price)
        elif position.side is fill.side:
            volume = position.volume + fill.volume
            entry = (position.entry_price * position.volume + fill.price * fill.volume) / volume
            held[fill.symbol] = OpenPosition(fill.symbol, fill.side, volume, entry)
        # The broker's tolerance: a rounding remainder is no position (runtime.adapters.paper).
        elif position.volume - fill.volume > 1e-12 * position.volume:
            held[fill.symbol] = attrs.evolve(position, volume=position.volume - fill.volume)
        elif fill.volume - position.volume > 1e-12 * fill.volume:
            held[fill.symbol] = OpenPosition(fill.symbol, fill.side, fill.volume - position.volume, fill.price)
    return list(held.values())


def write_fills_csv(
    path: str | os.PathLike[str], fills: Iterable[FillRow], price_digits: int = PRICE_DIGITS_UNKNOWN
) -> int:
    """Write ``fills`` to a CSV with the header `FILLS_CSV_HEADER`, prices with ``price_digits``
    decimals (`FillRow.csv_row`); returns the row count. Parent folders are created; a run
    without fills gets the header alone."""
    rows = [fill.csv_row(price_digits) for fill in fills]
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(FILLS_CSV_HEADER)
        writer.writerows(rows)
    return len(rows)


def _mark_time(value: Any, field: str, index: int) -> datetime:
    # Marks may be given as the report's GuardTrigger and Refusal values as well as plain times.
    moment = value.time if isinstance(value, (GuardTrigger, Refusal)) else value
    try:
        return as_utc(moment)
    except ValueError:
        raise ValueError(f"{field}[{index}] must be a timezone-aware datetime, got {value!r}") from None


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
    refused_marks: Sequence[datetime | Refusal] = (),
    notes: Sequence[str] = (),
    lows: Sequence[float] | None = None,
    start_equity: float | None = None,
    baselines: Sequence[tuple[datetime, float]] = (),
    state_spans: Sequence[StateSpan] = (),
    highs: Sequence[float] | None = None,
    rises: Sequence[float] | None = None,
) -> bool:
    """Save a PNG of `report_figure` (the same arguments); returns True once the file is written,
    or False (after logging how to install it: ``pip install -e '.[plot]'``) when matplotlib is
    missing. Bad inputs raise ``ValueError`` naming the argument and value, and write nothing."""
    try:
        figure = report_figure(
            times, equities, drawdown_limit_fraction, guard_marks, close_marks, title=title, levels=levels,
            refused_marks=refused_marks, notes=notes, lows=lows, start_equity=start_equity, baselines=baselines,
            state_spans=state_spans, highs=highs, rises=rises,
        )
    except ImportError:
        logger.warning(
            "matplotlib is not installed, so no chart was drawn; install the plot extra with: {}", PLOT_INSTALL_HINT
        )
        return False
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png", metadata={"Title": title})  # what an image viewer names it by
    return True


_GUARD_MARKERS = ("v", "X", "s", "D", "P")
_FIGURE_HEIGHT = 6.5  # inches, with up to two lines of notes
_NOTE_LINE_INCHES = 0.1625  # a line of small text under the chart
_NOTE_WIDTH = 130  # characters of small text across the 10-inch figure
_STATE_COLOURS = {TradingState.HALTED.value: "tab:red", TradingState.REDUCING.value: "gold"}


def report_figure(
    times: Sequence[datetime],
    equities: Sequence[float],
    drawdown_limit_fraction: float,
    guard_marks: Sequence[datetime | GuardTrigger] = (),
    close_marks: Sequence[datetime] = (),
    *,
    title: str = "tradewarden run",
    levels: Sequence[LimitLevel] | None = None,
    refused_marks: Sequence[datetime | Refusal] = (),
    notes: Sequence[str] = (),
    lows: Sequence[float] | None = None,
    start_equity: float | None = None,
    baselines: Sequence[tuple[datetime, float]] = (),
    state_spans: Sequence[StateSpan] = (),
    highs: Sequence[float] | None = None,
    rises: Sequence[float] | None = None,
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
    curve. ``refused_marks`` are orders that did not trade (`Refusal` values or times), marked on
    the curve and counted in the legend; ``notes`` are lines printed under the chart (what is
    still open at the end, what was refused: `end_of_run_lines`).

    ``lows`` are the lowest equity inside each point's bar (`runtime.replay.limits.EquityPath`;
    default: the points themselves), ``highs`` the highest (default: the points) and
    ``rises`` the highest before each bar's low (default: the lows themselves): the equity
    panel shades the way down to the lows, and the drawdown panel shows each bar's worst as the
    guard measured it (`runtime.replay.limits.EquityPath.drawdowns`), so the deepest drawdown
    drawn is the worst the guard saw. The peak starts at ``start_equity`` (default: the
    first point), and again at each of ``baselines`` (the time and equity of a resume that
    rebaselined the guard).

    ``state_spans`` (`runtime.replay.spans.state_spans`) shade both panels from where each stretch
    of halted or reducing trading began to where it ended, one colour per state, each counted in
    the legend with its bars (a warning that came and went inside one bar, refusing nothing, is
    not drawn); under the chart, after ``notes``, the longest of them are written with their
    bars, time, refused orders and reason (`runtime.replay.spans.span_notes`). Raises ``ImportError`` without matplotlib, and ``ValueError`` naming a bad
    argument.
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
    bottoms = values if lows is None else lows
    path = EquityPath(values[0] if start_equity is None else start_equity, moments, values, bottoms, baselines,
                      values if highs is None else highs, bottoms if rises is None else rises)
    limit = finite_number("drawdown_limit_fraction", drawdown_limit_fraction)
    if not 0 < limit <= 1:
        raise ValueError(f"drawdown_limit_fraction must be in (0, 1], got {drawdown_limit_fraction!r}")
    guards = [_mark_time(m, "guard_marks", i) for i, m in enumerate(guard_marks)]
    names = [m.guard if isinstance(m, GuardTrigger) else "guard" for m in guard_marks]
    closes = [_mark_time(m, "close_marks", i) for i, m in enumerate(close_marks)]
    refused = [_mark_time(m, "refused_marks", i) for i, m in enumerate(refused_marks)]
    for index, note in enumerate(notes):
        if not isinstance(note, str):
            raise ValueError(f"notes[{index}] must be a string, got {note!r}")
    for index, span in enumerate(state_spans):
        if not isinstance(span, StateSpan):
            raise ValueError(f"state_spans[{index}] must be a StateSpan, got {span!r}")
    stopped = [span for span in state_spans if span.stopped_trading]
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

    def shown_until(span: StateSpan) -> datetime:
        # A stretch that began and ended at one bar's time (it refused an order there) is drawn
        # across that bar, to the next one, so that it shows.
        if span.end > span.start:
            return span.end
        after = bisect.bisect_right(moments, span.start)
        return moments[after] if after < len(moments) else span.end

    # The caller's notes, then why and how long trading stopped, wrapped to the figure's width;
    # the figure grows by the lines past the first two, so the chart keeps its size.
    written = list(notes) + [
        line for note in span_notes(stopped) for line in textwrap.wrap(note, _NOTE_WIDTH, subsequent_indent="    ")
    ]
    height = _FIGURE_HEIGHT + _NOTE_LINE_INCHES * max(0, len(written) - 2)
    figure = Figure(figsize=(10, height), dpi=100)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    top.plot(moments, values, color="tab:blue", linewidth=1.2, label="equity")
    if path.lows != path.closes:
        top.fill_between(moments, path.lows, values, color="tab:blue", alpha=0.2, linewidth=0,
                         label="lowest inside each bar")
    colours = {"max_drawdown": "black", "min_equity": "tab:purple", "daily_loss": "tab:orange"}
    low, high = path.lowest(), max(values)
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
    if refused:
        xs, ys = on_curve(refused)
        top.scatter(xs, ys, marker="x", s=36, color="tab:gray", zorder=3, label=f"order refused ({len(refused)})")
    for number, guard in enumerate(dict.fromkeys(names)):
        xs, ys = on_curve([mark for mark, name in zip(guards, names) if name == guard])
        label = "guard fired" if guard == "guard" else f"{guard} fired"
        marker = _GUARD_MARKERS[number % len(_GUARD_MARKERS)]
        top.scatter(xs, ys, marker=marker, s=90, color="tab:red", zorder=4, label=label)
    for state, colour in _STATE_COLOURS.items():
        shaded = [span for span in stopped if span.state == state]
        for number, span in enumerate(shaded):
            # One legend entry per state, on the equity panel, with the state's totals.
            named = number == 0
            top.axvspan(span.start, shown_until(span), color=colour, alpha=0.15, linewidth=0,
                        label=f"{state}: {span_totals(shaded, state)}" if named else "_nolegend_")
            bottom.axvspan(span.start, shown_until(span), color=colour, alpha=0.15, linewidth=0)
    top.set_ylabel("equity")
    top.set_title(title)
    top.grid(True, alpha=0.3)
    top.legend(loc="best", fontsize="small")

    drawdown_percent = [d * 100 for d in path.drawdowns()]
    bottom.fill_between(moments, drawdown_percent, 0, color="tab:red", alpha=0.25)
    bottom.plot(moments, drawdown_percent, color="tab:red", linewidth=1.0,
                label="drawdown from peak" if lows is None else "drawdown from peak, worst in each bar")
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
    if written:
        # Under the chart, in the figure's own margin, so no curve or legend ever hides them.
        figure.text(0.01, 0.01, "\n".join(written), ha="left", va="bottom", fontsize="small")
        figure.tight_layout(rect=(0, _NOTE_LINE_INCHES * (len(written) + 1) / height, 1, 1))
    else:
        figure.tight_layout()
    return figure
