"""The whole trading system configured through Settings against real services: the reference
statsd daemon receives the runtime's metric names, a local Bot API server receives the guard's
alert, and a hanging Bot API never delays a liquidation."""

from __future__ import annotations

import time
import uuid

import pytest
from support.bot_api_server import TEST_TOKEN, BotApiServer, Reply
from support.statsd_daemon import StatsdDaemon

from actors import start_trading_system
from actors.heartbeat import GetHeartbeatStats
from actors.messages import GetGuardState, RunCycle
from runtime import ListSignalSource, ManualClock, PaperBroker, Settings, Signal, TradingState


def trading(settings: Settings):
    broker = PaperBroker(10_000)
    broker.update_price("X", 100.0)
    signals = ListSignalSource()
    clock = ManualClock()
    system = start_trading_system(settings, broker, signals, clock=clock, loop_interval=None)
    return system, broker, signals, clock


def crash_the_market(system, broker, signals) -> None:
    signals.push(Signal("X", "buy", 50))
    system.loop.ask(RunCycle())
    broker.update_price("X", 40.0)  # equity 7,000: a 30% drawdown
    system.loop.ask(RunCycle())


def test_the_runtime_reports_its_metric_names_to_a_real_statsd_daemon(statsd_daemon: StatsdDaemon):
    prefix = f"tw{uuid.uuid4().hex[:8]}"
    settings = Settings(
        statsd_host=statsd_daemon.host, statsd_port=statsd_daemon.port, statsd_prefix=prefix,
        heartbeat_interval_seconds=10,
    )
    system, broker, signals, clock = trading(settings)
    try:
        crash_the_market(system, broker, signals)
        clock.advance(10)
        system.heartbeat.ask(GetHeartbeatStats())
        system.guard.ask(GetGuardState())
    finally:
        system.stop()
    name = f"{prefix}.{{}}".format
    counters = statsd_daemon.wait_for(
        statsd_daemon.counters,
        lambda c: c.get(name("drawdown_block_total")) == 1 and c.get(name("heartbeat_total")) == 1
        and c.get(name("analytics_events_total.trade_executed")) == 1,
    )
    assert counters[name("analytics_events_total.guard_triggered")] == 1
    assert counters[name("analytics_events_total.position_closed")] == 1
    gauges = statsd_daemon.wait_for(statsd_daemon.gauges, lambda g: g.get(name("trading_state")) == 2)
    assert gauges[name("equity")] == 7_000 and gauges[name("drawdown_pct")] == pytest.approx(30.0)
    assert gauges[name("positions_open")] in (0, 1)
    timers = statsd_daemon.wait_for(statsd_daemon.timers, lambda t: name("guard_reaction_ms") in t)
    assert len(timers[name("loop_duration_ms")]) >= 2
    assert timers[name("guard_reaction_ms")][0] >= 0


def test_a_breach_alert_reaches_the_bot_api_for_the_configured_chat(bot_api: BotApiServer):
    settings = Settings(telegram_bot_token=TEST_TOKEN, telegram_chat_id="-1001", telegram_api_base_url=bot_api.url)
    system, broker, signals, clock = trading(settings)
    try:
        crash_the_market(system, broker, signals)
        [request] = bot_api.wait_for_requests(1, timeout=10)
    finally:
        system.stop()
    assert request.payload["chat_id"] in ("-1001", -1001)
    assert request.text.startswith("[CRITICAL] Trading halted: max_drawdown")
    assert "30.00% >= limit 20.00%" in request.text


def test_a_hanging_bot_api_does_not_delay_the_liquidation(bot_api: BotApiServer):
    bot_api.script(Reply.hang())
    settings = Settings(telegram_bot_token=TEST_TOKEN, telegram_chat_id="1", telegram_api_base_url=bot_api.url)
    system, broker, signals, clock = trading(settings)
    try:
        signals.push(Signal("X", "buy", 50))
        system.loop.ask(RunCycle())
        broker.update_price("X", 40.0)
        started = time.perf_counter()
        system.loop.ask(RunCycle())
        status = system.guard.ask(GetGuardState(), timeout=5)
        took = time.perf_counter() - started
        bot_api.wait_for_requests(1, timeout=10)  # the alert is out there, hanging
        assert status.state.trading_state is TradingState.HALTED and broker.open_positions() == []
        assert took < 1.0, f"the guard waited {took:.2f}s on a hanging alert service"
    finally:
        bot_api.release()
        system.stop()
