"""The replay driver in-process: bars through a real trading system in data time, lockstep, pacing, stopping."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from actors.emitter import journal_sink
from actors.messages import Crash
from actors.replay import PaperFeed, Replay, ReplayResult, replay_bars
from actors.system import TradingSystem
from runtime.adapters.paper import PaperBroker
from runtime.broker import Side
from runtime.clock import ManualClock
from runtime.events import Event, EventType
from runtime.replay.prices import SYNTHETIC_SYMBOL, SYNTHETIC_VOLUME, Bar, synthetic_bars
from runtime.replay.strategies import MovingAverageCrossover
from runtime.settings import Settings
from runtime.signals import Signal
from runtime.store import MemoryStore

START = datetime(2024, 3, 4, tzinfo=UTC)


def hourly(closes: list[float], start: datetime = START) -> list[Bar]:
    """Flat hourly bars at the given closes."""
    return [Bar(start + timedelta(hours=i), c, c, c, c) for i, c in enumerate(closes)]


class BuyOnFirstBar:
    """A bar strategy that buys ``volume`` on its first bar and then holds; records what it is told."""

    def __init__(self, symbol: str, volume: float) -> None:
        self.symbol = symbol
        self.volume = volume
        self.bars = 0
        self.synced: list[float] = []
        self._pending: list[Signal] = []

    def on_bar(self, bar: Bar) -> None:
        self.bars += 1
        if self.bars == 1:
            self._pending.append(Signal(self.symbol, Side.BUY, self.volume, bar.time, "first bar"))

    def sync_position(self, volume: float) -> None:
        self.synced.append(volume)

    def poll(self, now: datetime) -> list[Signal]:
        pending, self._pending = self._pending, []
        return pending


class Run:
    """A started trading system on a paper broker, fed by `PaperFeed`, with a journal to read."""

    def __init__(self, bars: list[Bar], strategy, symbol: str, **settings) -> None:
        self.bars = bars
        self.store = MemoryStore()
        self.broker = PaperBroker(10_000.0)
        self.clock = ManualClock(bars[0].time)
        self.feed = PaperFeed(self.broker, strategy, symbol)
        self.strategy = strategy
        self.settings = Settings.load(environ={}, heartbeat_interval_seconds=3600.0, heartbeat_timeout_seconds=2.0,
                                      **settings)
        self.system = TradingSystem(
            self.settings, self.broker, strategy, store=self.store, clock=self.clock, loop_interval=None,
            market_feed=self.feed, sinks=[journal_sink(self.store)], drills=True,
        ).start()

    def replay(self, **options) -> ReplayResult:
        return Replay(self.system, self.clock, equity=self.broker.account_equity, **options).run(self.bars)

    def stop(self) -> None:
        self.system.stop()

    def events(self, event_type: EventType | None = None):
        return [e for e in self.store.events() if event_type is None or e.event_type is event_type]


@pytest.fixture
def runs():
    made: list[Run] = []

    def make(bars, strategy, symbol, **settings) -> Run:
        run = Run(bars, strategy, symbol, **settings)
        made.append(run)
        return run

    yield make
    for run in made:
        run.stop()


def test_heartbeats_and_event_times_follow_the_bars_not_the_wall_clock(runs):
    bars = synthetic_bars(120)
    strategy = MovingAverageCrossover(SYNTHETIC_SYMBOL, volume=SYNTHETIC_VOLUME)
    run = runs(bars, strategy, SYNTHETIC_SYMBOL)
    result = run.replay()
    run.stop()

    assert result.complete and result.played == 120 and result.unsettled == 0
    beats = run.events(EventType.HEARTBEAT)
    # One beat per hour of data: 119 hours pass between the first bar and the last.
    assert len(beats) == len(bars) - 1
    bar_times = {bar.time for bar in bars}
    assert {beat.timestamp for beat in beats} == bar_times - {bars[0].time}
    # Lockstep: every event a bar causes is stamped with that bar's time.
    assert all(event.timestamp in bar_times for event in run.events())
    assert [b.metadata["beat"] for b in beats] == list(range(1, len(bars)))


def test_the_equity_of_every_bar_is_recorded_after_the_system_has_handled_it(runs):
    bars = hourly([100, 101, 102, 99, 98])
    strategy = BuyOnFirstBar("X", 10)
    run = runs(bars, strategy, "X")
    result = run.replay()

    assert [t for t, _ in result.equity] == [bar.time for bar in bars]
    # Bought 10 at 100 on the first bar: equity is cash + 10 * (close - 100) after each bar.
    assert [e for _, e in result.equity] == pytest.approx([10_000, 10_010, 10_020, 9_990, 9_980])
    trades = run.events(EventType.TRADE_EXECUTED)
    assert len(trades) == 1 and trades[0].timestamp == bars[0].time
    # The feed told the strategy what the broker held before each bar: nothing, then 10.
    assert strategy.synced == [0.0, 10.0, 10.0, 10.0, 10.0]


def test_a_days_first_bar_that_falls_through_the_daily_loss_fires_from_the_equity_carried_into_the_day(runs):
    # Daily bars: the day's start used to be the worst of its first bar (its only bar), so the
    # daily loss could never fire on daily data. It starts from the close before, as a live
    # guard reading the account at midnight would see it.
    bars = [Bar(START, 100, 100, 100, 100), Bar(START + timedelta(days=1), 100, 100, 90, 95)]
    run = runs(bars, BuyOnFirstBar("X", 100), "X", daily_loss_percent=8.0, max_drawdown_percent=50.0)
    result = run.replay()
    run.stop()

    assert result.complete and result.unsettled == 0
    [trigger] = run.events(EventType.GUARD_TRIGGERED)
    assert (trigger.metadata["guard"], trigger.metadata["reason"], trigger.timestamp) == (
        "daily_loss", "daily loss 8.00% >= limit 8.00% (start of day 10000.00, equity 9200.00)", bars[1].time)
    [closed] = run.events(EventType.POSITION_CLOSED)
    assert (closed.metadata["price"], closed.metadata["realised_pnl"]) == (pytest.approx(92.0), pytest.approx(-800.0))
    assert [e for _, e in result.equity] == pytest.approx([10_000, 9_200])


@pytest.mark.parametrize("batch", [1, 4, 1000])
def test_a_daily_loss_cooldown_ends_on_the_first_bar_of_the_next_day_at_any_batch_size(runs, batch):
    # Halted on day 1 (nothing left open), the guard resumes with the new day's first reading:
    # that reading is never held back as "clear" until the end of a batch.
    day1 = [100.0, 99.0, 97.0, 94.0] + [94.0] * 20  # a 6% fall: past the 5% limit at 03:00
    bars = hourly(day1 + [94.0] * 12)
    run = runs(bars, BuyOnFirstBar("X", 100), "X", daily_loss_percent=5.0, max_drawdown_percent=50.0,
               cooldown_rules="daily_loss")
    result = run.replay(batch=batch)
    run.stop()

    assert result.complete and result.unsettled == 0
    changes = [(e.metadata["to"], e.timestamp) for e in run.events(EventType.TRADING_STATE_CHANGED)]
    assert changes == [("halted", START + timedelta(hours=3)), ("active", START + timedelta(days=1))]


def test_the_daily_loss_guard_uses_the_trading_day_of_the_data(runs):
    # Day 1 loses 4% (under the 5% limit); day 2 starts at 96 and the limit is measured from
    # there: 92 is 8% below day 1's start but only 4.17% below day 2's, and it is 91 (5.2%) at
    # 08:00 on day 2 that breaches.
    day1 = [100.0] + [100 - 4 * (i + 1) / 23 for i in range(23)]  # 00:00 .. 23:00 on day 1, ends at 96
    day2 = [96.0, 95.0, 94.0, 93.0, 92.5, 92.0, 92.0, 91.5, 91.0, 91.0, 90.0]  # 00:00 .. 10:00 on day 2
    bars = hourly(day1 + day2)
    run = runs(bars, BuyOnFirstBar("X", 100), "X", daily_loss_percent=5.0, max_drawdown_percent=50.0)
    result = run.replay()
    run.stop()

    assert result.complete
    triggers = run.events(EventType.GUARD_TRIGGERED)
    assert [t.metadata["guard"] for t in triggers] == ["daily_loss"]
    assert triggers[0].metadata["at"] == (START + timedelta(days=1, hours=8)).isoformat()
    assert "start of day 9600.00" in triggers[0].metadata["reason"]
    closed = run.events(EventType.POSITION_CLOSED)
    assert len(closed) == 1 and closed[0].timestamp == START + timedelta(days=1, hours=8)
    # Flat after the guard: the equity no longer moves with the price.
    after = [e for t, e in result.equity if t >= START + timedelta(days=1, hours=8)]
    assert after == pytest.approx([9_100.0] * len(after))


def test_a_guard_liquidation_inside_a_bar_is_reflected_in_the_strategy_at_that_bars_close(runs):
    bars = synthetic_bars(120)
    strategy = MovingAverageCrossover(SYNTHETIC_SYMBOL, volume=SYNTHETIC_VOLUME)
    run = runs(bars, strategy, SYNTHETIC_SYMBOL)
    seen: list[tuple[datetime, float]] = []
    result = run.replay(after_bar=lambda index, bar: seen.append((bar.time, strategy.position)))

    trigger = run.events(EventType.GUARD_TRIGGERED)[0]
    fired_at = datetime.fromisoformat(trigger.metadata["at"])
    assert run.broker.open_positions() == []
    # The guard fired inside the bar (on its low), before the bar's close reached the strategy:
    # the feed syncs it at that close, so it holds nothing from that bar on.
    held = dict(seen)
    assert held[fired_at - timedelta(hours=1)] == SYNTHETIC_VOLUME
    assert held[fired_at] == 0.0
    assert held[fired_at + timedelta(hours=1)] == 0.0
    assert result.unsettled == 0


def test_no_bar_is_lost_when_the_loop_crashes_mid_replay(runs):
    bars = synthetic_bars(100)
    strategy = MovingAverageCrossover(SYNTHETIC_SYMBOL, volume=SYNTHETIC_VOLUME)
    run = runs(bars, strategy, SYNTHETIC_SYMBOL)

    def crash(index: int, bar: Bar) -> None:
        if index in (10, 40):
            run.system.loop.tell(Crash(f"test crash at bar {index}"))

    result = run.replay(after_bar=crash)
    run.stop()
    assert result.complete and result.unsettled == 0
    assert run.feed.bars == len(bars)  # every bar reached the feed, across two loop incarnations
    restarts = run.events(EventType.ACTOR_RESTARTED)
    assert [r.metadata["actor"] for r in restarts] == ["loop", "loop"]
    assert Counter(e.metadata["how"] for e in run.events(EventType.LOOP_STOPPED)) == {"crashed": 2, "normal": 1}


def test_speed_paces_the_replay_by_data_time():
    bars = hourly([100, 101, 102, 103, 104])  # 4 hours of data
    broker = PaperBroker(10_000.0)
    strategy = BuyOnFirstBar("X", 1)
    clock = ManualClock(bars[0].time)
    system = TradingSystem(
        Settings.load(environ={}, heartbeat_interval_seconds=3600.0, heartbeat_timeout_seconds=2.0),
        broker, strategy, clock=clock, loop_interval=None, market_feed=PaperFeed(broker, strategy, "X"),
        sinks=[], drills=True,
    ).start()
    try:
        result = replay_bars(system, bars, clock, speed=4 * 3600 / 0.3)  # the 4 hours in 0.3 s
    finally:
        system.stop()
    assert result.complete
    assert 0.3 <= result.elapsed_seconds < 5.0


def test_stop_and_ctrl_c_end_the_replay_after_the_bar_in_hand_and_the_system_stops_cleanly(runs):
    bars = synthetic_bars(100)
    strategy = MovingAverageCrossover(SYNTHETIC_SYMBOL, volume=SYNTHETIC_VOLUME)
    run = runs(bars, strategy, SYNTHETIC_SYMBOL)

    def interrupt(index: int, bar: Bar) -> None:
        if index == 29:
            raise KeyboardInterrupt  # what Ctrl-C raises in the replaying thread

    result = run.replay(after_bar=interrupt)
    assert result.interrupted and not result.complete
    assert result.played == 30 and len(result.equity) == 30
    run.stop()
    events = run.events()
    assert events[-1].event_type is EventType.LOOP_STOPPED and events[-1].metadata["how"] == "normal"
    assert run.feed.bars == 30

    other = runs(bars, MovingAverageCrossover(SYNTHETIC_SYMBOL), SYNTHETIC_SYMBOL)
    replay = Replay(other.system, other.clock, after_bar=lambda index, bar: replay.stop() if index == 9 else None)
    stopped = replay.run(bars)
    assert stopped.interrupted and stopped.played == 10 and replay.stopping


def test_bad_input_is_refused_before_anything_is_played(runs):
    bars = hourly([100, 101, 102])
    run = runs(bars, BuyOnFirstBar("X", 1), "X")
    with pytest.raises(ValueError, match=r"bars\[2\]\.time .* is not after bars\[1\]\.time"):
        Replay(run.system, run.clock).run([bars[0], bars[2], bars[1]])
    with pytest.raises(ValueError, match=r"bars\[0\]\.time .* is before the clock's time"):
        Replay(run.system, run.clock).run(hourly([100], start=START - timedelta(hours=1)))
    with pytest.raises(TypeError, match="clock must be a runtime.clock.ManualClock"):
        Replay(run.system, object())
    with pytest.raises(ValueError, match="speed must be a number > 0"):
        Replay(run.system, run.clock, speed=0)
    with pytest.raises(ValueError, match="settle_timeout must be"):
        Replay(run.system, run.clock, settle_timeout=-1)
    with pytest.raises(ValueError, match=r"^journal_backlog must be a whole number of events >= 0, got -1$"):
        Replay(run.system, run.clock, journal_backlog=-1)
    assert run.feed.bars == 0
    with pytest.raises(ValueError, match="symbol must be a non-empty string"):
        PaperFeed(run.broker, BuyOnFirstBar("X", 1), "")


def test_the_paper_feed_refuses_what_is_not_a_bar():
    from actors.messages import MarketData

    feed = PaperFeed(PaperBroker(), BuyOnFirstBar("X", 1), "X")
    with pytest.raises(TypeError, match=r"MarketData\.bar must be a runtime\.replay\.prices\.Bar, got \{'X': 1\.0\}"):
        feed(MarketData(START, {"X": 1.0}))


class SlowJournalDisk:
    """A store whose journal writes take 20 ms a batch, like a disk busy with other work."""

    def __init__(self) -> None:
        self.store = MemoryStore()

    def append_events(self, events: Sequence[Event]) -> int:
        threading.Event().wait(0.02)
        return self.store.append_events(events)

    def __getattr__(self, name: str):
        return getattr(self.store, name)


@pytest.mark.parametrize("backlog", [0, 3])
def test_the_replay_never_lets_the_journal_fall_further_behind_than_its_backlog(backlog):
    bars = synthetic_bars(150)
    disk = SlowJournalDisk()
    journal = journal_sink(disk)  # type: ignore[arg-type]
    broker, clock = PaperBroker(10_000.0), ManualClock(bars[0].time)
    strategy = MovingAverageCrossover(SYNTHETIC_SYMBOL, volume=SYNTHETIC_VOLUME)
    settings = Settings.load(environ={}, heartbeat_interval_seconds=3600.0, heartbeat_timeout_seconds=2.0)
    system = TradingSystem(
        settings, broker, strategy, store=disk, clock=clock, loop_interval=None,  # type: ignore[arg-type]
        market_feed=PaperFeed(broker, strategy, SYNTHETIC_SYMBOL), sinks=[journal],
    ).start()
    behind: list[int] = []
    try:
        result = Replay(
            system, clock, journal_backlog=backlog, after_bar=lambda index, bar: behind.append(journal.backlog)
        ).run(bars)
    finally:
        system.stop()
    assert result.complete and result.unsettled == 0
    assert len(behind) == 150 and max(behind) <= backlog
    assert system.unjournaled == 0
    assert disk.store.events()[-1].event_type is EventType.LOOP_STOPPED


class SlowVenue(PaperBroker):
    """A paper account whose fills take 0.7 s each, like a venue under load: longer than the
    loop's ``guard_timeout`` (0.5 s with a 2 s heartbeat timeout)."""

    in_process = True

    def submit_order(self, order):
        threading.Event().wait(0.7)
        return super().submit_order(order)


class BuyTwiceOnFirstBar(BuyOnFirstBar):
    def on_bar(self, bar: Bar) -> None:
        super().on_bar(bar)
        if self.bars == 1:
            self._pending.append(Signal(self.symbol, Side.BUY, self.volume, bar.time, "second order"))


def test_a_replay_waits_for_every_order_answer_however_slow_so_its_result_does_not_depend_on_the_machine_s_load():
    bars = hourly([100.0, 101.0, 102.0])
    broker, clock = SlowVenue(10_000.0), ManualClock(bars[0].time)
    store = MemoryStore()
    strategy = BuyTwiceOnFirstBar("X", 1)
    settings = Settings.load(environ={}, heartbeat_interval_seconds=3600.0, heartbeat_timeout_seconds=2.0)
    system = TradingSystem(
        settings, broker, strategy, store=store, clock=clock, loop_interval=None,
        market_feed=PaperFeed(broker, strategy, "X"), sinks=[journal_sink(store)],
    ).start()
    try:
        result = Replay(system, clock).run(bars)
    finally:
        system.stop()
    assert result.complete and result.unsettled == 0
    kinds = Counter(e.event_type for e in store.events())
    assert kinds[EventType.TRADE_EXECUTED] == 2 and kinds[EventType.TRADE_FAILED] == 0
    assert broker.net_volume("X") == 2.0
    beats = [e.metadata for e in store.events() if e.event_type is EventType.HEARTBEAT]
    assert [(b["trades_executed"], b["error_count"]) for b in beats] == [(2, 0), (2, 0)]
