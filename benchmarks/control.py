"""The control API's `/api/status` over real HTTP: idle, and while the guard is busy."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import httpx

from actors.messages import EquityBatch, EquityReading, GetGuardState
from actors.service.auth import BearerToken
from actors.service.control import control_app
from actors.service.hub import EventHub
from actors.service.journal import JournalReader
from actors.service.server import ControlServer, bind
from actors.system import TradingSystem
from benchmarks.baselines import Latency
from runtime.adapters.paper import PaperBroker
from runtime.adapters.prometheus import PrometheusMetrics
from runtime.adapters.sqlite import SqliteStore
from runtime.broker import Fill, Order, Position
from runtime.events import Event, EventType
from runtime.metrics import NullMetrics
from runtime.settings import Settings
from runtime.signals import ListSignalSource

__all__ = ["StatusFigures", "status_latencies"]

_TOKEN = "benchmark-token"
BATCH = 100_000
"""Readings per EquityBatch the busy guard works through (about 50 ms each)."""
_QUEUED = 20
"""Batches kept queued at the guard: about a second of work, so a status ask waits that long."""
CLOSE_SECONDS = 0.02
"""How long the slow broker takes to close one position."""


@attrs.frozen
class StatusFigures:
    """`/api/status` latencies idle, while the guard works through EquityBatches, and while it
    liquidates against a slow broker; how many busy answers named the guard stale."""

    idle: Latency
    batches: Latency
    batches_stale: int
    liquidation: Latency
    liquidation_stale: int
    liquidation_seconds: float


class _SlowCloseBroker:
    # A paper account whose trade server takes CLOSE_SECONDS to close each position.

    def __init__(self, inner: PaperBroker) -> None:
        self.inner = inner

    def account_equity(self) -> float:
        return self.inner.account_equity()

    def open_positions(self) -> list[Position]:
        return self.inner.open_positions()

    def submit_order(self, order: Order) -> Fill:
        return self.inner.submit_order(order)

    def find_fill(self, client_id: str) -> Fill | None:
        return self.inner.find_fill(client_id)

    def close_position(self, position_id: str, client_id: str | None = None) -> Fill:
        time.sleep(CLOSE_SECONDS)
        return self.inner.close_position(position_id, client_id)


class _Closed:
    # Counts POSITION_CLOSED events; the liquidation is over when all have come.
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.done = threading.Event()

    def __call__(self, event: Event) -> None:
        if event.event_type is EventType.POSITION_CLOSED:
            self.count += 1
            if self.count >= self.expected:
                self.done.set()


@contextmanager
def _serving(positions: int) -> Iterator[tuple[TradingSystem, httpx.Client, _Closed]]:
    inner = PaperBroker(10_000_000.0)
    for n in range(positions):
        inner.update_price(f"S{n}", 100.0)
        inner.submit_order(Order(f"S{n}", "buy", 1.0))
    hub, closed = EventHub(), _Closed(positions)
    # A long broker-call bound: the slow broker is slow by design, not faulty.
    settings = Settings(loop_id="bench", max_drawdown_percent=10.0, min_equity=1.0, broker_call_bound_seconds=60.0)
    folder = tempfile.TemporaryDirectory(prefix="tradewarden-bench-control-")
    db = str(Path(folder.name) / "state.db")
    system = TradingSystem(settings, _SlowCloseBroker(inner), ListSignalSource(), store=SqliteStore(db),
                           metrics=NullMetrics(), subscribers=[hub, closed], loop_interval=None)
    sock = bind("127.0.0.1", 0, token=_TOKEN)
    system.start()
    server: ControlServer | None = None
    try:
        app = control_app(system, hub, JournalReader(db), PrometheusMetrics(), NullMetrics(), BearerToken(_TOKEN))
        server = ControlServer(app, sock).start()
        host, port = server.address
        with httpx.Client(base_url=f"http://{host}:{port}", headers={"authorization": f"Bearer {_TOKEN}"},
                          timeout=30.0) as client:
            yield system, client, closed
    finally:
        if server is not None:
            server.stop()
        system.stop()
        folder.cleanup()


def _timed(client: httpx.Client) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    answer = client.get("/api/status")
    elapsed = time.perf_counter() - started
    if answer.status_code != 200:
        raise AssertionError(f"/api/status answered {answer.status_code}: {answer.text}")
    body: dict[str, Any] = answer.json()
    return elapsed, body


def status_latencies(requests: int, positions: int) -> StatusFigures:
    """Time ``requests`` `/api/status` calls on an idle system, then ``requests`` while a feeder
    keeps `_QUEUED` EquityBatches of `BATCH` readings queued at the guard; then liquidate
    ``positions`` positions against a broker taking `CLOSE_SECONDS` per close, timing status
    calls until the last POSITION_CLOSED. Every answer must be a 200."""
    with _serving(positions) as (system, client, closed):
        _timed(client)  # connect, and give the status reader its first answers
        idle = [_timed(client)[0] for _ in range(requests)]

        stop = threading.Event()
        readings = EquityBatch([10_000_000.0] * BATCH, datetime.now(UTC))

        def feed() -> None:
            # Keep the guard's inbox about _QUEUED batches deep: top it up, then wait for the
            # oldest half to be worked through.
            while not stop.is_set():
                for _ in range(_QUEUED // 2):
                    system.guard.tell(readings)
                system.guard.ask(GetGuardState(), timeout=60.0)

        feeder = threading.Thread(target=feed, name="bench-feeder", daemon=True)
        for _ in range(_QUEUED // 2):
            system.guard.tell(readings)
        feeder.start()
        busy, busy_stale = [], 0
        for _ in range(requests):
            elapsed, body = _timed(client)
            busy.append(elapsed)
            busy_stale += "guard" in body["stale"]
        stop.set()
        feeder.join(60.0)
        system.guard.ask(GetGuardState(), timeout=60.0)

        started = time.perf_counter()
        system.guard.tell(EquityReading(8_000_000.0, datetime.now(UTC)))  # 20% down: past the 10% limit
        during, during_stale = [], 0
        while not closed.done.is_set():
            elapsed, body = _timed(client)
            during.append(elapsed)
            during_stale += "guard" in body["stale"]
        liquidation = time.perf_counter() - started
        if not during:
            raise AssertionError("the liquidation ended before a status request was made")
    return StatusFigures(Latency(tuple(idle)), Latency(tuple(busy)), busy_stale, Latency(tuple(during)), during_stale,
                         liquidation)
