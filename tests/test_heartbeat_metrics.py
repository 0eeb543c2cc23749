"""HeartbeatMetrics validation, and the in-process metrics sinks."""

from __future__ import annotations

import math
import threading

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import bad_readings, equities

from runtime import (
    DailyLossGuard,
    HeartbeatMetrics,
    MaxDrawdownGuard,
    MemoryMetrics,
    MetricNames,
    MinEquityGuard,
    NullMetrics,
)

COUNTS = [
    "signals_processed",
    "trades_executed",
    "error_count",
    "positions_open",
    "total_signals_lifetime",
    "total_trades_lifetime",
]


def test_defaults_are_all_zero():
    assert HeartbeatMetrics().as_dict() == {name: 0 for name in COUNTS} | {
        "loop_duration_ms": 0.0,
        "account_equity": 0.0,
    }


def test_as_dict_has_every_figure_by_name():
    metrics = HeartbeatMetrics(
        signals_processed=3,
        trades_executed=2,
        error_count=1,
        loop_duration_ms=12.5,
        positions_open=1,
        account_equity=-40.0,
        total_signals_lifetime=30,
        total_trades_lifetime=20,
    )
    assert metrics.as_dict() == {
        "signals_processed": 3,
        "trades_executed": 2,
        "error_count": 1,
        "loop_duration_ms": 12.5,
        "positions_open": 1,
        "account_equity": -40.0,
        "total_signals_lifetime": 30,
        "total_trades_lifetime": 20,
    }


@pytest.mark.parametrize("field", COUNTS)
def test_a_negative_count_is_refused_naming_the_field_and_value(field):
    with pytest.raises(ValueError, match=rf"{field}.*-1"):
        HeartbeatMetrics(**{field: -1})


@pytest.mark.parametrize("field", COUNTS)
@pytest.mark.parametrize("value", [1.5, "3", None])
def test_a_count_that_is_not_a_whole_number_is_refused_naming_the_field(field, value):
    with pytest.raises(TypeError, match=field):
        HeartbeatMetrics(**{field: value})


@pytest.mark.parametrize("field", COUNTS)
def test_a_boolean_count_is_refused(field):
    with pytest.raises(TypeError, match=rf"{field}.*True"):
        HeartbeatMetrics(**{field: True})


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_loop_duration_is_refused_naming_it(value):
    with pytest.raises(ValueError, match=rf"loop_duration_ms.*{value!r}"):
        HeartbeatMetrics(loop_duration_ms=value)


def test_a_negative_loop_duration_is_refused():
    with pytest.raises(ValueError, match=r"loop_duration_ms must be >= 0, got -0\.5"):
        HeartbeatMetrics(loop_duration_ms=-0.5)


@given(bad=bad_readings())
def test_a_bad_account_equity_is_refused_naming_it(bad):
    with pytest.raises((TypeError, ValueError), match="account_equity") as raised:
        HeartbeatMetrics(account_equity=bad)
    assert repr(bad) in str(raised.value)


@given(equity=equities(), negative=st.booleans())
def test_any_finite_account_equity_is_kept_negative_included(equity, negative):
    value = -equity if negative else equity
    assert HeartbeatMetrics(account_equity=value).account_equity == value


def test_integer_durations_and_equity_become_floats():
    metrics = HeartbeatMetrics(loop_duration_ms=3, account_equity=100)
    assert type(metrics.loop_duration_ms) is float and type(metrics.account_equity) is float


def test_heartbeat_metrics_are_frozen():
    metrics = HeartbeatMetrics()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        metrics.error_count = 3


# --- metrics sinks ------------------------------------------------------------------------------


def test_memory_metrics_add_counters_set_gauges_and_append_timings():
    metrics = MemoryMetrics()
    metrics.incr(MetricNames.HEARTBEAT_TOTAL)
    metrics.incr(MetricNames.HEARTBEAT_TOTAL, 4)
    metrics.gauge(MetricNames.EQUITY, 100.0)
    metrics.gauge(MetricNames.EQUITY, 90.0)
    metrics.timing(MetricNames.LOOP_DURATION_MS, 1.5)
    metrics.timing(MetricNames.LOOP_DURATION_MS, 2.5)
    assert metrics.counters == {"heartbeat_total": 5}
    assert metrics.gauges == {"equity": 90.0}
    assert metrics.timings == {"loop_duration_ms": [1.5, 2.5]}


def test_memory_metrics_count_exactly_from_many_threads():
    metrics = MemoryMetrics()
    start = threading.Barrier(8)

    def work():
        start.wait(timeout=10)
        for _ in range(1000):
            metrics.incr("n")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert metrics.counters == {"n": 8000}


def test_null_metrics_accept_everything_and_keep_nothing():
    metrics = NullMetrics()
    assert metrics.incr("x") is None
    assert metrics.gauge("x", 1.0) is None
    assert metrics.timing("x", 1.0) is None
    assert vars(metrics) == {}


def test_every_guards_block_counter_is_a_reported_metric_name():
    counters = {
        MaxDrawdownGuard(10.0).block_counter,
        MinEquityGuard(1.0).block_counter,
        DailyLossGuard(5.0).block_counter,
    }
    assert counters == {
        MetricNames.DRAWDOWN_BLOCK_TOTAL,
        MetricNames.MIN_EQUITY_BLOCK_TOTAL,
        MetricNames.DAILY_LOSS_BLOCK_TOTAL,
    }


def test_the_old_systems_metric_names_are_kept():
    assert MetricNames.HEARTBEAT_TOTAL == "heartbeat_total"
    assert MetricNames.DRAWDOWN_BLOCK_TOTAL == "drawdown_block_total"
    assert MetricNames.MIN_EQUITY_BLOCK_TOTAL == "min_equity_block_total"
    assert MetricNames.ANALYTICS_EVENTS_TOTAL == "analytics_events_total"
