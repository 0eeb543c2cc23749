"""`tradewarden run`: a live trading system on wall-clock time, its feed and its control server."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from loguru import logger

from actors.replay import PaperFeed
from actors.service.auth import BearerToken
from actors.service.config import ConfigError, RunConfig, build_strategy, load_object
from actors.service.control import control_app, refused_value
from actors.service.feed import LiveFeed, bar_source
from actors.service.hub import EventHub
from actors.service.journal import JournalReader
from actors.service.server import ControlServer, bind
from actors.service.stop_signals import StopSignals
from actors.service.telegram_bot import CommandHandler
from actors.system import TradingSystem
from runtime.adapters.paper import PaperBroker
from runtime.adapters.prometheus import PrometheusMetrics
from runtime.adapters.sqlite import SqliteStore
from runtime.adapters.state_claim import StateFileClaim
from runtime.adapters.statsd import StatsdMetrics
from runtime.adapters.telegram import TelegramAlerts
from runtime.adapters.telegram_commands import TelegramCommands
from runtime.backoff import Backoff
from runtime.broker import Broker
from runtime.errors import TradewardenError
from runtime.metrics import FanOutMetrics
from runtime.replay.prices import PriceDataError

__all__ = ["run"]

_log = logger.bind(component="run")
# How many of the journal's last state changes a start reads for the one that set the state now
# (halts pressed again while halted come after it, and are not changes).
_STATE_CHANGES_READ = 1_000


def _broker(config: RunConfig) -> Broker:
    if config.broker.kind == "mt5":
        factory = load_object(f"{config.path}: broker.kind 'mt5'", "runtime.adapters.mt5:MT5Broker")
        try:
            broker: Broker = factory(**config.broker.options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{config.path}: broker: MT5Broker refused {sorted(config.broker.options)}: {exc}") from None
        return broker
    return PaperBroker.from_settings(config.settings, config.broker.cash)


def _market_feed(broker: Broker, strategy: Any, symbol: str) -> Any:
    # A bar-driven strategy (on_bar and sync_position) is moved by PaperFeed; any other signal
    # source only needs the paper broker's price to follow the bars.
    if callable(getattr(strategy, "on_bar", None)) and callable(getattr(strategy, "sync_position", None)):
        return PaperFeed(broker, strategy, symbol)  # type: ignore[arg-type]
    return lambda data: broker.update_price(  # type: ignore[attr-defined]
        symbol, data.bar.close, data.bar.time, spread_points=data.bar.spread_points
    )


def _closed_last(parts: ExitStack, part: Any) -> Any:
    # ``part``, closed with ``parts`` (before every part opened earlier) when it has a close.
    close = getattr(part, "close", None)
    if callable(close):
        parts.callback(close)
    return part


def _unusable(exc: BaseException | str) -> int:
    # A config that cannot be used: named on one line (no traceback), exit 2, nothing started.
    print(f"tradewarden run: {exc}", file=sys.stderr)
    return 2


_SAVE_AGAIN = Backoff(min_seconds=1.0, max_seconds=10.0, random_factor=0.0)


def _hold_until_saved(system: TradingSystem, signals: StopSignals) -> str | None:
    # The supervisor gave up and the fail-safe's HALTED did not reach the store (a full disk):
    # exiting now, the restart a watchdog makes would find the account ACTIVE and trade. The
    # process stays up (halted: it sends no order) and saves it again until the store takes it.
    _log.critical(
        "trading is halted, but the state store refused the halt: this process stays up and saves it again until the "
        "store takes it (stopped before then, the next start would trade)"
    )
    attempt = 0
    while not system.save_halt_again():
        attempt += 1
        if (received := signals.wait(_SAVE_AGAIN.delay(attempt))) is not None:
            _log.critical(
                "{} received with the halt still not saved: the next start will find the account ACTIVE; once the store "
                "can take it, `tradewarden halt` saves a halt for that start", received,
            )
            return received
    return None


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
        sock = bind(settings.control_host, settings.control_port, token=settings.control_token)
    except (ConfigError, PriceDataError, RuntimeError) as exc:
        return _unusable(exc)
    with ExitStack() as parts:  # closed in reverse order however run ends: the claim after the store
        parts.callback(sock.close)
        try:
            signals = parts.enter_context(StopSignals())
            alerts = _closed_last(parts, TelegramAlerts.from_settings(settings))
            # A token or chat the Bot API refuses would lose every alert, a breach's too, without
            # a word until one is due: a first start is refused, as any setting that cannot be
            # used. An account that has traded (its state file is there) starts all the same, said
            # at critical: its open positions need their guard more than the chat.
            refused = alerts.check() if isinstance(alerts, TelegramAlerts) else None
            if refused is not None:
                if settings.state_db is None or not Path(settings.state_db).is_file():
                    return _unusable(refused)
                _log.critical("{}: alerts will not reach the chat until this is mended", refused)
            prometheus = PrometheusMetrics.from_settings(settings)
            statsd = _closed_last(parts, StatsdMetrics.from_settings(settings))
            claim = _closed_last(parts, StateFileClaim.of(settings.state_db))  # before a second bot's store touches the file
            store = _closed_last(parts, SqliteStore.from_settings(settings))
        except (TradewardenError, OSError, TypeError, ValueError) as exc:
            # A setting the parts refuse (an unreachable statsd host, a foreign or busy state
            # file, a bad Telegram URL) is a config that cannot be used: named, exit 2, nothing
            # started.
            return _unusable(exc)
        metrics = FanOutMetrics(statsd, prometheus)
        hub = EventHub()
        try:
            system = TradingSystem(
                settings, broker, strategy, alerts=alerts, metrics=metrics, store=store, subscribers=[hub],
                market_feed=_market_feed(broker, strategy, config.feed.symbol) if bars is not None else None,
            )
            if claim is not None:
                system.guard_state_file(claim)  # a file deleted or replaced under it halts it, and keeps the path
            commands = TelegramCommands.from_settings(settings, CommandHandler(system, hub), metrics)
            feed = LiveFeed(system.loop, bars) if bars is not None else None
        except (TradewardenError, TypeError, ValueError) as exc:
            # A setting the system refuses at its validation boundary is a bad setting like the
            # others; any other error here is a defect of ours, shown with its traceback.
            if not isinstance(exc, TradewardenError) and not refused_value(exc):
                raise
            return _unusable(exc)
        if token is None:
            _log.warning("no CONTROL_TOKEN: the control API on {} is open to every local user", settings.control_host)
        server: ControlServer | None = None
        try:
            system.start()
            journal = JournalReader(str(settings.state_db))
            # The latest that changed the state: a halt pressed again while halted did not.
            for _, change in journal.events(loop_id=settings.loop_id, event_type="trading_state_changed", latest=True,
                                            limit=_STATE_CHANGES_READ):
                hub.remember_state_change(change)
            server = ControlServer(control_app(system, hub, journal, prometheus, metrics, token), sock).start()
            if feed is not None:
                feed.start()
            if commands is not None:
                commands.start()
            _log.info("trading loop {!r} running; control API and dashboard on http://{}:{}/", settings.loop_id, *server.address)
            # Wakes for a signal, or to notice a system that ended on its own.
            while (received := signals.wait(0.5)) is None and not system.wait(0):
                pass
            if received is None and system.halt_unsaved:
                received = _hold_until_saved(system, signals)
            if received is not None:
                _log.info("{} received: stopping", received)
        finally:
            if commands is not None:
                commands.stop()
            if feed is not None:
                feed.stop()
            system.stop()
            if server is not None:
                server.stop()
    if system.gave_up:
        _log.critical("the trading system ended: its supervisor gave up; trading is halted")
        return 1
    _log.info("stopped cleanly")
    return 0
