"""The Prometheus sink keeps the statsd names, never raises, and the fan-out feeds every sink."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from runtime.adapters.prometheus import PrometheusMetrics
from runtime.events import EventType
from runtime.metrics import FanOutMetrics, MemoryMetrics


def samples(sink: PrometheusMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(sink.exposition().decode())
        for sample in family.samples
    }


def test_counters_gauges_and_timings_keep_the_statsd_names_under_the_namespace():
    sink = PrometheusMetrics("tradewarden")
    sink.incr("heartbeat_total")
    sink.incr("heartbeat_total", 2)
    sink.gauge("equity", 9_500.5)
    sink.timing("loop_duration_ms", 3.0)
    scraped = samples(sink)
    assert scraped[("tradewarden_heartbeat_total", ())] == 3
    assert scraped[("tradewarden_equity", ())] == 9_500.5
    assert scraped[("tradewarden_loop_duration_ms_count", ())] == 1
    assert scraped[("tradewarden_loop_duration_ms_sum", ())] == 3.0


def test_a_dotted_name_is_the_family_with_its_suffix_as_a_label():
    sink = PrometheusMetrics()
    sink.incr("analytics_events_total.trade_executed", 2)
    sink.incr("analytics_events_total.heartbeat")
    scraped = samples(sink)
    assert scraped[("tradewarden_analytics_events_total", (("event_type", "trade_executed"),))] == 2
    assert scraped[("tradewarden_analytics_events_total", (("event_type", "heartbeat"),))] == 1


def test_a_fresh_sink_shows_the_halts_errors_and_events_at_zero_with_what_each_counts():
    # An alert on increase(tradewarden_drawdown_block_total[5m]) must see the first halt after a
    # restart: a counter that first appears at 1 has no increase in the window it appeared in.
    families = {family.name: family for family in text_string_to_metric_families(PrometheusMetrics().exposition().decode())}
    zero = {
        "drawdown_block": "times the drawdown limit halted trading",
        "min_equity_block": "times the minimum equity halted trading",
        "daily_loss_block": "times the daily loss limit halted trading",
        "actor_restarts": "actor restarts by the supervisor",
        "bad_readings": "equity readings refused as invalid (NaN, infinite, not a number)",
        "bad_cash_flows": "cash flows refused as invalid",
        "sink_errors": "events an event sink or subscriber failed to take",
        "stash_overflow": "messages dropped because an actor's stash was full while it restarted",
        "store_errors": "state store operations that failed",
        "alerts_dropped": "alerts never delivered: given up, dropped from a full retry queue, or pending at a stop",
        "broker_slow_calls": "broker calls that took longer than their bound",
        "control_auth_failures": "control API requests refused for a missing or wrong token, or a foreign Origin or Host",
        "telegram_foreign_messages": "Telegram messages ignored because they came from another chat",
        "healthcheck_ping_failures": "health-check pings that failed",
    }
    for name, help_text in zero.items():
        family = families[f"tradewarden_{name}"]
        assert (family.type, family.documentation) == ("counter", help_text)
        assert [(s.name, s.labels, s.value) for s in family.samples if s.name.endswith("_total")] == [
            (f"tradewarden_{name}_total", {}, 0.0)
        ]
    events = families["tradewarden_analytics_events"]
    assert events.documentation == "events published, by event type"
    assert sorted((s.labels["event_type"], s.value) for s in events.samples if s.name.endswith("_total")) == sorted(
        (event_type.value, 0.0) for event_type in EventType
    )
    kept = {name for name in families if not name.endswith("_created")}  # (each counter's creation time)
    assert kept == {f"tradewarden_{name}" for name in zero} | {"tradewarden_analytics_events"}


def test_the_statsd_prefix_becomes_a_valid_namespace():
    sink = PrometheusMetrics("bot.one")
    sink.gauge("equity", 1.0)
    assert samples(sink)[("bot_one_equity", ())] == 1.0


def test_a_figure_that_cannot_be_kept_is_dropped_and_counted_never_raised():
    sink = PrometheusMetrics()
    sink.incr("heartbeat_total")
    sink.gauge("heartbeat_total", 1.0)  # another kind under a used name
    sink.gauge("equity", math.nan)
    sink.gauge("no-dashes", 1.0)
    assert sink.dropped == 3
    assert samples(sink)[("tradewarden_heartbeat_total", ())] == 1


class _Broken:
    def incr(self, name, count=1):
        raise RuntimeError("broken")

    gauge = timing = incr


def test_the_fan_out_sends_every_figure_to_every_sink_even_past_a_broken_one():
    first, second = MemoryMetrics(), MemoryMetrics()
    fan = FanOutMetrics(first, _Broken(), second)
    fan.incr("heartbeat_total", 2)
    fan.gauge("equity", 5.0)
    fan.timing("loop_duration_ms", 1.5)
    for sink in (first, second):
        assert sink.counters == {"heartbeat_total": 2}
        assert sink.gauges == {"equity": 5.0}
        assert sink.timings == {"loop_duration_ms": [1.5]}
