"""An account that comes back halted says so from the guard's start: a scrape shows the state
(it is flat, takes no reading that changes anything, and so never saves again), and the log
and an alert say so with the halt's reason."""

from __future__ import annotations

from actor_helpers import WAIT, AlertInbox, LogLines
from prometheus_client.parser import text_string_to_metric_families

from actors import start_trading_system
from actors.messages import GetGuardState, Halt
from runtime import ListSignalSource, ManualClock, PaperBroker, Settings, Severity, TradingState
from runtime.adapters.prometheus import PrometheusMetrics
from runtime.store import MemoryStore


def gauges(sink: PrometheusMetrics) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(sink.exposition().decode())
        if family.type == "gauge"
        for sample in family.samples
    }


def test_an_account_that_restarts_halted_shows_halted_in_a_scrape_from_the_start():
    store = MemoryStore()
    first = start_trading_system(Settings(), PaperBroker(10_000), ListSignalSource(), store=store,
                                 clock=ManualClock(), loop_interval=None)
    try:
        assert first.guard.ask(Halt("desk", "news at 14:30"), timeout=WAIT) is TradingState.ACTIVE
    finally:
        first.stop()

    sink, alerts = PrometheusMetrics(), AlertInbox()
    with LogLines() as logs:
        second = start_trading_system(Settings(), PaperBroker(10_000), ListSignalSource(), store=store, metrics=sink,
                                      alerts=alerts, clock=ManualClock(), loop_interval=None)
        try:
            assert second.guard.ask(GetGuardState(), timeout=WAIT).state.trading_state is TradingState.HALTED
            assert gauges(sink)["tradewarden_trading_state"] == 2.0
            started = alerts.wait_for("Started halted")
            assert (started.severity, started.text) == (
                Severity.WARNING, "halted by desk: news at 14:30; trading waits for a resume")
        finally:
            second.stop()
    assert [line for line in logs.snapshot() if "guard up" in line] == [
        "WARNING guard up: peak 10000.00, state halted (halted by desk: news at 14:30)"]
