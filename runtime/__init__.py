"""tradewarden's core: values, ports, settings, events, and the risk math. No thread, socket or file.

Layout (each folder says what its files may do):

- ``runtime`` itself: frozen values and the ports (``broker``, ``store``, ``alerts``, ``metrics``,
  ``signals``, ``clock``), ``errors``, ``events``, ``heartbeat``, ``settings``, ``validation``.
- ``runtime.risk``: the pure risk core: ``drawdown``, ``guards`` (one class per rule), ``monitor``
  (the latched trading state), ``gate`` (may this order go out?), ``liquidation``.
- ``runtime.adapters``: I/O behind the ports; they may block and start threads: ``paper``,
  ``system_clock``, ``sqlite``, ``statsd``, ``telegram``, ``logs``, ``mt5`` (Windows only) and
  its pure ``mt5_mapping``.
- ``runtime.replay``: data-time tooling: ``prices`` (bars, loaders, the synthetic series),
  ``strategies``, ``report``.
- ``runtime.testing``: Hypothesis strategies for users' own property tests.

``import runtime`` loads the core only. The adapter and replay names listed in ``__all__`` are
loaded on first use (``runtime.SqliteStore`` imports ``runtime.adapters.sqlite`` then), so the
core never pays for sqlite3, httpx or statsd. Nothing here imports ``actors``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from runtime.alerts import Alert, AlertSink, LogAlerts, Severity
from runtime.broker import Broker, BrokerError, Fill, Order, OrderRejected, Position, Side
from runtime.clock import Clock, ManualClock
from runtime.errors import TradewardenError
from runtime.events import Event, EventType
from runtime.heartbeat import HeartbeatMetrics
from runtime.metrics import MemoryMetrics, MetricNames, MetricsSink, NullMetrics
from runtime.risk.drawdown import DrawdownSnapshot, DrawdownTracker, max_drawdown
from runtime.risk.guards import (
    DailyLossGuard,
    Guard,
    GuardState,
    Level,
    MaxDrawdownGuard,
    MinEquityGuard,
    TradingState,
    Verdict,
    enforce_max_drawdown,
    min_equity_guard,
)
from runtime.risk.monitor import Assessment, GuardRecord, ResumeRefused, RiskMonitor
from runtime.settings import Settings, SettingsError
from runtime.signals import ApprovalPolicy, AutoApprove, ListSignalSource, Signal, SignalSource
from runtime.store import LoopTotals, MemoryStore, StateStore

if TYPE_CHECKING:
    from runtime.adapters.logs import configure_logging
    from runtime.adapters.paper import PaperBroker
    from runtime.adapters.sqlite import SqliteStore, StoreError
    from runtime.adapters.statsd import StatsdMetrics
    from runtime.adapters.system_clock import SystemClock
    from runtime.adapters.telegram import AlertDeliveryError, TelegramAlerts
    from runtime.replay.prices import SYNTHETIC_SYMBOL, SYNTHETIC_VOLUME, Bar, PriceDataError, load_bars, synthetic_bars
    from runtime.replay.report import GuardTrigger, RunSummary, format_summary, plot_report, write_equity_csv
    from runtime.replay.strategies import MovingAverageCrossover

_LAZY = {
    "AlertDeliveryError": "runtime.adapters.telegram",
    "Bar": "runtime.replay.prices",
    "GuardTrigger": "runtime.replay.report",
    "MovingAverageCrossover": "runtime.replay.strategies",
    "PaperBroker": "runtime.adapters.paper",
    "PriceDataError": "runtime.replay.prices",
    "RunSummary": "runtime.replay.report",
    "SYNTHETIC_SYMBOL": "runtime.replay.prices",
    "SYNTHETIC_VOLUME": "runtime.replay.prices",
    "SqliteStore": "runtime.adapters.sqlite",
    "StatsdMetrics": "runtime.adapters.statsd",
    "StoreError": "runtime.adapters.sqlite",
    "SystemClock": "runtime.adapters.system_clock",
    "TelegramAlerts": "runtime.adapters.telegram",
    "configure_logging": "runtime.adapters.logs",
    "format_summary": "runtime.replay.report",
    "load_bars": "runtime.replay.prices",
    "plot_report": "runtime.replay.report",
    "synthetic_bars": "runtime.replay.prices",
    "write_equity_csv": "runtime.replay.report",
}

__all__ = [
    "Alert",
    "AlertDeliveryError",
    "AlertSink",
    "ApprovalPolicy",
    "Assessment",
    "AutoApprove",
    "Bar",
    "Broker",
    "BrokerError",
    "Clock",
    "configure_logging",
    "DailyLossGuard",
    "DrawdownSnapshot",
    "DrawdownTracker",
    "enforce_max_drawdown",
    "Event",
    "EventType",
    "Fill",
    "format_summary",
    "Guard",
    "GuardRecord",
    "GuardState",
    "GuardTrigger",
    "HeartbeatMetrics",
    "Level",
    "ListSignalSource",
    "load_bars",
    "LogAlerts",
    "LoopTotals",
    "ManualClock",
    "max_drawdown",
    "MaxDrawdownGuard",
    "MemoryMetrics",
    "MemoryStore",
    "MetricNames",
    "MetricsSink",
    "min_equity_guard",
    "MinEquityGuard",
    "MovingAverageCrossover",
    "NullMetrics",
    "Order",
    "OrderRejected",
    "PaperBroker",
    "plot_report",
    "Position",
    "PriceDataError",
    "ResumeRefused",
    "RiskMonitor",
    "RunSummary",
    "Settings",
    "SettingsError",
    "Severity",
    "Side",
    "Signal",
    "SignalSource",
    "SqliteStore",
    "StateStore",
    "StatsdMetrics",
    "StoreError",
    "synthetic_bars",
    "SYNTHETIC_SYMBOL",
    "SYNTHETIC_VOLUME",
    "SystemClock",
    "TelegramAlerts",
    "TradewardenError",
    "TradingState",
    "Verdict",
    "write_equity_csv",
]


def __getattr__(name: str) -> Any:
    """Load an adapter or replay name on first use (PEP 562), so ``import runtime`` stays pure."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
