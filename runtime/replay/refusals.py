"""Orders a run's journal says did not trade: each one's cause and reason, and the first of each
cause with how many others gave the same reason, so a summary can say why without the journal."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from runtime.events import Event, EventType
from runtime.payloads import TradeFailed
from runtime.replay.spans import as_utc
from runtime.risk.gate import TRADING_STATE
from runtime.validation import attrs_positive

__all__ = ["FirstRefusal", "Refusal", "first_refusals", "readable_error", "refusals_from_events"]

# A figure in a reason (18,424.36, 1.8, 1e+09): two refusals whose words match once every figure
# is taken out were refused for the same reason, at another price or equity.
_FIGURE = re.compile(r"\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")
# The broker's error is journaled as its exception's repr, OrderRejected('order refused: ...').
_EXCEPTION_REPR = re.compile(r"^(?P<name>[A-Za-z_]\w*)\((?P<text>'.*'|\".*\")\)$", re.S)


def readable_error(error: str) -> str:
    """``error`` as a person reads it: an exception's repr with one message,
    ``OrderRejected('order refused: ...')``, is written ``OrderRejected: order refused: ...``
    (without its quotes and escapes); any other text is kept as it is."""
    match = _EXCEPTION_REPR.match(error)
    if match is None:
        return error
    try:
        text = ast.literal_eval(match["text"])
    except (ValueError, SyntaxError):
        return error
    return f"{match['name']}: {text}" if isinstance(text, str) else error  # ('a', 'b'): more than one argument


@attrs.frozen
class Refusal:
    """An order that did not trade: when (UTC), and its cause: the gate's rule that refused it
    (a pre-trade limit's setting name, or ``trading_state`` when the guard was halted or
    reducing), ``broker`` when the broker refused or failed it, or ``not sent`` when it never
    reached the broker for another reason (the loop held it back, or it could not be journaled);
    and its ``reason``, the guard's words or the broker's error (`readable_error`)."""

    time: datetime = attrs.field(converter=as_utc)
    cause: str = attrs.field(validator=attrs.validators.instance_of(str))
    reason: str = attrs.field(default="", validator=attrs.validators.instance_of(str))


def refusals_from_events(events: Iterable[Event]) -> list[Refusal]:
    """Every order a journal says did not trade (its TRADE_FAILED events), in journal order. A
    reconciled one is left out: a restarted guard journals it for an order it could not find,
    whose fill may still turn up (a reconciled TRADE_EXECUTED, a row of fills.csv)."""
    refusals = []
    for event in events:
        if event.event_type is EventType.TRADE_FAILED:
            failed = TradeFailed.from_event(event)
            if failed.reconciled:
                continue
            cause = failed.refused_by or ("not sent" if failed.rejected else "broker")
            refusals.append(Refusal(event.timestamp, cause, readable_error(failed.error)))
    return refusals


@attrs.frozen
class FirstRefusal:
    """The first order refused for a ``cause``: when (UTC), its ``reason``, and ``alike``: how many
    orders of that cause (this one included) gave the same reason, figures aside (the same limit
    at another price or equity)."""

    cause: str = attrs.field(validator=attrs.validators.instance_of(str))
    time: datetime = attrs.field(converter=as_utc)
    reason: str = attrs.field(validator=attrs.validators.instance_of(str))
    alike: int = attrs.field(validator=attrs_positive)

    def to_json_dict(self) -> dict[str, Any]:
        """``{"cause", "time": ISO 8601, "reason", "alike"}``, as in summary.json."""
        return {"cause": self.cause, "time": self.time.isoformat(), "reason": self.reason, "alike": self.alike}

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> FirstRefusal:
        """The value `to_json_dict` wrote."""
        return cls(data["cause"], datetime.fromisoformat(data["time"]), data["reason"], data["alike"])

    def describe(self, refused: int) -> str:
        """One line under the summary's count of refusals, ``refused`` of them of this cause."""
        alike = "" if refused == 1 else (
            f" (all {refused:,} alike but for their figures)" if self.alike == refused
            else f" ({self.alike:,} of {refused:,} alike but for their figures)"
        )
        return f"  {self.cause}, first {self.time:%Y-%m-%d %H:%M} UTC: {self.reason}{alike}"


def first_refusals(refusals: Sequence[Refusal]) -> tuple[FirstRefusal, ...]:
    """The first refusal of each cause, by cause name, with how many of its cause were alike;
    none for ``trading_state``, whose refusals the stretches of halted or reducing trading explain
    (`runtime.replay.spans`: when, why and the orders each refused)."""
    firsts: dict[str, Refusal] = {}
    alike: dict[str, int] = {}
    for refusal in refusals:
        if refusal.cause == TRADING_STATE:
            continue
        first = firsts.setdefault(refusal.cause, refusal)
        if _FIGURE.sub("#", refusal.reason) == _FIGURE.sub("#", first.reason):
            alike[refusal.cause] = alike.get(refusal.cause, 0) + 1
    return tuple(FirstRefusal(cause, firsts[cause].time, firsts[cause].reason, alike[cause]) for cause in sorted(firsts))
