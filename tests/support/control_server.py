"""A trading system with its control server in this process, on a free loopback port, for tests
that need the server's own knobs (timeouts, limits) or a broker of their own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from actors import TradingSystem
from actors.service.auth import BearerToken
from actors.service.control import control_app
from actors.service.hub import EventHub
from actors.service.journal import JournalReader
from actors.service.server import ControlServer, bind
from runtime import Order, PaperBroker, Position
from runtime.adapters.prometheus import PrometheusMetrics
from runtime.metrics import MemoryMetrics

__all__ = ["TOKEN", "Served", "SlowCloseBroker", "SlowListBroker", "paper_with_positions", "served"]

TOKEN = "control-test-token-0123456789"


def paper_with_positions(count: int, cash: float = 100_000.0) -> PaperBroker:
    """A paper account holding ``count`` positions of 10 at 100, one symbol each."""
    broker = PaperBroker(cash)
    for n in range(count):
        broker.update_price(f"S{n}", 100.0)
        broker.submit_order(Order(f"S{n}", "buy", 10))
    return broker


class SlowCloseBroker:
    """A paper broker whose trade server is slow to close: each close waits for ``release`` (a
    liquidation against a broker that answers late); ``closing`` is set when one is waiting."""

    def __init__(self, inner: PaperBroker) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.closing = threading.Event()

    def account_equity(self) -> float:
        return self.inner.account_equity()

    def open_positions(self) -> list[Position]:
        return self.inner.open_positions()

    def submit_order(self, order: Order) -> Any:
        return self.inner.submit_order(order)

    def find_fill(self, client_id: str) -> Any:
        return self.inner.find_fill(client_id)

    def close_position(self, position_id: str, client_id: str | None = None) -> Any:
        self.closing.set()
        self.release.wait(30)
        return self.inner.close_position(position_id, client_id)


class SlowListBroker(SlowCloseBroker):
    """A `SlowCloseBroker` that also hangs listing positions for a status while ``slow`` is set,
    until ``unblock`` (a trade server that stops answering one kind of request); the guard's own
    lists answer at once."""

    def __init__(self, inner: PaperBroker) -> None:
        super().__init__(inner)
        self.slow, self.unblock = threading.Event(), threading.Event()

    def open_positions(self) -> list[Position]:
        # The status reads on threads of its own, named so; the guard's reads are not held.
        if self.slow.is_set() and threading.current_thread().name.startswith("tradewarden-status"):
            self.unblock.wait(30)
        return self.inner.open_positions()


@dataclass
class Served:
    system: TradingSystem
    hub: EventHub
    server: ControlServer
    metrics: MemoryMetrics

    @property
    def url(self) -> str:
        host, port = self.server.address
        return f"http://{host}:{port}"

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address


@contextmanager
def served(system: TradingSystem, hub: EventHub, db: str, *, request_timeout: float = 10.0,
           token: str | None = TOKEN, **app_options: Any) -> Iterator[Served]:
    """Start ``system`` (built with ``hub`` among its subscribers and a SqliteStore at ``db``) and
    its control server (with ``token``; None, as `tradewarden run` without one); stop both on the way out."""
    metrics = MemoryMetrics()
    sock = bind("127.0.0.1", 0, token=token)
    system.start()
    try:
        app = control_app(system, hub, JournalReader(db), PrometheusMetrics(), metrics,
                          BearerToken(token) if token else None, **app_options)
        server = ControlServer(app, sock, request_timeout=request_timeout).start()
        try:
            yield Served(system, hub, server, metrics)
        finally:
            server.stop()
    finally:
        system.stop()
