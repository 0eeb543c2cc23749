"""The metrics port as Prometheus metrics (prometheus_client), for a `/metrics` scrape beside statsd."""

from __future__ import annotations

import math
import re
import threading
from typing import TYPE_CHECKING, Any

from loguru import logger
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from runtime.events import EventType
from runtime.metrics import MetricNames

if TYPE_CHECKING:
    from runtime.settings import Settings

__all__ = ["PrometheusMetrics", "CONTENT_TYPE_LATEST"]

# Prometheus has no dotted names: statsd's ``analytics_events_total.trade_executed`` is the
# family ``analytics_events_total`` with the suffix as a label, named here per family.
_LABEL_OF = {MetricNames.ANALYTICS_EVENTS_TOTAL: "event_type", MetricNames.ORDER_REFUSED_TOTAL: "rule"}
_DEFAULT_LABEL = "key"
# Timings are in milliseconds, as in statsd: from a fast cycle to a slow liquidation.
_MS_BUCKETS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# What each of the runtime's figures means, for a scrape's HELP line (a name not here, such as a
# custom rule's counter, is described by its kind alone).
_HELP = {
    MetricNames.HEARTBEAT_TOTAL: "heartbeats beaten (one per loop interval while the loop answers)",
    MetricNames.DRAWDOWN_BLOCK_TOTAL: "times the drawdown limit halted trading",
    MetricNames.MIN_EQUITY_BLOCK_TOTAL: "times the minimum equity halted trading",
    MetricNames.DAILY_LOSS_BLOCK_TOTAL: "times the daily loss limit halted trading",
    MetricNames.ANALYTICS_EVENTS_TOTAL: "events published, by event type",
    MetricNames.ACTOR_RESTARTS_TOTAL: "actor restarts by the supervisor",
    MetricNames.BAD_READINGS_TOTAL: "equity readings refused as invalid (NaN, infinite, not a number)",
    MetricNames.BAD_CASH_FLOWS_TOTAL: "cash flows refused as invalid",
    MetricNames.SINK_ERRORS_TOTAL: "events an event sink or subscriber failed to take",
    MetricNames.STASH_OVERFLOW_TOTAL: "messages dropped because an actor's stash was full while it restarted",
    MetricNames.STORE_ERRORS_TOTAL: "state store operations that failed",
    MetricNames.ALERTS_DROPPED_TOTAL: "alerts never delivered: given up, dropped from a full retry queue, or pending at a stop",
    MetricNames.BROKER_SLOW_CALLS_TOTAL: "broker calls that took longer than their bound",
    MetricNames.EQUITY: "account equity at the guard's last reading",
    MetricNames.DRAWDOWN_PCT: "drawdown from the peak at the guard's last reading, in percent",
    MetricNames.POSITIONS_OPEN: "open positions",
    MetricNames.TRADING_STATE: "trading state: 0 active, 1 reducing, 2 halted",
    MetricNames.LOOP_DURATION_MS: "time of one trading loop cycle, in milliseconds",
    MetricNames.GUARD_REACTION_MS: "time from a breaching reading to every position closed, in milliseconds",
    MetricNames.CONTROL_AUTH_FAILURES_TOTAL: "control API requests refused for a missing or wrong token, or a foreign Origin or Host",
    MetricNames.TELEGRAM_FOREIGN_MESSAGES_TOTAL: "Telegram messages ignored because they came from another chat",
    MetricNames.ORDER_REFUSED_TOTAL: "orders the guard refused, by rule",
    MetricNames.HEALTHCHECK_PINGS_TOTAL: "health-check pings sent, by kind",
    MetricNames.HEALTHCHECK_PING_FAILURES_TOTAL: "health-check pings that failed",
}
# Counters a scrape shows at 0 from the start (each family's first label values with it): a
# counter that first appears at 1 has no increase() over the window in which it appeared, so the
# first halt after a restart would go unseen by an alert on it.
_FROM_ZERO: dict[str, tuple[str, ...]] = {
    MetricNames.DRAWDOWN_BLOCK_TOTAL: (),
    MetricNames.MIN_EQUITY_BLOCK_TOTAL: (),
    MetricNames.DAILY_LOSS_BLOCK_TOTAL: (),
    MetricNames.ACTOR_RESTARTS_TOTAL: (),
    MetricNames.BAD_READINGS_TOTAL: (),
    MetricNames.BAD_CASH_FLOWS_TOTAL: (),
    MetricNames.SINK_ERRORS_TOTAL: (),
    MetricNames.STASH_OVERFLOW_TOTAL: (),
    MetricNames.STORE_ERRORS_TOTAL: (),
    MetricNames.ALERTS_DROPPED_TOTAL: (),
    MetricNames.BROKER_SLOW_CALLS_TOTAL: (),
    MetricNames.CONTROL_AUTH_FAILURES_TOTAL: (),
    MetricNames.TELEGRAM_FOREIGN_MESSAGES_TOTAL: (),
    MetricNames.HEALTHCHECK_PING_FAILURES_TOTAL: (),
    MetricNames.ANALYTICS_EVENTS_TOTAL: tuple(event_type.value for event_type in EventType),
}


class PrometheusMetrics:
    """A `MetricsSink` that keeps every figure as a Prometheus metric in its own registry.

    Names are the statsd names with ``namespace + "_"`` in front (the statsd prefix with
    anything but letters, digits and ``_`` made ``_``): counters are Counters, gauges Gauges,
    timings Histograms in milliseconds. A dotted name ``family.suffix`` is the metric ``family``
    with the suffix as a label (``event_type`` for ``analytics_events_total``, ``rule`` for
    ``order_refused_total``, else ``key``).

    Promises: ``incr``, ``gauge`` and ``timing`` never block on I/O and never raise; a figure
    that cannot be kept (a non-finite value, a name Prometheus refuses, a name already used for
    another kind) is dropped and counted in `dropped`, the first drop logged once. `exposition`
    is the text a scrape gets. The runtime's counters of halts and errors, and its
    events by type, are there at 0 from the start, so that ``increase()`` sees their first rise.
    """

    def __init__(self, namespace: str | None = "tradewarden") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._namespace = re.sub(r"[^a-zA-Z0-9_]", "_", namespace) if namespace else ""
        self._lock = threading.Lock()
        self._metrics: dict[str, Any] = {}
        self._dropped = 0
        for family, labels in _FROM_ZERO.items():
            metric = self._metric("counter", family, labelled=bool(labels))
            for label in labels:
                metric.labels(label)

    @classmethod
    def from_settings(cls, settings: Settings) -> PrometheusMetrics:
        """A sink named like the statsd one: ``settings.statsd_prefix`` is the namespace."""
        return cls(settings.statsd_prefix)

    def incr(self, name: str, count: int = 1) -> None:
        """Add ``count`` to the counter ``name``."""
        self._record("counter", name, count)

    def gauge(self, name: str, value: float) -> None:
        """Set the gauge ``name`` to ``value``."""
        self._record("gauge", name, value)

    def timing(self, name: str, milliseconds: float) -> None:
        """Observe one duration of ``milliseconds`` in the histogram ``name``."""
        self._record("histogram", name, milliseconds)

    @property
    def dropped(self) -> int:
        """How many figures could not be kept since this sink was made."""
        with self._lock:
            return self._dropped

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (`CONTENT_TYPE_LATEST`)."""
        return generate_latest(self.registry)

    def _record(self, kind: str, name: str, value: float) -> None:
        try:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"{kind} {name!r} value must be finite, got {value!r}")
            family, _, suffix = name.partition(".")
            metric = self._metric(kind, family, labelled=bool(suffix))
            target = metric.labels(suffix) if suffix else metric
            if kind == "counter":
                target.inc(number)
            elif kind == "gauge":
                target.set(number)
            else:
                target.observe(number)
        except Exception as exc:
            self._drop(name, exc)

    def _metric(self, kind: str, family: str, *, labelled: bool) -> Any:
        if not _NAME.match(family):
            raise ValueError(f"metric name {family!r} is not a Prometheus name")
        with self._lock:
            known = self._metrics.get(family)
            if known is not None:
                if known[0] != kind:
                    raise ValueError(f"metric {family!r} is a {known[0]}, not a {kind}")
                return known[1]
            # A family reported with a suffix has its label; one reported without has none. The
            # first figure decides, and a later figure of the other shape is dropped.
            options: dict[str, Any] = {
                "namespace": self._namespace,
                "registry": self.registry,
                "labelnames": (_LABEL_OF.get(family, _DEFAULT_LABEL),) if labelled else (),
            }
            metric: Any
            if kind == "counter":
                metric = Counter(family, _HELP.get(family, f"{family} (counter)"), **options)
            elif kind == "gauge":
                metric = Gauge(family, _HELP.get(family, f"{family} (gauge)"), **options)
            else:
                help_text = _HELP.get(family, f"{family} (milliseconds)")
                metric = Histogram(family, help_text, buckets=_MS_BUCKETS, **options)
            self._metrics[family] = (kind, metric)
            return metric

    def _drop(self, name: str, exc: BaseException) -> None:
        with self._lock:
            self._dropped += 1
            first = self._dropped == 1
        if first:
            logger.bind(component="metrics").warning(
                "prometheus: figure {!r} dropped ({}: {}); further drops are only counted", name, type(exc).__name__, exc
            )

    def __repr__(self) -> str:
        return f"PrometheusMetrics(namespace={self._namespace!r})"
