"""`tradewarden run`: a live trading system on wall-clock time, its feed and its control server."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

from loguru import logger

from actors.replay import PaperFeed
from actors.service.auth import BearerToken
from actors.service.config import ConfigError, RunConfig, build_strategy, load_object
from actors.service.control import control_app
from actors.service.feed import LiveFeed, bar_source
from actors.service.hub import EventHub
from actors.service.journal import JournalReader
from actors.service.server import ControlServer, bind
from actors.service.telegram_bot import CommandHandler
from actors.system import TradingSystem
from runtime.adapters.paper import PaperBroker, PaperCosts
from runtime.adapters.prometheus import PrometheusMetrics
from runtime.adapters.sqlite import SqliteStore
from runtime.adapters.statsd import StatsdMetrics
from runtime.adapters.telegram import TelegramAlerts
from runtime.adapters.telegram_commands import TelegramCommands
from runtime.broker import Broker
from runtime.metrics import FanOutMetrics
from runtime.replay.prices import PriceDataError

__all__ = ["run"]

_log = logger.bind(component="run")


def _broker(config: RunConfig) -> Broker:
    if config.broker.kind == "mt5":
        factory = load_object(f"{config.path}: broker.kind 'mt5'", "runtime.adapters.mt5:MT5Broker")
        try:
            broker: Broker = factory(**config.broker.options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{config.path}: broker: MT5Broker refused {sorted(config.broker.options)}: {exc}") from None
        return broker
    return PaperBroker(config.broker.cash, costs=PaperCosts.from_settings(config.settings))


def _market_feed(broker: Broker, strategy: Any, symbol: str) -> Any:
    # A bar-driven strategy (on_bar and sync_position) is moved by PaperFeed; any other signal
    # source only needs the paper broker's price to follow the bars.
    if callable(getattr(strategy, "on_bar", None)) and callable(getattr(strategy, "sync_position", None)):
        return PaperFeed(broker, strategy, symbol)  # type: ignore[arg-type]
    return lambda data: broker.update_price(  # type: ignore[attr-defined]
        symbol, data.bar.close, data.bar.time, spread_points=data.bar.spread_points
    )


def run(config: RunConfig) -> int:
    """Run until SIGTERM or SIGINT, then stop everything cleanly; returns the exit code: 0 after
    a requested stop, 1 when the system ended on its own (its supervisor gave up), 2 when the
    config cannot be used (nothing has started then)."""
    settings = config.settings
    token = BearerToken(settings.control_token) if settings.control_token else None
    try:
        strategy = build_strategy(config)
        broker = _broker(config)
        bars = bar_source(config.feed) if isinstance(broker, PaperBroker) else None
        sock = bind(settings.control_host, settings.control_port, has_token=token is not None)
    except (ConfigError, PriceDataError, RuntimeError) as exc:
        print(f"tradewarden run: {exc}", file=sys.stderr)
        return 2
    if token is None:
        _log.warning("no CONTROL_TOKEN: the control API on {} is open to every local user", settings.control_host)
    prometheus = PrometheusMetrics.from_settings(settings)
    statsd = StatsdMetrics.from_settings(settings)
    metrics = FanOutMetrics(statsd, prometheus)
    store = SqliteStore.from_settings(settings)
    alerts = TelegramAlerts.from_settings(settings)
    hub = EventHub()
    system = TradingSystem(
        settings, broker, strategy, alerts=alerts, metrics=metrics, store=store, subscribers=[hub],
        market_feed=_market_feed(broker, strategy, config.feed.symbol) if bars is not None else None,
    )
    stopping = threading.Event()

    def on_signal(number: int, frame: FrameType | None) -> None:
        _log.info("{} received: stopping", signal.Signals(number).name)
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server: ControlServer | None = None
    commands = TelegramCommands.from_settings(settings, CommandHandler(system, hub), metrics)
    feed = LiveFeed(system.loop, bars) if bars is not None else None
    try:
        system.start()
        journal = JournalReader(str(settings.state_db))
        for _, change in journal.events(loop_id=settings.loop_id, event_type="trading_state_changed", latest=True, limit=1):
            hub.remember_state_change(change)
        server = ControlServer(control_app(system, hub, journal, prometheus, metrics, token), sock).start()
        if feed is not None:
            feed.start()
        if commands is not None:
            commands.start()
        _log.info("trading loop {!r} running; control API and dashboard on http://{}:{}/", settings.loop_id, *server.address)
        # Wakes for a signal, or to notice a system that ended on its own.
        while not stopping.wait(0.5) and not system.wait(0):
            pass
    finally:
        if commands is not None:
            commands.stop()
        if feed is not None:
            feed.stop()
        system.stop()
        if server is not None:
            server.stop()
        else:
            sock.close()
        for part in (metrics, alerts, store):
            close = getattr(part, "close", None)
            if close is not None:
                close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if system.gave_up:
        _log.critical("the trading system ended: its supervisor gave up; trading is halted")
        return 1
    _log.info("stopped cleanly")
    return 0
