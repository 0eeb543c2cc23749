"""tradewarden's pure core: everything that is true without threads.

Values are frozen attrs classes checked where they enter; the drawdown and guard math is plain,
synchronous Python; the ports (broker, store, alerts, metrics, clock, signals) are protocols with
synchronous adapters. Nothing here imports `actors`.

Layout: `drawdown` (peak and drawdown), `guards` (one class per rule), `monitor` (the guards'
bookkeeping and the latched trading state), `events`, `heartbeat`, `settings`, `clock`,
`broker` and `paper` (the port and the paper broker), `signals`, `store`, `alerts`, `metrics`,
`validation`; the adapters `sqlite_store`, `statsd_metrics`, `telegram`, `logs` and
`brokers.mt5` (Windows only, imported on its own); `prices`, `strategies` and `report` for
replays; `testing` holds Hypothesis strategies for users' own property tests (it needs
Hypothesis, so it is imported on its own).
"""

from runtime.alerts import Alert, AlertSink, LogAlerts, Severity
from runtime.broker import Broker, BrokerError, Fill, Order, Position, Side
from runtime.clock import Clock, ManualClock, SystemClock
from runtime.drawdown import DrawdownSnapshot, DrawdownTracker, max_drawdown
from runtime.events import Event, EventType
from runtime.guards import (
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
from runtime.heartbeat import HeartbeatMetrics
from runtime.metrics import MemoryMetrics, MetricNames, MetricsSink, NullMetrics
from runtime.monitor import Assessment, GuardRecord, RiskMonitor
from runtime.paper import PaperBroker
from runtime.settings import Settings, SettingsError
from runtime.signals import ApprovalPolicy, AutoApprove, ListSignalSource, Signal, SignalSource
from runtime.store import LoopTotals, MemoryStore, StateStore
from runtime.logs import configure_logging
from runtime.prices import SYNTHETIC_SYMBOL, SYNTHETIC_VOLUME, Bar, PriceDataError, load_bars, synthetic_bars
from runtime.report import GuardTrigger, RunSummary, format_summary, plot_report, write_equity_csv
from runtime.sqlite_store import SqliteStore, StoreError
from runtime.statsd_metrics import StatsdMetrics
from runtime.strategies import MovingAverageCrossover
from runtime.telegram import AlertDeliveryError, TelegramAlerts

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
    "PaperBroker",
    "plot_report",
    "Position",
    "PriceDataError",
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
    "TradingState",
    "Verdict",
    "write_equity_csv",
]
