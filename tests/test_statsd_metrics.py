"""StatsdMetrics against Etsy's real statsd daemon: figures arrive prefixed, failures never raise."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
from support.statsd_daemon import (
    INSTALL_COMMAND,
    StatsdDaemon,
    StatsdDaemonError,
    parse_inspect,
)

from runtime import MetricNames, NullMetrics, Settings
from runtime.adapters.statsd import StatsdMetrics


def _prefix() -> str:
    # A fresh prefix per test keeps tests independent while sharing one daemon per module.
    return f"tw{uuid.uuid4().hex[:10]}"


def test_counters_arrive_with_the_prefix(statsd_daemon: StatsdDaemon) -> None:
    prefix = _prefix()
    metrics = StatsdMetrics(statsd_daemon.host, statsd_daemon.port, prefix)
    for _ in range(3):
        metrics.incr(MetricNames.HEARTBEAT_TOTAL)
    metrics.incr(MetricNames.DRAWDOWN_BLOCK_TOTAL, 5)

    name = f"{prefix}.{MetricNames.HEARTBEAT_TOTAL}"
    blocks = f"{prefix}.{MetricNames.DRAWDOWN_BLOCK_TOTAL}"
    counters = statsd_daemon.wait_for(statsd_daemon.counters, lambda c: c.get(name) == 3 and c.get(blocks) == 5)
    assert counters[name] == 3
    assert metrics.dropped == 0


def test_dotted_event_counter_names_pass_through(statsd_daemon: StatsdDaemon) -> None:
    prefix = _prefix()
    metrics = StatsdMetrics(statsd_daemon.host, statsd_daemon.port, prefix)
    metrics.incr(f"{MetricNames.ANALYTICS_EVENTS_TOTAL}.trade_executed")
    metrics.incr(f"{MetricNames.ANALYTICS_EVENTS_TOTAL}.trade_executed")
    metrics.incr(f"{MetricNames.ANALYTICS_EVENTS_TOTAL}.heartbeat")

    traded = f"{prefix}.analytics_events_total.trade_executed"
    beats = f"{prefix}.analytics_events_total.heartbeat"
    counters = statsd_daemon.wait_for(statsd_daemon.counters, lambda c: traded in c and beats in c)
    assert (counters[traded], counters[beats]) == (2, 1)


def test_gauges_keep_the_last_value_including_negative_and_fractional(statsd_daemon: StatsdDaemon) -> None:
    prefix = _prefix()
    metrics = StatsdMetrics(statsd_daemon.host, statsd_daemon.port, prefix)
    metrics.gauge(MetricNames.EQUITY, 10_000.0)
    metrics.gauge(MetricNames.EQUITY, 9_876.25)
    metrics.gauge(MetricNames.DRAWDOWN_PCT, -1.5)  # statsd needs a reset to 0 before a negative
    metrics.gauge(MetricNames.TRADING_STATE, 2)

    equity = f"{prefix}.{MetricNames.EQUITY}"
    drawdown = f"{prefix}.{MetricNames.DRAWDOWN_PCT}"
    state = f"{prefix}.{MetricNames.TRADING_STATE}"
    gauges = statsd_daemon.wait_for(
        statsd_daemon.gauges,
        lambda g: g.get(equity) == 9_876.25 and g.get(drawdown) == -1.5 and g.get(state) == 2,
    )
    assert gauges[equity] == 9_876.25


def test_timings_arrive_in_milliseconds(statsd_daemon: StatsdDaemon) -> None:
    prefix = _prefix()
    metrics = StatsdMetrics(statsd_daemon.host, statsd_daemon.port, prefix)
    metrics.timing(MetricNames.LOOP_DURATION_MS, 12.5)
    metrics.timing(MetricNames.LOOP_DURATION_MS, 3)
    metrics.timing(MetricNames.GUARD_REACTION_MS, 0.25)

    loop = f"{prefix}.{MetricNames.LOOP_DURATION_MS}"
    reaction = f"{prefix}.{MetricNames.GUARD_REACTION_MS}"
    timers = statsd_daemon.wait_for(statsd_daemon.timers, lambda t: len(t.get(loop, [])) == 2 and reaction in t)
    assert sorted(timers[loop]) == [3, 12.5]
    assert timers[reaction] == [0.25]


def test_non_finite_values_are_dropped_and_counted_not_sent(statsd_daemon: StatsdDaemon) -> None:
    prefix = _prefix()
    metrics = StatsdMetrics(statsd_daemon.host, statsd_daemon.port, prefix)
    metrics.gauge(MetricNames.EQUITY, float("nan"))
    metrics.timing(MetricNames.LOOP_DURATION_MS, float("inf"))
    metrics.gauge(MetricNames.EQUITY, 1.0)  # the marker that everything before it was processed

    equity = f"{prefix}.{MetricNames.EQUITY}"
    statsd_daemon.wait_for(statsd_daemon.gauges, lambda g: g.get(equity) == 1.0)
    assert metrics.dropped == 2
    assert f"{prefix}.{MetricNames.LOOP_DURATION_MS}" not in statsd_daemon.timers()


def _dead_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_dead_daemon_neither_raises_nor_blocks_the_caller() -> None:
    # Nothing listens on the port: every figure goes nowhere, and the caller never notices.
    metrics = StatsdMetrics("127.0.0.1", _dead_udp_port(), "tw")
    for i in range(1000):
        metrics.incr(MetricNames.HEARTBEAT_TOTAL)
        metrics.gauge(MetricNames.EQUITY, 1000.0 + i)
        metrics.timing(MetricNames.LOOP_DURATION_MS, 1.0)


def test_a_closed_sink_drops_and_counts_without_raising() -> None:
    metrics = StatsdMetrics("127.0.0.1", _dead_udp_port(), "tw")
    metrics.close()
    metrics.incr(MetricNames.HEARTBEAT_TOTAL)
    metrics.gauge(MetricNames.EQUITY, 1.0)
    metrics.timing(MetricNames.LOOP_DURATION_MS, 1.0)
    assert metrics.dropped == 3


def test_a_bad_port_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"statsd_port .* got 0"):
        StatsdMetrics("127.0.0.1", 0, "tw")
    with pytest.raises(ValueError, match=r"statsd_host .* got ''"):
        StatsdMetrics("", 8125, "tw")


def test_from_settings_is_null_without_a_host_and_statsd_with_one() -> None:
    assert isinstance(StatsdMetrics.from_settings(Settings()), NullMetrics)
    sink = StatsdMetrics.from_settings(Settings(statsd_host="127.0.0.1", statsd_port=9125, statsd_prefix="bot"))
    assert isinstance(sink, StatsdMetrics)
    assert sink.address == ("127.0.0.1", 9125)
    assert "prefix='bot'" in repr(sink)


def test_the_fixture_names_the_install_command_when_the_daemon_is_missing(tmp_path: Path) -> None:
    daemon = StatsdDaemon(tmp_path, stats_js=tmp_path / "missing" / "stats.js")
    with pytest.raises(StatsdDaemonError, match="npm install") as info:
        daemon.start()
    assert INSTALL_COMMAND in str(info.value)


def test_parse_inspect_reads_node_objects_and_refuses_truncated_arrays() -> None:
    text = "{\n  'statsd.bad_lines_seen': 0,\n  plain_key: -5.25,\n  'a.b': [ 12.5, 3, 1e+21 ]\n}\n"
    assert parse_inspect(text) == {"statsd.bad_lines_seen": 0, "plain_key": -5.25, "a.b": [12.5, 3, 1e21]}
    with pytest.raises(ValueError, match="truncated"):
        parse_inspect("{ 'a': [ 1, 2, ... 98 more items ] }")


def test_with_a_flush_interval_figures_are_summed_and_arrive_packed(statsd_daemon: StatsdDaemon) -> None:
    prefix = _prefix()
    metrics = StatsdMetrics(statsd_daemon.host, statsd_daemon.port, prefix, flush_interval=0.05)
    for _ in range(1_000):
        metrics.incr(MetricNames.HEARTBEAT_TOTAL)
        metrics.gauge(MetricNames.EQUITY, 9_000.5)
    metrics.gauge(MetricNames.DRAWDOWN_PCT, -2.5)
    metrics.timing(MetricNames.LOOP_DURATION_MS, 1.5)
    metrics.timing(MetricNames.LOOP_DURATION_MS, 2.5)
    name = f"{prefix}.{{}}".format
    counters = statsd_daemon.wait_for(statsd_daemon.counters, lambda c: c.get(name(MetricNames.HEARTBEAT_TOTAL)) == 1_000)
    assert counters[name(MetricNames.HEARTBEAT_TOTAL)] == 1_000
    gauges = statsd_daemon.wait_for(statsd_daemon.gauges, lambda g: name(MetricNames.DRAWDOWN_PCT) in g)
    assert gauges[name(MetricNames.EQUITY)] == 9_000.5 and gauges[name(MetricNames.DRAWDOWN_PCT)] == -2.5
    timers = statsd_daemon.wait_for(statsd_daemon.timers, lambda t: len(t.get(name(MetricNames.LOOP_DURATION_MS), [])) == 2)
    assert sorted(timers[name(MetricNames.LOOP_DURATION_MS)]) == [1.5, 2.5]
    metrics.close()
    assert metrics.dropped == 0


def test_close_sends_what_is_still_summed(statsd_daemon: StatsdDaemon) -> None:
    prefix = _prefix()
    metrics = StatsdMetrics(statsd_daemon.host, statsd_daemon.port, prefix, flush_interval=3600)
    metrics.incr(MetricNames.ACTOR_RESTARTS_TOTAL, 7)
    metrics.close()
    name = f"{prefix}.{MetricNames.ACTOR_RESTARTS_TOTAL}"
    assert statsd_daemon.wait_for(statsd_daemon.counters, lambda c: c.get(name) == 7)[name] == 7


def test_a_bad_flush_interval_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="statsd_flush_seconds must be a number of seconds >= 0, got -1"):
        StatsdMetrics("127.0.0.1", 8125, "x", flush_interval=-1)


def test_a_figure_with_a_non_ascii_name_is_dropped_alone(statsd_daemon: StatsdDaemon) -> None:
    prefix = _prefix()
    metrics = StatsdMetrics(statsd_daemon.host, statsd_daemon.port, prefix, flush_interval=0.05)
    metrics.incr("équité_total")
    metrics.incr(MetricNames.HEARTBEAT_TOTAL, 4)
    name = f"{prefix}.{MetricNames.HEARTBEAT_TOTAL}"
    assert statsd_daemon.wait_for(statsd_daemon.counters, lambda c: c.get(name) == 4)[name] == 4
    metrics.close()
    metrics.incr(MetricNames.HEARTBEAT_TOTAL)  # after close: dropped and counted, not kept
    assert metrics.dropped == 2
