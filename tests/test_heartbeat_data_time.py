"""In a replay the heartbeat beats from the loop's cycles, on its timer's data-time schedule, with
no timer tick per bar: a beat at the first bar at or past each deadline, deadlines a gap in the
data jumped over skipped and counted, each beat carrying the loop's figures after that bar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from actors.emitter import journal_sink
from actors.heartbeat import GetHeartbeatStats
from actors.replay import PaperFeed, Replay
from actors.system import TradingSystem
from runtime.adapters.paper import PaperBroker
from runtime.broker import Side
from runtime.clock import ManualClock
from runtime.events import EventType
from runtime.payloads import Heartbeat
from runtime.replay.prices import Bar
from runtime.settings import Settings
from runtime.signals import Signal
from runtime.store import MemoryStore

START = datetime(2024, 3, 1, tzinfo=UTC)  # a Friday


class SignalEveryBar:
    """A 1-lot buy signal on every bar (refused or filled, each one is counted by the loop)."""

    def __init__(self) -> None:
        self._pending: list[Signal] = []

    def on_bar(self, bar: Bar) -> None:
        self._pending.append(Signal("X", Side.BUY, 1.0, bar.time, "every bar", f"b{bar.time:%d%H}"))

    def sync_position(self, volume: float) -> None:
        pass

    def poll(self, now: datetime) -> list[Signal]:
        pending, self._pending = self._pending, []
        return pending


def test_beats_follow_the_bars_schedule_skip_a_weekend_and_carry_each_bars_figures():
    # Every 2 hours of data, bars hourly: Friday 00:00-05:00, then Monday 00:00-03:00.
    friday = [START + timedelta(hours=h) for h in range(6)]
    monday = [START + timedelta(days=3, hours=h) for h in range(4)]
    bars = [Bar(t, 100.0, 100.0, 100.0, 100.0) for t in friday + monday]
    store, broker, clock = MemoryStore(), PaperBroker(1_000_000.0), ManualClock(bars[0].time)
    strategy = SignalEveryBar()
    settings = Settings.load(environ={}, heartbeat_interval_seconds=7200.0, heartbeat_timeout_seconds=2.0,
                             stall_after_seconds=5 * 86_400.0)
    system = TradingSystem(
        settings, broker, strategy, store=store, clock=clock, loop_interval=None,
        market_feed=PaperFeed(broker, strategy, "X"), sinks=[journal_sink(store)],
    ).start()
    try:
        result = Replay(system, clock, batch=5).run(bars)  # two beats in the last batch
        stats = system.heartbeat.ask(GetHeartbeatStats(), timeout=10.0)
    finally:
        system.stop()
    assert result.complete and result.unsettled == 0

    beats = [e for e in store.events() if e.event_type is EventType.HEARTBEAT]
    # Deadlines at Friday 02:00 and 04:00; Friday 06:00's beat comes at the first bar after it,
    # Monday 00:00, which counts the 33 deadlines from Friday 08:00 to Monday 00:00 as skipped
    # (as the timer would); then Monday 02:00.
    expected = [friday[2], friday[4], monday[0], monday[2]]
    assert [b.timestamp for b in beats] == expected
    assert [b.metadata["beat"] for b in beats] == [1, 2, 3, 4]
    # The figures after that bar's cycle: one signal per bar played so far, each one filled.
    played = [3, 5, 7, 9]
    assert [b.metadata["signals_processed"] for b in beats] == played
    assert [b.metadata["trades_executed"] for b in beats] == played
    assert [b.metadata["positions_open"] for b in beats] == [1, 1, 1, 1]
    assert stats.beats == 4 and stats.missed == 33 and stats.stalls == 0
    assert stats.last_metrics.signals_processed == 9
    assert stats.last_metrics == Heartbeat.from_event(beats[-1]).metrics  # the last beat's, not its batch's first
    assert not [e for e in store.events() if e.event_type is EventType.STALL_DETECTED]
