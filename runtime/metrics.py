"""The metrics port (counters, gauges, timings) and the metric names the runtime reports."""

from __future__ import annotations

import threading
from typing import Protocol

from loguru import logger

__all__ = ["MetricsSink", "NullMetrics", "MemoryMetrics", "FanOutMetrics", "MetricNames", "contained"]


class MetricNames:
    """Every metric the runtime reports (the old system's names, kept)."""

    HEARTBEAT_TOTAL = "heartbeat_total"
    DRAWDOWN_BLOCK_TOTAL = "drawdown_block_total"
    MIN_EQUITY_BLOCK_TOTAL = "min_equity_block_total"
    DAILY_LOSS_BLOCK_TOTAL = "daily_loss_block_total"
    ANALYTICS_EVENTS_TOTAL = "analytics_events_total"
    ACTOR_RESTARTS_TOTAL = "actor_restarts_total"
    BAD_READINGS_TOTAL = "bad_readings_total"
    BAD_CASH_FLOWS_TOTAL = "bad_cash_flows_total"
    SINK_ERRORS_TOTAL = "sink_errors_total"
    STASH_OVERFLOW_TOTAL = "stash_overflow_total"
    STORE_ERRORS_TOTAL = "store_errors_total"
    ALERTS_DROPPED_TOTAL = "alerts_dropped_total"
    BROKER_SLOW_CALLS_TOTAL = "broker_slow_calls_total"
    EQUITY = "equity"
    DRAWDOWN_PCT = "drawdown_pct"
    POSITIONS_OPEN = "positions_open"
    TRADING_STATE = "trading_state"
    LOOP_DURATION_MS = "loop_duration_ms"
    GUARD_REACTION_MS = "guard_reaction_ms"
    CONTROL_AUTH_FAILURES_TOTAL = "control_auth_failures_total"
    TELEGRAM_FOREIGN_MESSAGES_TOTAL = "telegram_foreign_messages_total"
    ORDER_REFUSED_TOTAL = "order_refused_total"
    HEALTHCHECK_PINGS_TOTAL = "healthcheck_pings_total"
    HEALTHCHECK_PING_FAILURES_TOTAL = "healthcheck_ping_failures_total"


class MetricsSink(Protocol):
    """Where figures go. Implementations must not block and must not raise."""

    def incr(self, name: str, count: int = 1) -> None:
        """Add ``count`` to a counter."""
        ...

    def gauge(self, name: str, value: float) -> None:
        """Set a gauge to ``value``."""
        ...

    def timing(self, name: str, milliseconds: float) -> None:
        """Record one duration in milliseconds."""
        ...


class NullMetrics:
    """Discards every figure: the default when no metrics daemon is configured."""

    def incr(self, name: str, count: int = 1) -> None:
        """Do nothing."""

    def gauge(self, name: str, value: float) -> None:
        """Do nothing."""

    def timing(self, name: str, milliseconds: float) -> None:
        """Do nothing."""


class MemoryMetrics:
    """Keeps every figure in memory, for a run's summary and for tests; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {}
        self.gauges: dict[str, float] = {}
        self.timings: dict[str, list[float]] = {}

    def incr(self, name: str, count: int = 1) -> None:
        """Add ``count`` to the counter ``name``."""
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + count

    def gauge(self, name: str, value: float) -> None:
        """Set the gauge ``name``."""
        with self._lock:
            self.gauges[name] = value

    def timing(self, name: str, milliseconds: float) -> None:
        """Append one duration to ``name``."""
        with self._lock:
            self.timings.setdefault(name, []).append(milliseconds)


class FanOutMetrics:
    """Sends every figure to each of ``sinks`` in turn (statsd and Prometheus both, say).

    Promises what each sink promises: a sink that raises anyway is skipped for that figure and
    the others still get it, so one broken sink never silences the rest.
    """

    def __init__(self, *sinks: MetricsSink) -> None:
        self.sinks = sinks
        self._broken: set[int] = set()

    def incr(self, name: str, count: int = 1) -> None:
        """Add ``count`` to the counter ``name`` in every sink."""
        self._each("incr", name, count)

    def gauge(self, name: str, value: float) -> None:
        """Set the gauge ``name`` in every sink."""
        self._each("gauge", name, value)

    def timing(self, name: str, milliseconds: float) -> None:
        """Record one duration under ``name`` in every sink."""
        self._each("timing", name, milliseconds)

    def _each(self, method: str, name: str, value: float) -> None:
        for sink in self.sinks:
            try:
                getattr(sink, method)(name, value)
            except Exception as exc:
                # The port says a sink never raises; one that does must not silence the others.
                self._failed(sink, exc)

    def _failed(self, sink: MetricsSink, exc: Exception) -> None:
        # Said once per sink (a broken sink fails every figure): then its figures go quietly.
        if id(sink) in self._broken:
            return
        self._broken.add(id(sink))
        logger.bind(component="metrics").error("metrics sink {!r} raised {!r}: its figures are dropped from now on "
                                                "when they fail", sink, exc)

    def close(self) -> None:
        """Close every sink that can be closed."""
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                close()

    def __repr__(self) -> str:
        return f"FanOutMetrics({', '.join(map(repr, self.sinks))})"


def contained(metrics: MetricsSink) -> MetricsSink:
    """``metrics`` as the actors may call it: itself when it is one of this module's sinks, else
    behind a `FanOutMetrics`, so that a sink that raises anyway (which the port forbids) loses
    its figures, said once in the log, and never fails the guard: a metrics outage must not halt
    trading."""
    if isinstance(metrics, (NullMetrics, MemoryMetrics, FanOutMetrics)):
        return metrics
    return FanOutMetrics(metrics)
