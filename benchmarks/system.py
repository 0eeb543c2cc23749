"""Starting the real actors for a benchmark: a trading system on a paper broker, quiet alerts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from actors import TradingSystem, start_trading_system
from actors.emitter import journal_sink
from runtime.adapters.paper import PaperBroker
from runtime.alerts import Alert
from runtime.settings import Settings
from runtime.signals import ListSignalSource
from runtime.store import MemoryStore

__all__ = ["DiscardAlerts", "running_system"]


class DiscardAlerts:
    """An alert sink that drops every alert: the benchmarks time the guard, not a network call."""

    def send(self, alert: Alert) -> None:
        """Drop ``alert``."""


@contextmanager
def running_system(broker: PaperBroker, **options: Any) -> Iterator[TradingSystem]:
    """A started `TradingSystem` on ``broker`` (stopped on exit) with what the benchmarks need
    by default: no loop timer, no signals, an in-memory store journaled by the emitter, alerts
    discarded. ``options`` override any of these (and the settings)."""
    store = options.pop("store", None)
    if store is None:
        store = MemoryStore()
    options.setdefault("sinks", [journal_sink(store)])
    options.setdefault("loop_interval", None)
    options.setdefault("alerts", DiscardAlerts())
    settings = options.pop("settings", None) or Settings()
    signals = options.pop("signals", None) or ListSignalSource()
    system = start_trading_system(settings, broker, signals, store=store, **options)
    try:
        yield system
    finally:
        system.stop()
