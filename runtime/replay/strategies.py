"""Example trading strategies that are signal sources: bars go in with `on_bar`, signals come out of `poll`."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from itertools import islice

from runtime.broker import Side
from runtime.replay.prices import Bar
from runtime.signals import Signal
from runtime.validation import finite_number, text, whole_number

__all__ = ["MovingAverageCrossover"]


class MovingAverageCrossover:
    """Long-only simple moving-average crossover on bar closes; a `SignalSource`.

    It buys ``volume`` when the ``fast``-bar average of closes rises above the ``slow``-bar one
    and, when the fast average falls back below, sells what it holds. It never shorts: a cross
    down while flat does nothing, and a cross up while long does not add. A cross needs a strict
    change of side (equal averages keep the last side) and needs a previous bar with both
    averages known, so the first signal can come no earlier than bar ``slow + 1``.

    It tracks its own intended position, the volume its buy signals asked for, so a sell never
    exceeds what it bought. The runtime may refuse a signal or a guard may liquidate; call
    `sync_position` with what the broker actually holds so the strategy does not sell what it no
    longer has.

    Feed bars in time order with `on_bar`; `poll` hands over the signals made since the last poll,
    once. Signals are stamped with their bar's time. It starts no threads; a lock lets one thread
    feed bars while another polls.
    """

    def __init__(self, symbol: str, fast: int = 5, slow: int = 20, volume: float = 1.0) -> None:
        text("symbol", symbol)
        self._fast = whole_number("fast", fast, 1)
        self._slow = whole_number("slow", slow, 1)
        if self._fast >= self._slow:
            raise ValueError(f"fast must be < slow, got fast {fast!r} and slow {slow!r}")
        self._volume = finite_number("volume", volume)
        if self._volume <= 0:
            raise ValueError(f"volume must be > 0, got {volume!r}")
        self._symbol = symbol
        self._closes: deque[float] = deque(maxlen=self._slow)
        self._above: bool | None = None  # which side the fast average was on at the last strict reading
        self._held = 0.0
        self._last_time: datetime | None = None
        self._pending: list[Signal] = []
        self._lock = threading.Lock()

    @property
    def symbol(self) -> str:
        """The symbol this strategy trades."""
        return self._symbol

    @property
    def fast(self) -> int:
        """Bars in the fast moving average."""
        return self._fast

    @property
    def slow(self) -> int:
        """Bars in the slow moving average."""
        return self._slow

    @property
    def volume(self) -> float:
        """The volume each entry buys."""
        return self._volume

    @property
    def position(self) -> float:
        """The volume the strategy believes it holds: what it bought and has not yet sold."""
        with self._lock:
            return self._held

    def sync_position(self, volume: float) -> None:
        """Set the held volume to what the broker reports (finite, >= 0), e.g. 0 after a liquidation."""
        held = finite_number("volume", volume)
        if held < 0:
            raise ValueError(f"volume must be >= 0 (the strategy is long-only), got {volume!r}")
        with self._lock:
            self._held = held

    def on_bar(self, bar: Bar) -> None:
        """Take the next bar's close; queues a buy or sell signal when the averages cross.

        Bars must come strictly later than the one before; an earlier or repeated bar raises
        ``ValueError`` naming both times, and changes nothing.
        """
        if not isinstance(bar, Bar):
            raise TypeError(f"bar must be a Bar, got {bar!r} ({type(bar).__name__})")
        with self._lock:
            if self._last_time is not None and bar.time <= self._last_time:
                raise ValueError(
                    f"bar time {bar.time.isoformat()} is not after the previous bar's {self._last_time.isoformat()}"
                )
            self._last_time = bar.time
            self._closes.append(bar.close)
            if len(self._closes) < self._slow:
                return
            closes = self._closes  # full: the last ``fast`` start at ``slow - fast``
            fast_ma = sum(islice(closes, self._slow - self._fast, None)) / self._fast
            slow_ma = sum(closes) / self._slow
            if fast_ma == slow_ma:
                return
            above = fast_ma > slow_ma
            previous, self._above = self._above, above
            if previous is None or previous == above:
                return
            averages = f"fast MA({self._fast}) {fast_ma:.6g} crossed {{}} slow MA({self._slow}) {slow_ma:.6g}"
            if above and self._held == 0:
                self._held = self._volume
                self._pending.append(Signal(self._symbol, Side.BUY, self._volume, bar.time, averages.format("above")))
            elif not above and self._held > 0:
                volume, self._held = self._held, 0.0
                self._pending.append(Signal(self._symbol, Side.SELL, volume, bar.time, averages.format("below")))

    def poll(self, now: datetime) -> Sequence[Signal]:
        """Every signal made since the last poll, once, oldest first.

        ``now`` is not consulted: each signal carries its own bar's time in ``at``.
        """
        if not self._pending:  # (nothing to hand over; a signal queued meanwhile waits for the next poll)
            return []
        with self._lock:
            pending, self._pending = self._pending, []
        return pending

    def __repr__(self) -> str:
        return (
            f"MovingAverageCrossover(symbol={self._symbol!r}, fast={self._fast}, slow={self._slow}, "
            f"volume={self._volume!r}, position={self._held!r})"
        )
