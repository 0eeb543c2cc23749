"""Every message the actors exchange: frozen values, so nothing shared can change in flight."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from actors.supervision.messages import ChildExited, Crash, GetChildren, Hang, Ping, Pong, RestartChild, Tick
from runtime.alerts import Alert
from runtime.events import Event
from runtime.risk.guards import TradingState

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
    "GetGuardState",
    "GetTradingState",
    "GuardStatus",
    "Liquidate",
    "TradingStateChanged",
    "MarketData",
    "RunCycle",
    "GetMetrics",
    "LoopStatus",
    "Publish",
    "Subscribe",
    "Unsubscribe",
    "SendAlert",
]


# --- guard ------------------------------------------------------------------------------------


@attrs.frozen
class EquityReading:
    """One account equity reading for the guard; ``positions_open`` (when known) lets a halted
    guard find positions left open without asking the broker on every reading."""

    equity: Any
    at: datetime
    positions_open: int | None = None
    sent_at: float | None = None  # perf_counter() when sent, for guard_reaction_ms


@attrs.frozen
class EquityBatch:
    """Many readings at one moment; the guard's result equals that of one reading at a time."""

    equities: Sequence[Any]
    at: datetime
    positions_open: int | None = None


@attrs.frozen
class CashFlow:
    """A deposit (> 0) or withdrawal (< 0): neither a gain nor a drawdown."""

    amount: float


@attrs.frozen
class Resume:
    """Lift a latched HALTED (or REDUCING) back to ACTIVE; the peak is kept."""

    by: str = "operator"


@attrs.frozen
class GetTradingState:
    """Ask the guard what trading may do now (the loop asks before every order)."""


@attrs.frozen
class GetGuardState:
    """Ask the guard for its `GuardState` and block counts."""


@attrs.frozen
class GuardStatus:
    """The guard's answer to `GetGuardState`."""

    state: Any  # runtime.GuardState
    block_counts: dict[str, int]
    bad_readings: int
    liquidating: bool


@attrs.frozen
class Liquidate:
    """Close every open position now (the guard's own retry, or a fail-safe's request)."""

    reason: str
    attempt: int = 0


@attrs.frozen
class TradingStateChanged:
    """The guard tells the loop what it may do now."""

    state: TradingState
    reason: str | None = None


# --- loop -------------------------------------------------------------------------------------


@attrs.frozen
class MarketData:
    """New market data arrived (a bar closed at ``at``): the loop hands it to its market feed
    (which updates prices and strategies, in the loop's own thread and order), then runs a cycle.
    ``bar`` is whatever the feed understands (a `runtime.replay.prices.Bar`, a dict of prices, ...)."""

    at: datetime
    bar: Any = None


@attrs.frozen
class RunCycle:
    """Run one trading cycle now (``at`` defaults to the clock's time); answers with `LoopStatus`."""

    at: datetime | None = None


@attrs.frozen
class GetMetrics:
    """Ask the loop for its `LoopStatus`."""


@attrs.frozen
class LoopStatus:
    """The loop's heartbeat figures and when (clock monotonic seconds) it last completed a cycle."""

    metrics: Any  # runtime.HeartbeatMetrics
    last_cycle_at: float | None
    trading_state: TradingState


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
class SendAlert:
    """An alert for the alert actor to deliver."""

    alert: Alert
