"""Replaying price bars through a running trading system in data time: the driver and a paper feed.

A replay hands the loop its bars in batches (`MarketBatch`); the loop moves a `ManualClock` to
each bar's time (so heartbeats, timers and trading-day rollovers follow the data, not the wall
clock), hands the bar to its market feed in its own thread and runs a cycle. `PaperFeed` is that
market feed for a `PaperBroker` and a bar-driven strategy such as
`runtime.replay.strategies.MovingAverageCrossover`; it also shows the guard each bar along its
path from the open by its high and low to the close (`PaperFeed.intrabar`).

A batch is played exactly as its bars would be one at a time, each settled before the next:
live, bars are minutes apart and a guard reacts within milliseconds, so a reading that might make
the guard act (near a limit, or after an order) is judged by it before the bar goes on, and the
next bar's price never reaches the broker before the guard has liquidated at this one's. Only
readings the guard's clear line calls clear (nothing can fire on them) wait, and reach it as one
series. The driver waits for each batch, the guard, the heartbeat and (every few batches) the
journal, which is the flow control: no mailbox grows however long the series, and the journal
is never more than `JOURNAL_BACKLOG` events behind, so a stop has little left to write and none
of a long replay's events is lost.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol

import attrs
import pykka
from loguru import logger

from actors.emitter import JournalSink
from actors.messages import GetJournals, MarketData, Ping
from actors.replay_messages import BatchDone, FollowData, MarketBatch
from actors.supervision.address import Address, ChildUnavailable
from runtime.adapters.paper import PaperBroker
from runtime.clock import ManualClock
from runtime.replay.guard_line import GuardLine, crossing_price
from runtime.replay.prices import Bar

__all__ = ["DEFAULT_BATCH", "JOURNAL_BACKLOG", "BarStrategy", "PaperFeed", "Replay", "ReplayResult", "replay_bars"]

DEFAULT_BATCH = 500
"""Bars a replay hands the loop in one message by default: enough that the messages cost little
beside the bars' own work, few enough that the journal's backlog and a stop's wait stay short."""

JOURNAL_BACKLOG = 1_000
"""How many events a replay lets the journal fall behind before it waits for it (`Replay`'s
``journal_backlog``): at the 20,000 events/s or more that group commit writes on SQLite with
fsync, a few tens of milliseconds of writing, so a stop drains well within the emitter's
shutdown timeout and a long replay's memory stays flat. The driver looks every
``journal_backlog // 16`` bars (every bar for a backlog under 32), so between two looks the
journal may fall that many bars' events further behind."""

_log = logger.bind(component="replay")
_RETRY_DEAD = 0.005  # seconds between asks while an address has only a dead incarnation
_NO_ANSWER = object()


class BarStrategy(Protocol):
    """What `PaperFeed` asks of a strategy: take each bar, and be told what the broker holds."""

    def on_bar(self, bar: Bar) -> None:
        """Take the next bar (in time order)."""
        ...

    def sync_position(self, volume: float) -> None:
        """Set the volume the strategy believes it holds to what the broker reports."""
        ...


class PaperFeed:
    """A market feed for `TradingSystem(market_feed=...)`: moves a paper broker and a strategy
    in step with each replayed bar, in the loop's own thread.

    For each `MarketData` carrying a `Bar` it, in this order: sets the broker's price of
    ``symbol`` to the bar's close (fills and valuations use it from now on); tells the strategy
    what the broker holds in that symbol (`sync_position`), so that a position the guard closed
    is no longer believed held; then hands the bar to the strategy (`on_bar`), whose signals the
    loop's cycle polls next. Syncing before the bar, not after, matters: a signal made on this
    bar is executed only by the cycle that follows, and syncing in between would erase it.

    The strategy is long-only in this example set: a short net volume (someone else's trade) is
    reported to it as 0. Anything but a `Bar` raises ``TypeError`` (the loop logs and counts it).

    It keeps the equity inside each bar that held a position, at each point of the bar's path
    (`inside_readings`), so that a report can give the worst the guard saw, and the peaks it
    measured from, not only the closes.
    """

    def __init__(self, broker: PaperBroker, strategy: BarStrategy, symbol: str) -> None:
        if not isinstance(symbol, str) or not symbol.strip():
            raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
        self.broker = broker
        self.strategy = strategy
        self.symbol = symbol
        self._bars = 0
        self._inside: dict[datetime, tuple[float, ...]] = {}
        self._lock = threading.Lock()

    @property
    def bars(self) -> int:
        """How many bars have been fed so far."""
        with self._lock:
            return self._bars

    @property
    def inside_readings(self) -> dict[datetime, tuple[float, ...]]:
        """The equity inside each bar fed so far that held a position, by bar time: at each point
        of the bar's path the feed read for the guard (`intrabar`), in the path's order, the open
        left out unless the bar gapped past a limit there. Their lowest is the worst the guard
        saw in the bar, their highest its best. A copy."""
        with self._lock:
            return dict(self._inside)

    def __call__(self, data: MarketData) -> None:
        """Feed one bar: price (with the bar's own spread, when it has one) first, then the
        broker's holding, then the strategy."""
        bar = data.bar
        if not isinstance(bar, Bar):
            raise TypeError(f"MarketData.bar must be a runtime.replay.prices.Bar, got {bar!r} ({type(bar).__name__})")
        self.broker.update_price(self.symbol, bar.close, bar.time, spread_points=bar.spread_points)
        self.strategy.sync_position(max(0.0, self.broker.net_volume(self.symbol)))
        self.strategy.on_bar(bar)
        with self._lock:
            self._bars += 1

    def intrabar(self, data: MarketData, line: Callable[[], GuardLine | None]) -> Iterator[tuple[float, bool]]:
        """The readings the guard takes inside the bar, before its close, for what the broker
        holds in ``symbol``: each as ``(equity, clear)``, where ``clear`` is whether the guard's
        line (``line()``, asked anew for each, since the guard may have moved) calls it clear.
        The caller has the guard take each reading before it asks for the next: what the guard
        closed is then no longer held. Nothing while nothing is held.

        The bar is read along a path from its open, high, low and close: the open; then the high
        and the low, the high first when the bar closed below its open, the low first otherwise
        (MetaTrader 5's tester orders its generated ticks so for falling and rising bars; a bar
        that closed at its open counts as rising); then the close. So a long on a falling
        bar meets its best before its worst, and its worst is measured from the peak that best
        may have raised; on a rising bar it meets its worst first, then its best, which the close
        is measured from.

        - **A limit or a stop crossed on the way** to a price (the account crossing a limit that
          breaches, or a position's loss reaching the per-position stop): the broker is priced at
          the first price on the way where the guard would close something, and the guard
          judges the account there (never clear), so what it closes fills there. At the open
          itself when the bar opened past it (a gap), wherever the bar went next.
        - **Otherwise**, the high and the low are each a reading at that price, the broker
          priced there when the reading is not clear. The bar's worst is a reading always; its
          best only when it would raise the peak or is not clear (otherwise the guard would take
          it without a finding); the open only when it would raise the peak (a guard reducing or
          halted judges the bar from its high and low).
        - **The close** is set afterwards by `__call__`, and the guard judges it with the cycle
          that follows; only a limit crossed on the way to it is read here.
        """
        bar = data.bar
        if not isinstance(bar, Bar):
            return
        broker, symbol = self.broker, self.symbol
        shown: list[float] = []

        def acts(guard: GuardLine, price: float) -> bool:
            return guard.acts(broker.equity_at(symbol, price), bar.time, broker.positions_at(symbol, price))

        first, second = (bar.high, bar.low) if bar.close < bar.open else (bar.low, bar.high)
        path = (bar.open, first, second, bar.close)
        try:
            for index, point in enumerate(path):
                held, guard = broker.net_volume(symbol), line()
                if held == 0 or guard is None:
                    return
                equity = broker.equity_at(symbol, point)
                # A position is open (``held``): the count only matters to a halted guard, for
                # which any open position makes the reading one to judge.
                clear = guard.clear(equity, bar.time, 1, broker.net_deposits)
                start = path[index - 1] if index else point
                worsening = point < start if held > 0 else point > start
                if not clear and (worsening or not index) and acts(guard, point):
                    crossed = crossing_price(start, point, functools.partial(acts, guard))
                    broker.update_price(symbol, crossed, bar.time)
                    equity = broker.account_equity()
                    shown.append(equity)
                    yield equity, False
                    continue
                if index == len(path) - 1:
                    return  # the close: the cycle that follows judges it
                worst = point == (bar.low if held > 0 else bar.high)
                raises_peak = equity > guard.peak
                if index or raises_peak:
                    shown.append(equity)
                if not (raises_peak or (index and (worst or not clear))):
                    continue  # a clear reading below the peak: the bar's worst tells the guard more
                if not clear:
                    broker.update_price(symbol, point, bar.time)
                    equity = broker.account_equity()
                yield equity, clear
        finally:
            if shown:
                with self._lock:
                    self._inside[bar.time] = tuple(shown)

    def __repr__(self) -> str:
        return f"PaperFeed(symbol={self.symbol!r}, strategy={self.strategy!r})"


@attrs.frozen
class ReplayResult:
    """What a replay did: bars played out of those given, the equity after each played bar,
    whether it ended before the last bar (Ctrl-C, `Replay.stop`, or the system ended), how many
    bars the system did not finish handling within the settle timeout, and the real seconds it
    took."""

    played: int
    total: int
    equity: tuple[tuple[datetime, float], ...]
    interrupted: bool
    unsettled: int
    elapsed_seconds: float

    @property
    def complete(self) -> bool:
        """True when every bar was played."""
        return self.played == self.total and not self.interrupted


class _System(Protocol):
    # What the driver needs of a `TradingSystem`: the loop's and the guard's stable addresses
    # (and the heartbeat's, when it has one, to wait for a beat that fell due; the emitter's, to
    # wait for the journal).
    @property
    def loop(self) -> Address: ...

    @property
    def guard(self) -> Address: ...


def _speed(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value != value:
        raise ValueError(f"speed must be a number > 0 (data seconds per real second) or None, got {value!r}")
    if value == float("inf"):
        return None
    return float(value)


class Replay:
    """Plays bars through a started `TradingSystem` in data time, in batches.

    Each batch of up to ``batch`` bars is one `MarketBatch` asked of the loop: for each bar the
    loop moves ``clock`` to the bar's time (firing every timer due on the way), shows the guard
    the bar's path for what is held (see `PaperFeed.intrabar`), hands the bar to its market
    feed and runs a cycle; readings the guard's clear line calls clear travel to the guard as one
    series, and any other reading, and every order, is judged by the guard before the bar goes
    on. The result is the same at any batch size, bar for bar and event for event: the same
    fills, the same guard bar and reason, the same equity after each bar, the same journal. Every
    event a bar causes is stamped with the bar's time. The heartbeat, told `FollowData` first,
    beats on its data-time schedule from the loop's figures after each cycle, with no timer tick
    per bar. After each batch the driver waits until the guard and the heartbeat have taken what
    the batch sent them and, when the system has an emitter, until its journal has at most
    ``journal_backlog`` events left to write (`JOURNAL_BACKLOG` by default; 0 waits for every
    one): that is the flow control, so no mailbox grows however long the series. After the last
    batch it waits for every one: once `run` returns with every bar played and settled, the
    journal holds every event the replay caused.

    ``equity`` (if given, e.g. ``broker.account_equity``) is read by the loop after each bar: the
    account marked at the bar's close after the bar's orders and any liquidation. Then, for each
    bar of the batch, the driver calls ``after_bar(index, bar)`` (fault drills, early stops) and
    ``progress(played, total, bar_time)``.

    ``batch`` defaults to `DEFAULT_BATCH`, or to 1 when ``speed`` or ``after_bar`` is given. With
    ``after_bar`` and one bar at a time the heartbeat keeps its own timer and stall watchdog, so
    a fault drill's hung loop is found as it would be live.

    ``speed`` paces the replay: a bar is played no sooner than ``data seconds since the first bar
    / speed`` real seconds after the start (``speed=3600`` plays an hour of data per second);
    None (the default) plays as fast as the system settles.

    A batch that does not settle within ``settle_timeout`` real seconds (a hung loop or guard)
    has its bars counted in `ReplayResult.unsettled`, logged, and the replay moves on: data time
    must move for the heartbeat's stall watchdog to run, since its timer follows the data too.
    Messages for an actor that is replaced are kept by its address and reach the next incarnation.

    `stop` (from any thread, or from ``after_bar``) ends the replay after the batch in hand;
    Ctrl-C (KeyboardInterrupt in the replaying thread) ends it at once, a batch already asked
    being left for the loop to finish. Either way `run` returns with ``interrupted`` set, and the
    caller stops the system (which stops its actors in reverse start order, the loop journaling
    LOOP_STOPPED).
    """

    def __init__(
        self,
        system: _System,
        clock: ManualClock,
        *,
        speed: float | None = None,
        settle_timeout: float = 10.0,
        equity: Callable[[], float] | None = None,
        after_bar: Callable[[int, Any], None] | None = None,
        progress: Callable[[int, int, datetime], None] | None = None,
        journal_backlog: int = JOURNAL_BACKLOG,
        batch: int | None = None,
    ) -> None:
        if not isinstance(clock, ManualClock):
            raise TypeError(f"clock must be a runtime.clock.ManualClock (data time), got {clock!r}")
        if isinstance(settle_timeout, bool) or not isinstance(settle_timeout, (int, float)) or not settle_timeout > 0:
            raise ValueError(f"settle_timeout must be a number of seconds > 0, got {settle_timeout!r}")
        self.system = system
        self.clock = clock
        self.speed = _speed(speed)
        self.settle_timeout = float(settle_timeout)
        if isinstance(journal_backlog, bool) or not isinstance(journal_backlog, int) or journal_backlog < 0:
            raise ValueError(f"journal_backlog must be a whole number of events >= 0, got {journal_backlog!r}")
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise ValueError(f"batch must be a whole number of bars >= 1 or None, got {batch!r}")
        self.journal_backlog = journal_backlog
        self._journal_every = max(1, journal_backlog // 16)
        if batch is None:
            batch = 1 if self.speed is not None or after_bar is not None else DEFAULT_BATCH
        self.batch = 1 if self.speed is not None else batch
        self._follow_data = not (after_bar is not None and self.batch == 1)
        self._equity = equity
        self._after_bar = after_bar
        self._progress = progress
        self._stopping = threading.Event()
        self._gone = False  # the system ended: nothing more can be played

    def stop(self) -> None:
        """Ask a running replay to end after the batch in hand (safe from any thread)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """True once `stop` was called."""
        return self._stopping.is_set()

    def run(self, bars: Iterable[Any]) -> ReplayResult:
        """Play ``bars`` (each with a timezone-aware ``time``, strictly increasing, none before the
        clock's time) and return what happened. A bar out of order raises ``ValueError`` naming
        its index and time before anything is played."""
        series = list(bars)
        self._check(series)
        started = time.monotonic()
        first_time = series[0].time if series else None
        equity: list[tuple[datetime, float]] = []
        played = 0
        unsettled = 0
        interrupted = False
        since_journal = 0
        try:
            index = 0
            while index < len(series):
                if self._stopping.is_set():
                    interrupted = True
                    break
                chunk = series[index:index + self.batch]
                if self.speed is not None and first_time is not None:
                    due = started + (chunk[0].time - first_time).total_seconds() / self.speed
                    if self._stopping.wait(max(0.0, due - time.monotonic())):
                        interrupted = True
                        break
                if self._follow_data:
                    self._follow()
                self.clock.set(chunk[0].time)  # data time moves even if the loop does not answer
                deadline = time.monotonic() + self.settle_timeout
                done = self._play(chunk, index, deadline)
                if done is None and self._gone:
                    break
                since_journal += len(chunk)
                settled = done is not None and self._settle(index, chunk[-1], deadline)
                last = index + len(chunk) >= len(series)
                if settled and (last or since_journal >= self._journal_every):
                    since_journal = 0
                    settled = self._journal_caught_up(deadline, index, chunk[-1], last)
                if not settled:
                    unsettled += len(chunk)
                for offset, bar in enumerate(chunk):
                    if done is not None and self._equity is not None and offset < len(done.equities):
                        equity.append((bar.time, done.equities[offset]))
                    played += 1
                    if self._after_bar is not None:
                        self._after_bar(index + offset, bar)
                    if self._progress is not None:
                        self._progress(played, len(series), bar.time)
                index += len(chunk)
        except KeyboardInterrupt:
            # Ends the replay, not the program: the caller still stops the system cleanly.
            interrupted = True
        if self._equity is not None:
            # A bar counts as played once its equity is recorded, even if Ctrl-C came just after.
            played = len(equity)
        if interrupted:
            _log.warning("replay ended early, after {} of {} bars", played, len(series))
        return ReplayResult(
            played=played,
            total=len(series),
            equity=tuple(equity),
            interrupted=interrupted or played < len(series),
            unsettled=unsettled,
            elapsed_seconds=time.monotonic() - started,
        )

    def _check(self, series: Sequence[Any]) -> None:
        now = self.clock.now()
        previous: datetime | None = None
        for index, bar in enumerate(series):
            moment = getattr(bar, "time", None)
            if not isinstance(moment, datetime) or moment.tzinfo is None:
                raise ValueError(f"bars[{index}].time must be a timezone-aware datetime, got {moment!r}")
            if previous is None and moment < now:
                raise ValueError(
                    f"bars[0].time {moment.isoformat()} is before the clock's time {now.isoformat()}; "
                    f"start the ManualClock at the first bar's time"
                )
            if previous is not None and moment <= previous:
                raise ValueError(
                    f"bars[{index}].time {moment.isoformat()} is not after "
                    f"bars[{index - 1}].time {previous.isoformat()}"
                )
            previous = moment

    def _follow(self) -> None:
        # Told before every batch, so that a heartbeat restarted during the replay follows the
        # data too; it reaches the heartbeat before any tick the batch's clock moves could post.
        heartbeat = getattr(self.system, "heartbeat", None)
        if heartbeat is None:
            return
        try:
            heartbeat.tell(FollowData(self.clock.monotonic()))
        except ChildUnavailable:
            pass  # no heartbeat left to follow anything

    def _play(self, chunk: Sequence[Any], index: int, deadline: float) -> BatchDone | None:
        batch = MarketBatch(tuple(MarketData(bar.time, bar) for bar in chunk), self._equity, deadline)
        done = self._ask("loop", self.system.loop, batch, deadline, index, chunk[0])
        return done if isinstance(done, BatchDone) else None

    def _settle(self, index: int, bar: Any, deadline: float) -> bool:
        # Each actor answers a Ping in mailbox order: the guard once it has taken the readings
        # the batch sent it, the heartbeat once it has made the beats that fell due (or, on its
        # own timer, judged the loop against a clock that has not run bars ahead of it).
        for name in ("guard", "heartbeat"):
            address = getattr(self.system, name, None)
            if address is not None and self._ask(name, address, Ping(), deadline, index, bar) is _NO_ANSWER:
                return False
        return True

    def _journal_caught_up(self, deadline: float, index: int, bar: Any, last: bool) -> bool:
        # Asked after the others have answered, so every event the batch caused is already in
        # the emitter's mailbox, and the emitter answers once it has handed them to the journal.
        # After the last batch, every one of them is waited for (none that others hand it later).
        emitter = getattr(self.system, "emitter", None)
        if emitter is None:
            return True
        journals = self._ask("emitter", emitter, GetJournals(), deadline, index, bar)
        if journals is _NO_ANSWER:
            return False
        journal: JournalSink
        for journal in journals:
            left = max(0.0, deadline - time.monotonic())
            if not (journal.wait_caught_up(left) if last else journal.wait_backlog(self.journal_backlog, left)):
                _log.warning(
                    "bar {} at {}: the journal still had {} events to write after {}s; moving on",
                    index, bar.time.isoformat(), journal.backlog, self.settle_timeout,
                )
                return False
        return True

    def _ask(self, name: str, address: Address, message: Any, deadline: float, index: int, bar: Any) -> Any:
        # The answer, or _NO_ANSWER (logged) when there was none in time.
        while True:
            remaining = deadline - time.monotonic()
            try:
                return address.ask(message, timeout=max(0.001, remaining))
            except pykka.Timeout:
                _log.warning(
                    "bar {} at {}: the {} did not finish with it within {}s; moving on so that "
                    "data time (and the watchdogs that follow it) keeps moving",
                    index, bar.time.isoformat(), name, self.settle_timeout,
                )
                return _NO_ANSWER
            except ChildUnavailable:
                self._stopping.set()
                self._gone = True
                _log.warning("bar {} at {}: the {} is gone; the replay ends", index, bar.time.isoformat(), name)
                return _NO_ANSWER
            except pykka.ActorDeadError:
                # The incarnation ended between the address's lookup and the ask (a restart in
                # progress): its mail moves to the next one, which the address will reach.
                if remaining <= 0:
                    return _NO_ANSWER
                if self._stopping.wait(_RETRY_DEAD):
                    return _NO_ANSWER
            except Exception as exc:  # the answer itself failed: count the bars unsettled, go on
                _log.warning("bar {} at {}: the {} failed to answer: {!r}", index, bar.time.isoformat(), name, exc)
                return _NO_ANSWER


def replay_bars(system: _System, bars: Iterable[Any], clock: ManualClock, **options: Any) -> ReplayResult:
    """Play ``bars`` through ``system`` in data time on ``clock``; ``options`` are `Replay`'s
    (speed, settle_timeout, equity, after_bar, progress, journal_backlog), and so are the rules."""
    return Replay(system, clock, **options).run(bars)
