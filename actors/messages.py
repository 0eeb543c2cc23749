"""Every message the actors exchange: frozen values, so nothing shared can change in flight."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from actors.supervision.messages import ChildExited, Crash, GetChildren, Hang, Ping, Pong, RestartChild, Tick
from runtime.alerts import Alert
from runtime.broker import Fill, Order
from runtime.errors import TradewardenError
from runtime.events import Event
from runtime.risk.guards import TradingState
from runtime.signals import Signal
from runtime.validation import (
    attrs_aware_datetime,
    attrs_boolean,
    attrs_finite,
    attrs_instance_of,
    attrs_optional_aware_datetime,
    attrs_text,
)

__all__ = [
    "Ping",
    "Pong",
    "Tick",
    "Crash",
    "Hang",
    "ChildExited",
    "RestartChild",
    "GetChildren",
    "EquityReading",
    "EquityBatch",
    "CashFlow",
    "Resume",
    "HaltNotSaved",
    "Halt",
    "GetGuardState",
    "GuardStatus",
    "Liquidate",
    "PlaceOrder",
    "OrderOutcome",
    "MarketData",
    "RunCycle",
    "GetMetrics",
    "LoopStatus",
    "Publish",
    "Subscribe",
    "Unsubscribe",
    "GetJournals",
    "SendAlert",
]


# --- guard ------------------------------------------------------------------------------------


@attrs.frozen
class EquityReading:
    """One account equity reading for the guard; ``positions_open`` (when known) lets a halted
    guard find positions left open without asking the broker on every reading.

    ``net_deposits`` is the account's cumulative net deposits read with the equity (see
    `runtime.broker.AccountSnapshot`): a change since the guard's last one is a cash flow.
    """

    equity: Any
    at: datetime
    positions_open: int | None = None
    sent_at: float | None = None  # perf_counter() when sent, for guard_reaction_ms
    net_deposits: Any = None


@attrs.frozen
class EquityBatch:
    """Many readings at one moment; the guard's result equals that of one reading at a time."""

    equities: Sequence[Any] = attrs.field(converter=lambda values: tuple(values) if _iterable(values) else (values,))
    at: datetime
    positions_open: int | None = None
    net_deposits: Any = None  # the account's net deposits, read with the batch's last equity


def _iterable(values: Any) -> bool:
    # A batch is read once, whole, where it is made: a generator must not lose readings later.
    try:
        iter(values)
    except TypeError:
        return False
    return not isinstance(values, (str, bytes))


@attrs.frozen
class CashFlow:
    """A deposit (> 0) or withdrawal (< 0): neither a gain nor a drawdown.

    For a broker without `AccountSnapshot` only: told separately it races with the readings (a
    reading between the balance change and this message looks like a gain or a loss). A flow the
    guard cannot take (one that would leave no equity) is refused and counted, never fatal.
    """

    amount: float = attrs.field(validator=attrs_finite)


@attrs.frozen
class Resume:
    """Lift a latched HALTED (or REDUCING) back to ACTIVE; the peak is kept. ``by`` is a
    non-blank string, ``rebaseline`` True or False and ``sent_at`` None or a timezone-aware
    datetime (else `TypeError` or `ValueError` naming the field and the value), as for `Halt`.

    Asked, the guard answers the previous `TradingState`, or a `ResumeRefused` (returned, not
    raised, so a told Resume can never kill the guard) while the account is still past a hard
    limit. ``rebaseline`` first sets the peak and the day's start to today's equity.

    ``sent_at`` is when the person decided to resume (a chat message's date, a request's
    arrival), on the system's clock: a halt (or REDUCING) latched after it, which they had not
    seen, is not lifted (the refusal says when each happened). None: no such check.
    """

    by: str = attrs.field(default="operator", validator=attrs_text)
    rebaseline: bool = attrs.field(default=False, validator=attrs_boolean)
    sent_at: datetime | None = attrs.field(default=None, validator=attrs_optional_aware_datetime)


@attrs.frozen
class Halt:
    """The kill switch: latch HALTED with who and why, close every position, alert and journal.
    Asked, the guard answers the previous `TradingState`, or a `HaltNotSaved` (returned, not
    raised) when the state store did not take the halt. ``by`` and ``reason`` are non-blank
    strings (else `TypeError` or `ValueError` naming the field and the value): the journal and
    the alert must say who pressed it and why. ``press`` is its id in the guard's
    `actors.pressed_halts.PressedHalts` (set by `TradingSystem.halt`), which the guard may have
    taken ahead of this message, before an order queued in front of it: then it is not carried
    out twice, and the answer is the same."""

    by: str = attrs.field(validator=attrs_text)
    reason: str = attrs.field(validator=attrs_text)
    press: int | None = None


class HaltNotSaved(TradewardenError, RuntimeError):
    """A halt the guard carried out (HALTED in this process, its positions being closed) that its
    state store did not take: a restart before the guard saves it again (it tries until the store
    takes it) would come back without it. ``previous`` is the state before the halt; the message
    says why it was not saved."""

    def __init__(self, message: str, previous: TradingState) -> None:
        super().__init__(message)
        self.previous = previous

    def __reduce__(self) -> tuple[type[HaltNotSaved], tuple[str, TradingState]]:
        # Pickled whole (to a fleet's caller through Ray): ``previous`` is not one of the args.
        return type(self), (str(self), self.previous)


@attrs.frozen
class GetGuardState:
    """Ask the guard for its `GuardState` and block counts."""


@attrs.frozen
class GuardStatus:
    """The guard's answer to `GetGuardState`. ``rebaseline_blocked`` says why a resume with a
    rebaseline would be refused on the guard's latest reading (`RiskMonitor.rebaseline_blocked`),
    None when one would be taken. ``state_since`` is when the HALTED or REDUCING in force began,
    as the guard's record keeps it (None while ACTIVE)."""

    state: Any  # runtime.GuardState
    block_counts: dict[str, int]
    bad_readings: int
    liquidating: bool
    bad_cash_flows: int = 0
    rebaseline_blocked: str | None = None
    state_since: datetime | None = None


@attrs.frozen
class Liquidate:
    """Close every open position now (the guard's own retry, or a fail-safe's request)."""

    reason: str
    attempt: int = 0


@attrs.frozen
class PlaceOrder:
    """An order for the guard, the one gateway to the broker (ask it; the answer is `OrderOutcome`).

    The guard checks the order against the trading state (`runtime.risk.gate.check_order`),
    journals it, submits it, reads the account right after, observes that equity, and answers.
    ``at`` is the moment of the cycle that made it; ``signal`` (when it came from one) names it in
    the order's events.
    """

    order: Order = attrs.field(validator=attrs_instance_of(Order))
    at: datetime = attrs.field(validator=attrs_aware_datetime)
    signal: Signal | None = None
    # time.monotonic() after which the sender no longer waits: a later order is refused, never
    # sent behind the sender's back (None: the sender waits for as long as it takes).
    expires: float | None = None


@attrs.frozen
class OrderOutcome:
    """The guard's answer to `PlaceOrder`: exactly one of ``fill`` (executed), ``refusal`` (the
    gate refused it: it never reached the broker) and ``error`` (the broker failed it), with the
    trading state and the account as read right after (``equity`` None when unreadable).

    ``unknown`` (with ``error`` saying why) when the broker failed without saying the order did
    not trade (a timeout after it reached the venue) and does not know it yet: it may hold the
    position. The guard keeps looking it up and journals the truth (TRADE_EXECUTED, reconciled,
    when it is found); do not send the order again as a new one.

    A ``fill`` with an ``error`` is a fill that does not match its order (another symbol, side or
    client id, more volume): executed as the broker reports it, and alerted."""

    client_id: str
    fill: Fill | None
    refusal: str | None
    error: str | None
    trading_state: TradingState
    equity: float | None
    positions_open: int | None
    unknown: bool = False

    @property
    def executed(self) -> bool:
        """True when the order was filled."""
        return self.fill is not None


# --- loop -------------------------------------------------------------------------------------


@attrs.frozen
class MarketData:
    """New market data arrived (a bar closed at ``at``): the loop hands it to its market feed
    (which updates prices and strategies, in the loop's own thread and order), then runs a cycle.
    ``bar`` is whatever the feed understands (a `runtime.replay.prices.Bar`, a dict of prices, ...).
    ``at`` must be a timezone-aware datetime (else `TypeError` or `ValueError` naming it)."""

    at: datetime = attrs.field(validator=attrs_aware_datetime)
    bar: Any = None


@attrs.frozen
class RunCycle:
    """Run one trading cycle now (``at``, a timezone-aware datetime, defaults to the clock's
    time); answers with `LoopStatus`."""

    at: datetime | None = attrs.field(default=None, validator=attrs_optional_aware_datetime)


@attrs.frozen
class GetMetrics:
    """Ask the loop for its `LoopStatus`."""


@attrs.frozen
class LoopStatus:
    """The loop's heartbeat figures and when (clock monotonic seconds) it last completed a cycle."""

    metrics: Any  # runtime.HeartbeatMetrics
    last_cycle_at: float | None


# --- emitter and alerts -----------------------------------------------------------------------


@attrs.frozen
class Publish:
    """An event for the emitter to fan out."""

    event: Event


@attrs.frozen
class Subscribe:
    """Add a subscriber: a callable taking an `Event`, or a pykka ActorRef that is told each event."""

    subscriber: Any


@attrs.frozen
class Unsubscribe:
    """Remove a subscriber added before."""

    subscriber: Any


@attrs.frozen
class GetJournals:
    """Ask the emitter for its `JournalSink`s. The answer comes once every event published before
    the ask has been handed to them, so a producer that then waits on their `JournalSink.backlog`
    waits for its own events too (flow control for a replay; live actors never wait)."""


@attrs.frozen
class SendAlert:
    """An alert for the alert actor to deliver."""

    alert: Alert
