"""Full replay: bars per second through loop, guard and emitter, journaled, with statsd on."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs

from actors.emitter import journal_sink
from actors.messages import GetGuardState, GetJournals, GetMetrics, MarketData, Ping, Publish
from benchmarks.system import running_system
from runtime.adapters.paper import PaperBroker
from runtime.adapters.sqlite import SqliteStore
from runtime.adapters.statsd import StatsdMetrics
from runtime.clock import ManualClock
from runtime.events import Event, EventType
from runtime.metrics import MetricsSink
from runtime.settings import Settings
from runtime.signals import Signal
from runtime.store import StateStore

__all__ = ["ReplayResult", "FlipSignals", "UdpCounter", "replay_throughput", "journal_store", "statsd_sink"]

_SYMBOL = "EURUSD"
_START = datetime(2024, 1, 2, tzinfo=UTC)
_END_MARK = "benchmark-end"

_RECEIVER = """
import socket
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
sock.bind(("127.0.0.1", 0))
sock.settimeout(600.0)  # never outlives a benchmark that died without saying stop
print(sock.getsockname()[1], flush=True)
count = 0
try:
    while sock.recv(65536) != b"stop":
        count += 1
except TimeoutError:
    pass
print(count, flush=True)
"""


@attrs.frozen
class ReplayResult:
    """Bars per second, which store and metrics sink were used, and what reached each."""

    bars_per_second: float
    store: str
    metrics: str
    events_journaled: int
    datagrams_received: int


class FlipSignals:
    """A simple signal source: on every ``every``-th poll a 1-lot order, alternately buy and
    sell, so the replay opens and closes a position in turn."""

    def __init__(self, every: int = 10) -> None:
        self._every = every
        self._polls = 0

    def poll(self, now: datetime) -> Sequence[Signal]:
        """A signal on every ``every``-th poll, none otherwise."""
        self._polls += 1
        if self._polls % self._every:
            return ()
        side = "buy" if (self._polls // self._every) % 2 else "sell"
        return (Signal(_SYMBOL, side, 1.0, now, "flip", f"flip-{self._polls}"),)


class UdpCounter:
    """A statsd stand-in: a separate process that binds a UDP port on 127.0.0.1 and only counts
    the datagrams it receives (in its own process, so it takes no time from the one measured)."""

    def __init__(self) -> None:
        self._process = subprocess.Popen([sys.executable, "-c", _RECEIVER], stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())

    def finish(self) -> int:
        """Stop the receiver and return how many datagrams it received."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"stop", ("127.0.0.1", self.port))
        out, _ = self._process.communicate(timeout=30)
        return int(out.strip())


@contextmanager
def journal_store() -> Iterator[tuple[StateStore, str]]:
    """A `SqliteStore` with its defaults (WAL, ``synchronous=FULL``) in a temporary directory.
    Yields (store, a description for the table)."""
    with tempfile.TemporaryDirectory(prefix="tradewarden-bench-") as directory:
        store = SqliteStore(Path(directory) / "state.db")
        try:
            yield store, "SqliteStore"
        finally:
            store.close()


def statsd_sink(port: int) -> tuple[MetricsSink, str]:
    """The runtime's statsd sink for 127.0.0.1:``port``, made from settings as a trading system
    makes it (figures summed and sent packed every ``statsd_flush_seconds``). Returns (sink,
    description)."""
    settings = Settings(statsd_host="127.0.0.1", statsd_port=port)
    return StatsdMetrics.from_settings(settings), f"StatsdMetrics, flushed every {settings.statsd_flush_seconds} s"


def _bars(count: int) -> list[MarketData]:
    rng = random.Random(7)
    price = 100.0
    bars = []
    for index in range(count):
        price = max(1.0, price * (1.0 + rng.gauss(0.0, 0.0005)))
        bars.append(MarketData(_START + timedelta(minutes=index), price))
    return bars


def replay_throughput(bars: int, *, store: StateStore, store_name: str, chunk: int = 500) -> ReplayResult:
    """Bars per second replayed through a whole `TradingSystem` on a `ManualClock`.

    For each one-minute bar the driver sets the clock to the bar's time and tells the loop
    `MarketData`; the loop's market feed moves the paper broker's price, its cycle polls
    `FlipSignals` (a trade every 10 bars), sends the equity to the guard, and publishes; the
    emitter journals every event into ``store``; every figure goes to statsd over UDP. The
    heartbeat beats in data time (every bar crosses its 10 s interval), so it also asks the loop
    for its figures and publishes once per bar. Every ``chunk`` bars the driver asks the loop and
    then the heartbeat for an answer (flow control: no mailbox grows without bound, and the
    heartbeat's backlog never outlasts the supervisor's liveness probe). The stopwatch stops when
    the journal has taken a marker event published after the loop, the heartbeat and then the
    guard answered for the last bar (the journal writes in group commits, as in a system).
    """
    messages = _bars(bars)
    broker = PaperBroker(10_000.0)
    broker.update_price(_SYMBOL, messages[0].bar)
    clock = ManualClock(_START)
    journal = journal_sink(store)

    def feed(data: MarketData) -> None:
        broker.update_price(_SYMBOL, data.bar, data.at)

    receiver = UdpCounter()
    metrics, metrics_name = statsd_sink(receiver.port)
    settings = Settings(stall_after_seconds=86_400.0)
    try:
        with running_system(
            broker,
            settings=settings,
            signals=FlipSignals(),
            store=store,
            sinks=[journal],
            clock=clock,
            market_feed=feed,
            metrics=metrics,
        ) as system:
            loop, guard = system.loop, system.guard
            loop.ask(GetMetrics())
            started = time.perf_counter()
            for index, message in enumerate(messages, 1):
                clock.set(message.at)
                loop.tell(message)
                if index % chunk == 0:
                    loop.ask(GetMetrics())
                    system.heartbeat.ask(Ping())
            loop.ask(GetMetrics())
            system.heartbeat.ask(Ping())
            guard.ask(GetGuardState())
            system.emitter.tell(Publish(Event(EventType.HEARTBEAT, settings.loop_id, {"mark": _END_MARK}, clock.now())))
            system.emitter.ask(GetJournals())  # the marker has reached the journal's worker
            if not journal.wait_backlog(0, 120.0):
                raise AssertionError("the journal never took the end marker")
            elapsed = time.perf_counter() - started
            events = len(store.events())
    finally:
        close = getattr(metrics, "close", None)
        if close is not None:
            close()
        datagrams = receiver.finish()
    return ReplayResult(bars / elapsed, store_name, metrics_name, events, datagrams)
