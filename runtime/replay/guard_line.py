"""What a batched replay needs to know of the guard to tell, bar by bar, whether a reading can
wait: the guard's clear line, its trading state and the rules, as one frozen value.

A reading the line calls clear is one the guard would take without a finding: no warning, no
breach, no state change, no event. Such readings may travel to the guard in batches; any other
one must reach it on its own, and be judged, before the replay goes on. The line follows the
readings it lets through (a new peak raises it) exactly as the guard's monitor would, and is
fetched again from the guard after every reading or order the guard judged on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import attrs

from runtime.broker import Position
from runtime.risk.guards import Guard, Level, TradingState
from runtime.risk.position_stop import PositionStop

__all__ = ["GuardLine", "crossing_price"]

# `clear` runs for every reading of a replay: module constants, since an Enum member looked up
# through its class costs a metaclass call each time.
_ACTIVE = TradingState.ACTIVE
_HALTED = TradingState.HALTED


@attrs.define
class GuardLine:
    """The guard's view for a replay: its monitor's trading state, peak, start and start-of-day
    equity, the clear line (``equity > peak * factor`` and ``equity > floor`` is clear), the end of
    the trading day in UTC (None when no rule depends on the day), the net deposits it knows, and
    its per-position stop, if it has one (then no reading with a position open is clear, since
    the guard checks the positions with every reading it takes).

    `clear` and `take` must see the same readings the guard will, in the same order.
    """

    state: TradingState
    peak: float
    start: float
    day_start: float
    factor: float
    floor: float
    day_until: datetime | None
    net_deposits: float | None
    guards: tuple[Guard, ...]
    position_stop: PositionStop | None = None

    @property
    def watches_positions(self) -> bool:
        """True when the guard checks each open position with every reading (a per-position stop)."""
        return self.position_stop is not None

    def clear(self, equity: float, at: datetime, positions_open: int, net_deposits: float | None) -> bool:
        """True when the guard would take this reading without a finding or an effect, on the
        same trading day with no cash flow: ACTIVE and above the clear line, or HALTED with no
        position open (nothing left to close). REDUCING is never clear: every reading there is
        judged, and may lift it; nor is a new day's first (a day's cooldown may end there)."""
        if net_deposits != self.net_deposits:
            return False
        if self.begins_day(at):
            return False  # a new day: the guard takes a new start of day (a cooldown may end), the line moves
        if self.state is _HALTED:
            return positions_open == 0
        if self.watches_positions and positions_open > 0:
            return False
        if self.state is not _ACTIVE:
            return False
        peak = equity if equity > self.peak else self.peak
        return equity > self.floor and equity > peak * self.factor

    def begins_day(self, at: datetime) -> bool:
        """True when a reading at ``at`` would be the first of a new trading day for a rule that
        measures the day (the guard takes that reading as the day's start)."""
        return self.day_until is not None and at >= self.day_until

    def take(self, equity: float) -> None:
        """Follow a clear reading the guard will take (its peak rises with it)."""
        if equity > self.peak:
            self.peak = equity

    def breaches(self, equity: float, at: datetime) -> bool:
        """True when this reading, taken next, would latch HALTED (a rule's level is BREACH)."""
        if self.state is _HALTED:
            return False
        peak = equity if equity > self.peak else self.peak
        day_start = equity if self.begins_day(at) else self.day_start
        return any(guard.level(equity, peak, self.start, day_start) is Level.BREACH for guard in self.guards)

    def acts(self, equity: float, at: datetime, positions: Sequence[Position]) -> bool:
        """True when the guard, taking this reading next with ``positions`` open (valued as the
        reading values them), would close something: a rule breaches (`breaches`), or its
        per-position stop fires for one of them (which it checks unless HALTED, when the
        liquidation closes everything)."""
        if self.breaches(equity, at):
            return True
        stop = self.position_stop
        return stop is not None and self.state is not _HALTED and bool(stop.fired(positions, equity))


def crossing_price(start: float, worst: float, breaches: Callable[[float], bool]) -> float:
    """The price nearest ``start`` on the way from ``start`` to ``worst`` at which
    ``breaches(price)`` first holds, given that it holds at ``worst`` (and that it holds at every
    price beyond the first one that breaches: the account only gets worse on the way, and a
    position's loss only grows). ``start`` itself when it already breaches (the bar gapped through
    the limit or the stop)."""
    if breaches(start):
        return start
    safe, hit = start, worst
    # Bisection to the last representable price: ~60 halvings bring two floats together.
    for _ in range(200):
        middle = (safe + hit) / 2.0
        if middle == safe or middle == hit:
            break
        if breaches(middle):
            hit = middle
        else:
            safe = middle
    return hit
