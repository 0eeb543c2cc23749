"""The supervised replay beside its peers on the same bars: backtrader, and tradewarden's own core
in a plain loop. Same MA(5/20) long-only crossover, same volume, same 20% trailing drawdown guard.

``python -m benchmarks.replay_peers [--bars N]`` prints the figures and the issue's two ratios;
``python -m benchmarks --only replay`` puts them in the table. backtrader comes with the ``bench``
extra (``pip install -e '.[bench]'``); without it its row says so and the rest still runs.
"""

from __future__ import annotations

import argparse
import functools
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs

from actors.emitter import journal_sink
from actors.replay import PaperFeed, Replay
from actors.system import TradingSystem
from benchmarks.system import DiscardAlerts
from runtime.adapters.paper import PaperBroker
from runtime.adapters.sqlite import SqliteStore
from runtime.broker import Fill
from runtime.clock import ManualClock
from runtime.events import Event, EventType
from runtime.payloads import (
    Heartbeat,
    OrderSubmitted,
    Payload,
    SignalApproved,
    SignalReceived,
    TradeExecuted,
    TradeFailed,
)
from runtime.replay.guard_line import crossing_price
from runtime.replay.prices import Bar
from runtime.replay.strategies import MovingAverageCrossover
from runtime.risk.monitor import RiskMonitor
from runtime.settings import Settings
from runtime.signals import Signal
from runtime.store import MemoryStore, StateStore

__all__ = ["PeerResult", "backtrader_replay", "hourly_bars", "plain_core", "supervised_replay"]

SYMBOL = "EURUSD"
CASH = 10_000.0
FAST, SLOW = 5, 20
LIMIT_PERCENT = 20.0
_START = datetime(2020, 1, 6, tzinfo=UTC)


@attrs.frozen
class PeerResult:
    """One system's run over the bars: its speed and what it did (to see that all agree)."""

    system: str
    bars_per_second: float
    trades: int
    final_equity: float
    halted_at: datetime | None
    events: int = 0


def hourly_bars(count: int, seed: int = 14) -> list[Bar]:
    """``count`` hourly OHLC bars of a random walk near 1.1 (0.3% a bar), the same for every
    system; seeded, so a run is repeatable."""
    rng = random.Random(seed)
    bars, price = [], 1.1
    for index in range(count):
        open_ = price
        close = max(0.01, open_ * math.exp(rng.gauss(0.0, 0.003)))
        high = max(open_, close) * (1 + abs(rng.gauss(0.0, 0.001)))
        low = min(open_, close) * (1 - abs(rng.gauss(0.0, 0.001)))
        bars.append(Bar(_START + timedelta(hours=index), open_, high, low, close, 100.0))
        price = close
    return bars


def _settings() -> Settings:
    # The defaults but for the 20% limit, and a heartbeat every hourly bar in data time.
    return Settings.load(
        environ={}, max_drawdown_percent=LIMIT_PERCENT, heartbeat_interval_seconds=3600.0,
        heartbeat_timeout_seconds=2.0, stall_after_seconds=86_400.0,
    )


def _volume(bars: list[Bar]) -> float:
    return CASH / bars[0].close  # about 1x leverage


class _Journal:
    """What the supervised replay journals, made and written with no actor: the events of each
    signal (received, approved, then submitted and executed, or refused while halted, worded as
    the guard words it) and a heartbeat for every bar after the first (all but the loop's start
    and stop and the guard's three events of its halt) (made a run at a time, as the heartbeat actor makes
    a batch's), appended to ``store`` 500 at a time (one group commit each, as the journal
    worker's are)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.events = 0
        self._written: list[Event] = []
        self._beats: list[tuple[datetime, tuple[Any, ...]]] = []  # made when something follows them
        self._beat = 0
        self._signals = self._trades = 0
        self._started = False

    def signal(self, signal: Signal, at: datetime, fill: Fill | None) -> None:
        order = signal.order()
        self._signals += 1
        made: list[Payload] = [SignalReceived.of(signal), SignalApproved.of(signal)]
        if fill is None:
            made.append(TradeFailed.of(order, signal, rejected=True, error="trading halted", refused_by="trading_state"))
        else:
            submitted = OrderSubmitted.of(order, signal)
            made += [submitted, TradeExecuted.of(submitted, fill)]
            self._trades += 1
        self._make_beats()
        self._written += [payload.event("main", at) for payload in made]

    def bar(self, at: datetime, positions_open: int, equity: float) -> None:
        # The heartbeat's first deadline is an interval after it starts: the second bar.
        if self._started:
            self._beat += 1
            figures = (self._signals, self._trades, 0, 0.0, positions_open, equity, self._signals, self._trades, self._beat)
            self._beats.append((at, figures))
            if len(self._beats) + len(self._written) >= 500:
                self.flush()
        self._started = True

    def _make_beats(self) -> None:
        if self._beats:
            self._written += Heartbeat.events_of("main", self._beats)
            self._beats = []

    def flush(self) -> None:
        """Write what is made and due."""
        self._make_beats()
        written, self._written = self._written, []
        self.events += self.store.append_events(written)


def plain_core(bars: list[Bar], journal: StateStore | None = None) -> PeerResult:
    """tradewarden's own parts with no actor: a `PaperBroker`, the strategy and a `RiskMonitor`
    with the same guards, reading bars as the replay does (a held bar along its path from the open
    by its high and low to the close, a liquidation inside a bar at the crossing price, then the
    close), flat and halted on a breach.

    With ``journal``, it also makes and journals there what the supervised replay journals for
    these bars (`_Journal`), all in the one thread: the least a journaled replay costs here."""
    broker = PaperBroker(CASH)
    strategy = MovingAverageCrossover(SYMBOL, FAST, SLOW, _volume(bars))
    guards = _settings().guards()
    monitor = RiskMonitor(CASH, guards)
    writer = _Journal(journal) if journal is not None else None
    trades = 0
    halted_at = None
    started = time.perf_counter()
    for bar in bars:
        if halted_at is None and broker.net_volume(SYMBOL) > 0:
            halted_at = _inside_bar(monitor, guards, broker, bar)
        broker.update_price(SYMBOL, bar.close, bar.time)
        strategy.sync_position(max(0.0, broker.net_volume(SYMBOL)))
        strategy.on_bar(bar)
        for signal in strategy.poll(bar.time):
            fill = None
            if halted_at is None:
                fill = broker.submit_order(signal.order())
                trades += 1
            if writer is not None:
                writer.signal(signal, bar.time, fill)
        if halted_at is None and _halts(monitor, guards, broker.account_equity(), bar.time):
            halted_at = _liquidate(monitor, broker, bar)
        else:
            monitor.observe(broker.account_equity(), bar.time, changes_only=True)
        if writer is not None:
            writer.bar(bar.time, len(broker.open_positions()), broker.account_equity())
    if writer is not None:
        writer.flush()
    elapsed = time.perf_counter() - started
    name = "tradewarden core, plain loop" if writer is None else "tradewarden core journaling to SQLite, plain loop"
    return PeerResult(name, len(bars) / elapsed, trades, broker.account_equity(), halted_at, writer.events if writer else 0)


def _inside_bar(monitor: RiskMonitor, guards: list[Any], broker: PaperBroker, bar: Bar) -> datetime | None:
    # A held long's bar along its path, read as `actors.replay.PaperFeed.intrabar` reads it: a
    # gap past the limit liquidates at the open; then the high and the low (the high first on a
    # falling bar) and the way to the close, a breach on the way down liquidating where the limit
    # was crossed; the low always observed, the open and the high when they raise the peak. The
    # bar's time when it halted, else None.
    breaches = functools.partial(_breaches_at, monitor, guards, broker, bar.time)
    if breaches(bar.open):
        broker.update_price(SYMBOL, bar.open, bar.time)
        return _liquidate(monitor, broker, bar)
    path = (bar.open, *((bar.high, bar.low) if bar.close < bar.open else (bar.low, bar.high)), bar.close)
    for index, point in enumerate(path):
        start = path[index - 1] if index else point
        if point < start and breaches(point):
            broker.update_price(SYMBOL, crossing_price(start, point, breaches), bar.time)
            return _liquidate(monitor, broker, bar)
        if index < len(path) - 1:
            equity = broker.equity_at(SYMBOL, point)
            if (index and point == bar.low) or equity > monitor.tracker.peak_equity:
                monitor.observe(equity, bar.time, changes_only=True)
    return None


def _halts(monitor: RiskMonitor, guards: list[Any], equity: float, at: datetime) -> bool:
    # Whether this reading would halt, asked of a copy (only near a limit: the clear line first).
    factor, floor = monitor._clear_line()
    peak = max(monitor.tracker.peak_equity, equity)
    if equity > floor and equity > peak * factor:
        return False
    found = RiskMonitor.from_record(monitor.record(), guards).observe(equity, at, changes_only=True)
    return found is not None and found.newly_halted


def _breaches_at(monitor: RiskMonitor, guards: list[Any], broker: PaperBroker, at: datetime, price: float) -> bool:
    # Whether the account, were the bid ``price``, would halt (crossing_price's question).
    return _halts(monitor, guards, broker.equity_at(SYMBOL, price), at)


def _liquidate(monitor: RiskMonitor, broker: PaperBroker, bar: Bar) -> datetime:
    monitor.observe(broker.account_equity(), bar.time, changes_only=True)
    for position in broker.open_positions():
        broker.close_position(position.position_id)
    return bar.time


def supervised_replay(bars: list[Bar], store: StateStore, name: str) -> PeerResult:
    """The README's path: a whole `TradingSystem` (emitter journaling to ``store``, alerts, guard,
    loop, heartbeat beating once per bar in data time) on a `PaperBroker` fed by `PaperFeed`,
    played by `Replay` with its defaults; timed from the first bar until the journal holds every
    event the bars caused."""
    broker = PaperBroker(CASH)
    strategy = MovingAverageCrossover(SYMBOL, FAST, SLOW, _volume(bars))
    clock = ManualClock(bars[0].time)
    settings = _settings()
    journal = journal_sink(store)
    system = TradingSystem(
        settings, broker, strategy, store=store, clock=clock, loop_interval=None,
        market_feed=PaperFeed(broker, strategy, SYMBOL), sinks=[journal], alerts=DiscardAlerts(),
    ).start()
    try:
        started = time.perf_counter()
        result = Replay(system, clock).run(bars)
        if not journal.wait_backlog(0, 120.0):
            raise AssertionError("the journal never caught up with the replay")
        elapsed = time.perf_counter() - started
        if not result.complete or result.unsettled:
            raise AssertionError(f"the replay did not play every bar: {result}")
    finally:
        system.stop()
    events = store.events()
    trades = sum(e.event_type is EventType.TRADE_EXECUTED for e in events)
    fired = [e for e in events if e.event_type is EventType.GUARD_TRIGGERED]
    beats = sum(e.event_type is EventType.HEARTBEAT for e in events)
    if beats != len(bars) - 1:
        raise AssertionError(f"expected a heartbeat per bar after the first, got {beats} for {len(bars)} bars")
    return PeerResult(
        f"tradewarden supervised replay, journal {name}", len(bars) / elapsed, trades, broker.account_equity(),
        fired[0].timestamp if fired else None, len(events),
    )


def backtrader_replay(bars: list[Bar]) -> PeerResult | None:
    """backtrader on the same bars (None when it is not installed): a feed from the bars, SMA(5)
    and SMA(20), the same volume bought at the signal bar's close (cheat-on-close, as the paper
    broker fills) and sold on the cross down, and the same guard written in the strategy: when
    the broker's value is 20% below its peak, close and trade no more."""
    try:
        import backtrader as bt
    except ImportError:
        return None

    class Feed(bt.feed.DataBase):
        def start(self) -> None:
            super().start()
            self._rows = iter(bars)

        def _load(self) -> bool:
            bar = next(self._rows, None)
            if bar is None:
                return False
            self.lines.datetime[0] = bt.date2num(bar.time.replace(tzinfo=None))
            self.lines.open[0], self.lines.high[0], self.lines.low[0], self.lines.close[0] = (
                bar.open, bar.high, bar.low, bar.close,
            )
            self.lines.volume[0] = bar.volume
            self.lines.openinterest[0] = 0.0
            return True

    volume = _volume(bars)
    outcome: dict[str, Any] = {"trades": 0, "halted_at": None}

    class Crossover(bt.Strategy):
        def __init__(self) -> None:
            self.cross = bt.indicators.CrossOver(bt.indicators.SMA(self.data.close, period=FAST),
                                                 bt.indicators.SMA(self.data.close, period=SLOW))
            self.peak = CASH
            self.halted = False

        def next(self) -> None:
            if self.halted:
                return
            value = self.broker.getvalue()
            self.peak = max(self.peak, value)
            if value <= self.peak * (1 - LIMIT_PERCENT / 100):
                self.halted = True
                outcome["halted_at"] = self.data.datetime.datetime(0).replace(tzinfo=UTC)
                self.close()
                return
            if self.cross[0] > 0 and not self.position:
                self.buy(size=volume)
                outcome["trades"] += 1
            elif self.cross[0] < 0 and self.position:
                self.close()
                outcome["trades"] += 1

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker.setcash(CASH)
    cerebro.broker.set_coc(True)
    cerebro.broker.set_checksubmit(False)  # the paper broker lets equity fall below the order's value too
    cerebro.adddata(Feed())
    cerebro.addstrategy(Crossover)
    started = time.perf_counter()
    cerebro.run()
    elapsed = time.perf_counter() - started
    return PeerResult(f"backtrader {bt.__version__}", len(bars) / elapsed, outcome["trades"],
                      cerebro.broker.getvalue(), outcome["halted_at"])


def run_all(count: int) -> list[PeerResult | None]:
    """Every system on the same ``count`` bars, run in the order backtrader, plain core,
    core journaling to SQLite, supervised replay on SQLite, on memory, and then again in reverse, each system's two runs
    pooled (all its bars over all its time), so that none gets only the quieter half of a shared
    machine. Returns [backtrader or None, core, core journaling to SQLite, sqlite, memory]."""
    bars = hourly_bars(count)

    def on_sqlite(run: Callable[[StateStore], PeerResult]) -> Callable[[], PeerResult]:
        def system() -> PeerResult:
            with tempfile.TemporaryDirectory(prefix="tradewarden-peers-") as directory:
                store = SqliteStore(Path(directory) / "state.db")
                try:
                    return run(store)
                finally:
                    store.close()

        return system

    systems: list[Callable[[], PeerResult | None]] = [
        lambda: backtrader_replay(bars), lambda: plain_core(bars),
        on_sqlite(functools.partial(plain_core, bars)),
        on_sqlite(functools.partial(supervised_replay, bars, name="SqliteStore")),
        lambda: supervised_replay(bars, MemoryStore(), "MemoryStore"),
    ]
    first = [run() for run in systems]
    second = [run() for run in reversed(systems)][::-1]
    return [_pooled(a, b) for a, b in zip(first, second)]


def _pooled(first: PeerResult | None, second: PeerResult | None) -> PeerResult | None:
    if first is None or second is None:
        return None
    seconds = 1 / first.bars_per_second + 1 / second.bars_per_second  # per bar, both runs
    return attrs.evolve(second, bars_per_second=2 / seconds)


def describe(result: PeerResult) -> str:
    """One line: the system, its speed and what it did."""
    halted = result.halted_at.isoformat() if result.halted_at else "never"
    journaled = f", {result.events:,} events journaled" if result.events else ""
    return (f"{result.system}: {result.bars_per_second:,.0f} bars/s; {result.trades} trades, final equity "
            f"{result.final_equity:,.2f}, guard fired {halted}{journaled}")


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    """Run every system on the same bars and print the figures and the issue's ratios."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay_peers", description=__doc__)
    parser.add_argument("--bars", type=int, default=100_000, help="hourly bars (default 100000)")
    args = parser.parse_args(argv)
    from benchmarks.__main__ import _quiet

    _quiet()
    peer, core, journaled, sqlite, memory = run_all(args.bars)
    assert core is not None and journaled is not None and sqlite is not None and memory is not None
    for result in (peer, core, journaled, sqlite, memory):
        if result is not None:
            out(describe(result))
    if peer is None:
        out("backtrader: not installed (pip install -e '.[bench]')")
    else:
        out(f"supervised replay (SQLite) / backtrader: {sqlite.bars_per_second / peer.bars_per_second:.2f}x (target >= 3x)")
    out(f"supervised replay (SQLite) / plain core: {sqlite.bars_per_second / core.bars_per_second:.1%} (target >= 30%)")
    out(f"supervised replay (SQLite) / core journaling to SQLite: {sqlite.bars_per_second / journaled.bars_per_second:.1%} "
        "(what the actors cost beside the least a journaled replay does)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
