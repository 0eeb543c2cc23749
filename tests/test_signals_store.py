"""Signals and approval, the in-memory state store and its journal, alerts."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loguru import logger
from strategies import events

from runtime import (
    Alert,
    AutoApprove,
    Event,
    EventType,
    ListSignalSource,
    LogAlerts,
    LoopTotals,
    MaxDrawdownGuard,
    MemoryStore,
    RiskMonitor,
    Severity,
    Side,
    Signal,
    TradingState,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)


# --- signals --------------------------------------------------------------------------------------


def test_signals_get_distinct_ids():
    assert Signal("X", Side.SELL, 1.0).signal_id != Signal("X", Side.SELL, 1.0).signal_id


@pytest.mark.parametrize("volume", [0.0, -2.0])
def test_a_signal_with_a_volume_that_is_not_positive_is_refused_naming_it(volume):
    with pytest.raises(ValueError, match=rf"volume must be > 0, got {volume!r}"):
        Signal("EURUSD", Side.BUY, volume)


def test_a_list_source_hands_over_each_pushed_signal_once():
    first, second, third = (Signal("X", Side.BUY, 1.0) for _ in range(3))
    source = ListSignalSource([first])
    source.push(second, third)
    assert list(source.poll(NOW)) == [first, second, third]
    assert list(source.poll(NOW)) == []


def test_auto_approve_approves_every_signal():
    assert AutoApprove().approve(Signal("X", Side.BUY, 1.0)) is True


def test_each_order_of_a_signal_gets_a_new_client_id():
    signal = Signal("X", Side.BUY, 2.0)
    first, second = signal.order(), signal.order()
    assert (first.symbol, first.side, first.volume) == ("X", Side.BUY, 2.0)
    assert first.client_id != second.client_id


# --- the store ------------------------------------------------------------------------------------


@settings(max_examples=50)
@given(
    batch=st.lists(events(loop_ids=st.sampled_from(["a", "b"])), max_size=10, unique_by=lambda e: e.event_id),
    data=st.data(),
)
def test_the_journal_keeps_each_event_once_in_append_order(batch, data):
    store = MemoryStore()
    repeats = data.draw(st.lists(st.sampled_from(batch), max_size=10) if batch else st.just([]), label="repeats")
    kept = [store.append_event(event) for event in batch]
    assert kept == [True] * len(batch)
    assert [store.append_event(event) for event in repeats] == [False] * len(repeats)
    assert store.events() == batch
    assert store.events("a") == [e for e in batch if e.loop_id == "a"]


def test_an_event_with_a_known_id_is_not_journaled_again_even_with_other_content():
    store = MemoryStore()
    first = Event(EventType.HEARTBEAT, "main", {"n": 1}, event_id="abc")
    impostor = Event(EventType.TRADE_FAILED, "main", {"n": 2}, event_id="abc")
    assert store.append_event(first) is True
    assert store.append_event(impostor) is False
    assert store.events() == [first]


def test_a_journal_event_read_back_equals_its_json_round_trip():
    store = MemoryStore()
    event = Event(EventType.GUARD_TRIGGERED, "main", {"reason": "max drawdown"})
    store.append_event(event)
    assert [Event.from_json(e.to_json()) for e in store.events()] == [event]


def test_concurrent_appends_of_the_same_events_keep_each_once():
    store = MemoryStore()
    batch = [Event(EventType.HEARTBEAT, "main", {"i": i}) for i in range(200)]
    start = threading.Barrier(4)

    def append_all():
        start.wait(timeout=10)
        for event in batch:
            store.append_event(event)

    threads = [threading.Thread(target=append_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(e.event_id for e in store.events()) == sorted(e.event_id for e in batch)


def test_the_store_gives_back_the_guard_record_it_was_given_per_loop():
    store = MemoryStore()
    assert store.load_guard("main") is None
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(10.0)])
    monitor.observe(850.0, NOW)
    store.save_guard("main", monitor.record())
    assert store.load_guard("main") == monitor.record()
    assert store.load_guard("other") is None
    restored = RiskMonitor.from_record(store.load_guard("main"), [MaxDrawdownGuard(10.0)])
    assert restored.trading_state is TradingState.HALTED


def test_saving_replaces_the_previous_guard_record_and_totals():
    store = MemoryStore()
    monitor = RiskMonitor(1000.0, [MaxDrawdownGuard(10.0)])
    store.save_guard("main", monitor.record())
    monitor.observe(1100.0, NOW)
    store.save_guard("main", monitor.record())
    assert store.load_guard("main").drawdown.peak_equity == 1100.0
    assert store.load_loop_totals("main") is None
    store.save_loop_totals("main", LoopTotals(3, 1))
    store.save_loop_totals("main", LoopTotals(5, 2))
    assert store.load_loop_totals("main") == LoopTotals(total_signals_lifetime=5, total_trades_lifetime=2)


def test_loop_totals_refuse_a_negative_count_naming_the_field():
    with pytest.raises(ValueError, match=r"^total_trades_lifetime must be a whole number >= 0, got -1$"):
        LoopTotals(total_trades_lifetime=-1)


@pytest.mark.parametrize("value", [1.5, "3", True, None])
def test_loop_totals_refuse_a_count_that_is_not_an_int_naming_the_field(value):
    with pytest.raises(TypeError, match=rf"^total_trades_lifetime must be a whole number >= 0, got {re.escape(repr(value))} \("):
        LoopTotals(total_trades_lifetime=value)


# --- alerts ---------------------------------------------------------------------------------------


def test_an_alert_renders_its_severity_title_count_and_text():
    alert = Alert("Guard breach", "max drawdown 21% >= 20%", Severity.CRITICAL)
    assert alert.render() == "[CRITICAL] Guard breach\nmax drawdown 21% >= 20%"
    assert alert.render(3) == "[CRITICAL] Guard breach (x3)\nmax drawdown 21% >= 20%"
    assert alert.critical


def test_only_critical_alerts_are_critical_and_the_default_is_a_warning():
    assert Alert("t", "x").severity is Severity.WARNING
    assert not Alert("t", "x").critical
    assert not Alert("t", "x", "info").critical


def test_log_alerts_writes_one_log_line_at_the_alerts_level():
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message), level="DEBUG", format="{level} {message}")
    try:
        LogAlerts().send(Alert("Stall", "no cycle for 30s", Severity.CRITICAL))
    finally:
        logger.remove(sink)
    assert [line.strip() for line in lines] == ["CRITICAL ALERT Stall: no cycle for 30s"]
