"""The stretches of a run in which the guard held trading halted or reducing, read from its journal."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from runtime.events import Event, EventType
from runtime.payloads import TradeFailed, TradingStateChanged
from runtime.risk.gate import TRADING_STATE
from runtime.risk.guards import TradingState
from runtime.validation import attrs_whole, aware_datetime

__all__ = ["StateSpan", "as_utc", "describe_span", "span_lines", "span_notes", "span_totals", "state_spans", "time_span"]

_STOPPED = (TradingState.HALTED.value, TradingState.REDUCING.value)
_STATES = tuple(state.value for state in TradingState)


def as_utc(value: Any) -> datetime:
    """``value`` (a timezone-aware datetime, else an error naming ``time``) in UTC: how a
    report's times are kept and written."""
    return aware_datetime("time", value).astimezone(UTC)


def _one_of(states: tuple[str, ...], optional: bool = False) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if (value is None and optional) or value in states:
            return
        expected = " or ".join(states) + (" or None" if optional else "")
        raise ValueError(f"{attribute.name} must be {expected}, got {value!r}")

    return check


def _optional_text(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a string or None, got {value!r}")


@attrs.frozen
class StateSpan:
    """One stretch of a run in which the guard held trading in ``state``: ``halted`` (no order
    goes out) or ``reducing`` (only orders that reduce exposure do).

    It began at ``start`` (UTC) for ``reason``, the guard's own words (a breach, or a warning:
    ``warning: max drawdown 3.80% >= warning 3.00% ...``). ``next_state`` is the state the next
    change moved trading to at ``end``, and ``ended_by`` that change's reason (``resumed
    automatically: ...``, ``back within limits``); with ``next_state`` None it was still so when
    the run ended, and ``end`` is the last bar's time. ``bars`` counts the bars played from the one
    it began in up to the one it ended in, that one not counted (every bar to the last when it
    never ended), and is at least 1 when it refused an order; ``orders_refused`` counts the orders
    it refused (TRADE_FAILED by ``trading_state``)."""

    state: str = attrs.field(validator=_one_of(_STOPPED))
    start: datetime = attrs.field(converter=as_utc)
    end: datetime = attrs.field(converter=as_utc)
    reason: str = attrs.field(validator=attrs.validators.instance_of(str))
    bars: int = attrs.field(validator=attrs_whole)
    orders_refused: int = attrs.field(default=0, validator=attrs_whole)
    next_state: str | None = attrs.field(default=None, validator=_one_of(_STATES, optional=True))
    ended_by: str | None = attrs.field(default=None, validator=_optional_text)

    def __attrs_post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"end must be at or after start {self.start.isoformat()}, got {self.end.isoformat()}")

    @property
    def stopped_trading(self) -> bool:
        """True when it held at least one bar or refused an order: a warning that came and went
        inside one bar, refusing nothing, stopped no trade."""
        return self.bars > 0 or self.orders_refused > 0

    @property
    def duration(self) -> timedelta:
        """How long it held in data time: from its start to its end."""
        return self.end - self.start

    def to_json_dict(self) -> dict[str, Any]:
        """``{"state", "start", "end", "reason", "bars", "orders_refused", "next_state",
        "ended_by"}``, times in ISO 8601, as summary.json's ``state_spans`` has it."""
        return {
            "state": self.state,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "reason": self.reason,
            "bars": self.bars,
            "orders_refused": self.orders_refused,
            "next_state": self.next_state,
            "ended_by": self.ended_by,
        }

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> StateSpan:
        """The span `to_json_dict` wrote."""
        fields = dict(data)
        for name in ("start", "end"):
            if isinstance(fields.get(name), str):
                fields[name] = datetime.fromisoformat(fields[name])
        return cls(**fields)


def _bars(times: Sequence[datetime], start: datetime, end: datetime | None) -> int:
    first = bisect_left(times, start)
    return (len(times) if end is None else bisect_left(times, end)) - first


def state_spans(events: Iterable[Event], bar_times: Sequence[datetime]) -> list[StateSpan]:
    """Every stretch a journal shows trading halted or reducing, in order, from its
    TRADING_STATE_CHANGED events; each counts the bars of ``bar_times`` (the run's bars, in order)
    it held and the orders it refused (TRADE_FAILED by ``trading_state``, in journal order: the
    guard journals a refusal after the change that caused it). A change from halted straight to
    reducing (or back) ends one span and starts the next."""
    times = [as_utc(moment) for moment in bar_times]
    spans: list[StateSpan] = []
    current: TradingStateChanged | None = None
    began = datetime.min.replace(tzinfo=UTC)
    refused = 0

    def close(end: datetime | None, change: TradingStateChanged | None) -> None:
        assert current is not None
        stop = end if end is not None else max(began, times[-1]) if times else began
        bars = max(_bars(times, began, end), 1 if refused else 0)
        spans.append(StateSpan(
            current.to_state.value, began, stop, current.reason, bars, refused,
            None if change is None else change.to_state.value, None if change is None else change.reason,
        ))

    for event in events:
        if event.event_type is EventType.TRADING_STATE_CHANGED:
            change = TradingStateChanged.from_event(event)
            if current is not None:
                close(as_utc(event.timestamp), change)
            current = change if change.to_state is not TradingState.ACTIVE else None
            began, refused = as_utc(event.timestamp), 0
        elif event.event_type is EventType.TRADE_FAILED and current is not None:
            failed = TradeFailed.from_event(event)
            if failed.refused_by == TRADING_STATE and not failed.reconciled:
                refused += 1
    if current is not None:
        close(None, None)
    return spans


def time_span(length: timedelta) -> str:
    """A stretch of data time as a trader reads it: ``287d 15h``, ``2h``, ``1h 30m``, ``0s``."""
    seconds = int(length.total_seconds())
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts) or "0s"


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def describe_span(span: StateSpan) -> list[str]:
    """The printed report's two lines for ``span``: when it began, the state, for how many bars
    and how long, the orders it refused and why it began; then until when and how it ended::

        2017-04-23 22:00 UTC  halted for 2 bars (2h): daily loss 1.50% >= limit 1.50% (...)
          until 2017-04-24 00:00 UTC, then active: resumed automatically: the cooldown after ...
    """
    refused = f", {_plural(span.orders_refused, 'order')} refused" if span.orders_refused else ""
    if span.next_state is None:
        ending = f"to the last bar, {span.end:%Y-%m-%d %H:%M} UTC: still {span.state} when the run ended"
    else:
        ending = f"until {span.end:%Y-%m-%d %H:%M} UTC, then {span.next_state}: {span.ended_by}"
    return [
        f"{span.start:%Y-%m-%d %H:%M} UTC  {span.state} for {_plural(span.bars, 'bar')} "
        f"({time_span(span.duration)}){refused}: {span.reason}",
        f"  {ending}",
    ]


def span_totals(spans: Iterable[StateSpan], state: str) -> str:
    """How often and how long trading was in ``state`` among the spans that stopped trading:
    ``2 times, 25 bars``."""
    held = [span for span in spans if span.state == state and span.stopped_trading]
    return f"{_plural(len(held), 'time')}, {_plural(sum(span.bars for span in held), 'bar')}"


def span_lines(spans: Sequence[StateSpan]) -> list[str]:
    """The printed report's account of ``spans``: a line of totals, then two lines for each span
    that stopped trading (`describe_span`), and a count of those that came and went inside one bar
    refusing nothing (a warning that cleared at the bar's close)."""
    shown = [span for span in spans if span.stopped_trading]
    if not shown:
        lines = ["Trading halted or reducing: never"]
    else:
        totals = "; ".join(f"{state} {span_totals(shown, state)}" for state in _STOPPED
                           if any(span.state == state for span in shown))
        lines = [f"Trading halted or reducing: {totals}"]
        lines.extend(f"  {line}" for span in shown for line in describe_span(span))
    passed = len(spans) - len(shown)
    if passed:
        lines.append(f"  ({passed:,} more began and ended inside one bar, refusing nothing)")
    return lines


def span_notes(spans: Sequence[StateSpan], most: int = 4) -> list[str]:
    """A line for each of the (at most ``most``) longest spans that stopped trading, in time
    order, for under the report's chart: the state, from when to when, its bars and time, the
    orders it refused and why it began; then how many more there were."""
    shown = [span for span in spans if span.stopped_trading]
    longest = sorted(sorted(shown, key=lambda span: -span.bars)[:most], key=lambda span: span.start)
    notes = []
    for span in longest:
        until = "the end" if span.next_state is None else f"{span.end:%Y-%m-%d %H:%M} UTC"
        refused = f", {_plural(span.orders_refused, 'order')} refused" if span.orders_refused else ""
        notes.append(
            f"{span.state.capitalize()} {span.start:%Y-%m-%d %H:%M} UTC to {until}, {_plural(span.bars, 'bar')} "
            f"({time_span(span.duration)}){refused}: {span.reason}"
        )
    if len(shown) > len(longest):
        notes.append(f"... and {len(shown) - len(longest):,} shorter halted or reducing stretches (summary.json's state_spans)")
    return notes
