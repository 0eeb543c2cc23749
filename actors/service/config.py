"""The run config of `tradewarden run`: one TOML file for the settings, broker, price feed and strategy."""

from __future__ import annotations

import importlib
import inspect
import os
import tomllib
from pathlib import Path
from typing import Any

import attrs

from runtime.errors import TradewardenError
from runtime.settings import Settings, SettingsError
from runtime.validation import finite_number, text, whole_number

__all__ = ["ConfigError", "RunConfig", "BrokerConfig", "FeedConfig", "StrategyConfig", "build_strategy", "load_object"]

DEFAULT_STRATEGY = "runtime.replay.strategies:MovingAverageCrossover"


class ConfigError(TradewardenError, ValueError):
    """The run config cannot be used; the message names the file, the key and the value."""


@attrs.frozen
class BrokerConfig:
    """``[broker]``: ``kind`` is ``paper`` (a `PaperBroker` with ``cash``) or ``mt5`` (MetaTrader 5,
    Windows only; the other keys are `MT5Broker`'s keyword arguments)."""

    kind: str = "paper"
    cash: float = 10_000.0
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class FeedConfig:
    """``[feed]``, the paper broker's prices: ``synthetic`` (a seeded random walk, one bar every
    ``interval_seconds``) or ``csv`` (the bars of ``path`` replayed in real time at ``speed`` data
    seconds per real second)."""

    kind: str = "synthetic"
    symbol: str = "SYNTH"
    seed: int = 7
    interval_seconds: float = 1.0
    start_price: float = 100.0
    volatility: float = 0.002
    drift: float = 0.0
    path: str | None = None
    speed: float = 1.0
    timezone: str = "UTC"


@attrs.frozen
class StrategyConfig:
    """``[strategy]``: ``class`` as ``module:Name`` (a `SignalSource`) and its keyword arguments
    from ``[strategy.options]``; the feed's symbol is passed as ``symbol`` when the class takes one
    and the options do not."""

    target: str = DEFAULT_STRATEGY
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class RunConfig:
    """Everything `tradewarden run` needs, checked before anything starts."""

    path: str
    settings: Settings
    broker: BrokerConfig
    feed: FeedConfig
    strategy: StrategyConfig

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunConfig:
        """Read ``path``: settings under ``[tradewarden]`` (then the environment, as `Settings.load`),
        and the ``[broker]``, ``[feed]`` and ``[strategy]`` tables. Raises `ConfigError` naming the
        file, the key and the value for anything unknown, missing or out of range."""
        name = str(path)
        try:
            with Path(path).open("rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"config file {name!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {name!r} is not valid TOML: {exc}") from None
        unknown = sorted(set(data) - {"tradewarden", "broker", "feed", "strategy"})
        if unknown:
            raise ConfigError(f"{name}: unknown table or key {unknown[0]!r}; known: tradewarden, broker, feed, strategy")
        try:
            settings = Settings.load(path) if "tradewarden" in data else Settings.load()
            broker = _broker(_table(data, "broker"))
            feed = _feed(_table(data, "feed"))
            strategy = _strategy(_table(data, "strategy"))
        except SettingsError as exc:
            raise ConfigError(str(exc)) from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name}: {exc}") from None
        if settings.state_dsn is not None:
            # Its dashboard and journal API read the SQLite journal; PostgreSQL accounts run in a fleet.
            raise ConfigError(
                f"{name}: tradewarden.state_dsn is for accounts in a fleet (actors.fleet); "
                "`tradewarden run` keeps its state and journal in tradewarden.state_db"
            )
        if settings.state_db is None:
            raise ConfigError(f"{name}: tradewarden.state_db must be set: a live run keeps its state and journal")
        return cls(name, settings, broker, feed, strategy)


def _table(data: dict[str, Any], name: str) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise TypeError(f"{name} must be a table, got {table!r}")
    return table


def _known(table: dict[str, Any], section: str, keys: set[str]) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        raise ValueError(f"unknown key {section}.{unknown[0]}; known: {', '.join(sorted(keys))}")


def _positive(field: str, value: Any) -> float:
    if finite_number(field, value) <= 0:
        raise ValueError(f"{field} must be a number > 0, got {value!r}")
    return float(value)


def _broker(table: dict[str, Any]) -> BrokerConfig:
    kind = text("broker.kind", table.get("kind", "paper"))
    if kind == "paper":
        _known(table, "broker", {"kind", "cash"})
        return BrokerConfig(kind, _positive("broker.cash", table.get("cash", 10_000.0)))
    if kind == "mt5":
        return BrokerConfig(kind, options={k: v for k, v in table.items() if k != "kind"})
    raise ValueError(f"broker.kind must be 'paper' or 'mt5', got {kind!r}")


def _feed(table: dict[str, Any]) -> FeedConfig:
    kind = text("feed.kind", table.get("kind", "synthetic"))
    defaults = FeedConfig()
    symbol = text("feed.symbol", table.get("symbol", defaults.symbol))
    if kind == "synthetic":
        _known(table, "feed", {"kind", "symbol", "seed", "interval_seconds", "start_price", "volatility", "drift"})
        volatility = finite_number("feed.volatility", table.get("volatility", defaults.volatility))
        if volatility < 0:
            raise ValueError(f"feed.volatility must be a number >= 0, got {volatility!r}")
        return FeedConfig(
            kind,
            symbol,
            seed=whole_number("feed.seed", table.get("seed", defaults.seed)),
            interval_seconds=_positive("feed.interval_seconds", table.get("interval_seconds", defaults.interval_seconds)),
            start_price=_positive("feed.start_price", table.get("start_price", defaults.start_price)),
            volatility=volatility,
            drift=finite_number("feed.drift", table.get("drift", defaults.drift)),
        )
    if kind == "csv":
        _known(table, "feed", {"kind", "symbol", "path", "speed", "timezone"})
        if "path" not in table:
            raise ValueError("feed.path must be set for a csv feed")
        return FeedConfig(
            kind,
            symbol,
            path=text("feed.path", table["path"]),
            speed=_positive("feed.speed", table.get("speed", defaults.speed)),
            timezone=text("feed.timezone", table.get("timezone", defaults.timezone)),
        )
    raise ValueError(f"feed.kind must be 'synthetic' or 'csv', got {kind!r}")


def _strategy(table: dict[str, Any]) -> StrategyConfig:
    _known(table, "strategy", {"class", "options"})
    target = text("strategy.class", table.get("class", DEFAULT_STRATEGY))
    if target.count(":") != 1 or not all(target.split(":")):
        raise ValueError(f"strategy.class must be 'module:Name', got {target!r}")
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise TypeError(f"strategy.options must be a table, got {options!r}")
    return StrategyConfig(target, dict(options))


def load_object(field: str, target: str) -> Any:
    """The object ``module:Name`` names; `ConfigError` naming ``field`` when it cannot be loaded."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{field} {target!r}: cannot import {module_name!r}: {exc}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"{field} {target!r}: module {module_name!r} has no {attribute!r}") from None


def build_strategy(config: RunConfig) -> Any:
    """The configured signal source, made with its options; `ConfigError` naming ``strategy.class``
    when the class cannot be loaded or refuses its options, or is not a `SignalSource`."""
    field = f"{config.path}: strategy.class"
    factory = load_object(field, config.strategy.target)
    options = dict(config.strategy.options)
    try:
        if "symbol" not in options and "symbol" in inspect.signature(factory).parameters:
            options["symbol"] = config.feed.symbol
        source = factory(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{field} {config.strategy.target!r} refused its options {options!r}: {exc}") from None
    if not callable(getattr(source, "poll", None)):
        raise ConfigError(f"{field} {config.strategy.target!r} is not a SignalSource: it has no poll(now) method")
    return source
