"""tradewarden's pure core: everything that is true without threads.

Values are frozen attrs classes checked where they enter; the drawdown and guard math is plain,
synchronous Python; the ports (broker, store, alerts, metrics, clock, signals) are protocols with
synchronous adapters. Nothing here imports `actors`.

Layout: `drawdown` (peak and drawdown), `guards` (one class per rule), `monitor` (the guards'
bookkeeping and the latched trading state), `events`, `heartbeat`, `settings`, `clock`,
`broker` and `paper` (the port and the paper broker), `signals`, `store`, `alerts`, `metrics`,
`validation`; `testing` holds Hypothesis strategies for users' own property tests.
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

__all__ = [
    "Alert",
    "AlertSink",
    "ApprovalPolicy",
    "Assessment",
    "AutoApprove",
    "Broker",
    "BrokerError",
    "Clock",
    "DailyLossGuard",
    "DrawdownSnapshot",
    "DrawdownTracker",
    "Event",
    "EventType",
    "Fill",
    "Guard",
    "GuardRecord",
    "GuardState",
    "HeartbeatMetrics",
    "Level",
    "ListSignalSource",
    "LogAlerts",
    "LoopTotals",
    "ManualClock",
    "MaxDrawdownGuard",
    "MemoryMetrics",
    "MemoryStore",
    "MetricNames",
    "MetricsSink",
    "MinEquityGuard",
    "NullMetrics",
    "Order",
    "PaperBroker",
    "Position",
    "RiskMonitor",
    "Settings",
    "SettingsError",
    "Severity",
    "Side",
    "Signal",
    "SignalSource",
    "StateStore",
    "SystemClock",
    "TradingState",
    "Verdict",
    "enforce_max_drawdown",
    "max_drawdown",
    "min_equity_guard",
]
