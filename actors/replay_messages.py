"""The messages of a batched replay: bars to the loop in batches, readings to the guard in
series, the loop's figures to the heartbeat in data time. Frozen values, like every message."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import attrs

from actors.messages import EquityReading, MarketData
from runtime.events import Event

__all__ = [
    "BatchDone", "Cycles", "EquitySeries", "FollowData", "GetGuardLine", "JudgeReading", "MarketBatch", "PublishBatch",
]


@attrs.frozen
class MarketBatch:
    """Bars for the loop to play one after the other in one message (asked): for each it moves
    the replay's clock to the bar's time, hands the bar to its market feed and runs a cycle,
    exactly as for a `MarketData` told alone and settled before the next. ``equity``, when
    given, is read after each bar; the answer is a `BatchDone`. ``deadline`` (a
    ``time.monotonic()`` moment: the replay's own deadline for the batch) is how long the loop
    waits for the guard's answers while it plays the batch, so that a slow machine never makes
    it give up on an order that a quiet one would have placed; None: the loop's ``guard_timeout``."""

    bars: tuple[MarketData, ...]
    equity: Callable[[], float] | None = None
    deadline: float | None = None


@attrs.frozen
class BatchDone:
    """What a `MarketBatch` did: the bars it played, and the equity after each (when asked for)."""

    played: int
    equities: tuple[float, ...] = ()


@attrs.frozen
class EquitySeries:
    """Equity readings each made at its own time, for the guard to take in order; told only with
    readings its clear line calls clear (nothing can fire on them), so a whole series costs one
    message and at most one save."""

    equities: tuple[float, ...]
    times: tuple[datetime, ...]
    positions_open: int | None = None


@attrs.frozen
class JudgeReading:
    """One reading for the guard to judge at once (asked); answered with its new
    `runtime.replay.guard_line.GuardLine` once it has acted on the reading (liquidated, if it had to)."""

    reading: EquityReading


@attrs.frozen
class GetGuardLine:
    """Ask the guard for its `runtime.replay.guard_line.GuardLine`."""


@attrs.frozen
class FollowData:
    """Tell the heartbeat that its beats follow the loop's `Cycles` from data time ``since``
    (clock monotonic seconds, read when this is sent: the loop may move the clock before the
    heartbeat reads it), not its timer: beats fall due on the same data-time schedule, without a
    timer tick per bar."""

    since: float


@attrs.frozen
class Cycles:
    """The loop's figures after each cycle of a batch: ``(at, clock monotonic seconds, figures)``
    with ``figures`` the eight `runtime.heartbeat.HeartbeatMetrics` values in field order."""

    entries: tuple[tuple[datetime, float, tuple[Any, ...]], ...]


@attrs.frozen
class PublishBatch:
    """Events for the emitter to fan out, in order, as if each came in its own `Publish`: one
    message, and one hand-off to each sink's worker, for the lot (a replay's heartbeats)."""

    events: tuple[Event, ...]
