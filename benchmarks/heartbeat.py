"""Heartbeat timing on the real clock while the loop is kept busy: jitter, drift, bursts."""

from __future__ import annotations

import bisect
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pykka

from actors import ChildContext, ChildSpec, EmitterActor, GuardActor, HeartbeatActor, LoopActor, Subscribers, Supervisor
from actors.emitter import journal_sink
from actors.heartbeat import GetHeartbeatStats
from actors.messages import GetMetrics, MarketData
from benchmarks.replay import FlipSignals
from benchmarks.stats import percentile
from runtime.adapters.paper import PaperBroker
from runtime.events import Event, EventType
from runtime.settings import Settings
from runtime.store import MemoryStore

__all__ = ["Schedule", "HeartbeatResult", "heartbeat_timing"]

_SYMBOL = "EURUSD"


@attrs.frozen
class Schedule:
    """Arrival times of beats against an ideal fixed-rate schedule ``origin + k * interval``."""

    origin: float
    interval: float
    arrivals: tuple[float, ...]

    @property
    def lateness(self) -> list[float]:
        """Each arrival minus the last ideal moment at or before it, in seconds."""
        return [(t - self.origin) % self.interval for t in self.arrivals]

    def jitter_ms(self, q: float) -> float:
        """The ``q``-th percentile of the lateness, in milliseconds."""
        return percentile(self.lateness, q) * 1000.0

    @property
    def drift_ms(self) -> float:
        """The last arrival's lateness, in milliseconds: a schedule that drifts grows it."""
        return self.lateness[-1] * 1000.0

    @property
    def bursts(self) -> int:
        """Pairs of consecutive arrivals closer than half the interval (catch-up bursts)."""
        return sum(1 for a, b in zip(self.arrivals, self.arrivals[1:]) if b - a < self.interval / 2)


@attrs.frozen
class HeartbeatResult:
    """What one heartbeat run saw: the beat events at a subscriber, the ticks at the heartbeat
    actor, a plain sleeping thread for reference, the timer's skipped ticks, loop cycles, and
    the two stages of a beat in seconds (tick to beat done: asking the busy loop and publishing;
    beat done to the subscriber: the emitter's and the subscriber worker's hops)."""

    events: Schedule
    ticks: Schedule
    sleeper: Schedule
    missed: int
    cycles: int
    asking: tuple[float, ...]
    delivering: tuple[float, ...]


class _ObservedHeartbeat(HeartbeatActor):
    # The real heartbeat, plus three records: when its timer started (the schedule's origin),
    # when each beat tick reached the actor, and when the beat was done (the loop answered and
    # HEARTBEAT was told to the emitter).
    def __init__(self, context: ChildContext, *, record: dict[str, Any], **options: Any) -> None:
        super().__init__(context, **options)
        self._record = record

    def prepare(self) -> None:
        self._record["origin"] = time.perf_counter()
        super().prepare()

    def on_tick(self, key: str) -> None:
        if key != "beat":
            super().on_tick(key)
            return
        self._record["ticks"].append(time.perf_counter())
        super().on_tick(key)
        self._record["done"].append(time.perf_counter())


def _drive(loop: Any, stop: threading.Event, batch: int, counter: list[int]) -> None:
    # Keeps the loop busy: `batch` bars told, then an ask, so its mailbox never holds more.
    at = datetime(2024, 1, 2, tzinfo=UTC)
    price = 100.0
    while not stop.is_set():
        for _ in range(batch):
            counter[0] += 1
            price = 100.0 + (counter[0] % 200) * 0.01
            loop.tell(MarketData(at + timedelta(seconds=counter[0]), price))
        loop.ask(GetMetrics())


def _sleeper(origin: float, interval: float, stop: threading.Event, arrivals: list[float]) -> None:
    # The reference: a plain thread sleeping to each deadline of the same fixed-rate schedule.
    k = 1
    while not stop.is_set():
        time.sleep(max(0.0, origin + k * interval - time.perf_counter()))
        arrivals.append(time.perf_counter())
        k += 1


def heartbeat_timing(beats: int, interval: float = 0.05, batch: int = 10) -> HeartbeatResult:
    """Run emitter, guard, loop and an observed heartbeat under one `Supervisor` on the real
    `SystemClock`, with the heartbeat beating every ``interval`` seconds, until a subscriber has
    seen ``beats`` HEARTBEAT events, while a driver thread keeps the loop busy with market data
    (``batch`` bars at a time) and a plain thread sleeps to the same schedule for reference."""
    broker = PaperBroker(1_000_000.0)
    broker.update_price(_SYMBOL, 100.0)
    store = MemoryStore()
    guards = Settings().guards()
    record: dict[str, Any] = {"ticks": [], "done": []}
    arrivals: list[float] = []
    enough = threading.Event()

    def on_event(event: Event) -> None:
        if event.event_type is EventType.HEARTBEAT:
            arrivals.append(time.perf_counter())
            if len(arrivals) >= beats:
                enough.set()

    def feed(data: MarketData) -> None:
        broker.update_price(_SYMBOL, data.bar)

    def emitter(ctx: ChildContext) -> pykka.ActorRef[Any]:
        return EmitterActor.start(ctx, sinks=[journal_sink(store)], subscribers=Subscribers([on_event]))

    def guard(ctx: ChildContext) -> pykka.ActorRef[Any]:
        return GuardActor.start(ctx, guards=guards, broker=broker, store=store)

    def loop(ctx: ChildContext) -> pykka.ActorRef[Any]:
        return LoopActor.start(ctx, broker=broker, signals=FlipSignals(), store=store, interval=None, market_feed=feed)

    def heartbeat(ctx: ChildContext) -> pykka.ActorRef[Any]:
        return _ObservedHeartbeat.start(
            ctx, record=record, provider=ctx.address("loop"), interval=interval, timeout=interval / 2, stall_after=60.0
        )

    specs = [ChildSpec(name, start) for name, start in (("emitter", emitter), ("guard", guard), ("loop", loop))]
    specs.append(ChildSpec("heartbeat", heartbeat))
    handle = Supervisor.launch(specs, name="bench-heartbeat")
    stop = threading.Event()
    cycles = [0]
    sleeps: list[float] = []
    threads = [
        threading.Thread(target=_drive, args=(handle.address("loop"), stop, batch, cycles), daemon=True),
        threading.Thread(target=_sleeper, args=(record["origin"], interval, stop, sleeps), daemon=True),
    ]
    try:
        for thread in threads:
            thread.start()
        if not enough.wait(beats * interval * 4 + 10.0):
            raise AssertionError(f"only {len(arrivals)} of {beats} heartbeats arrived")
        stats = handle.address("heartbeat").ask(GetHeartbeatStats())
    finally:
        stop.set()
        for thread in threads:
            thread.join(5.0)
        handle.stop()
    origin = record["origin"]
    done = record["done"]
    delivering = []
    for arrival in arrivals[:beats]:
        index = bisect.bisect_right(done, arrival)
        if index:
            delivering.append(arrival - done[index - 1])
    return HeartbeatResult(
        events=Schedule(origin, interval, tuple(arrivals[:beats])),
        ticks=Schedule(origin, interval, tuple(record["ticks"][:beats])),
        sleeper=Schedule(origin, interval, tuple(sleeps[:beats])),
        missed=stats.missed,
        cycles=cycles[0],
        asking=tuple(end - start for start, end in zip(record["ticks"][:beats], done)),
        delivering=tuple(delivering),
    )
