"""Settings from a TOML file, the environment and explicit arguments, checked where they enter.

Precedence: file < environment < explicit arguments. The old system's variable names keep
working (HEARTBEAT_INTERVAL_SECONDS, MAX_DRAWDOWN_PERCENT, MIN_EQUITY_GBP).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from runtime.errors import TradewardenError
from runtime.risk.cooldown import Cooldown, cooldown_seconds
from runtime.risk.gate import Gate
from runtime.risk.guards import DailyLossGuard, Guard, MaxDrawdownGuard, MinEquityGuard
from runtime.risk.limits import (
    Limit,
    MaxLeverage,
    MaxOpenPositions,
    MaxOrderNotional,
    MaxOrderVolume,
    MaxSymbolExposure,
    MaxTotalExposure,
    MaxTradesPerDay,
    OrderRate,
    RunawayLoop,
)
from runtime.risk.position_stop import STOP_BASES, PositionStop
from runtime.validation import (
    attrs_boolean,
    attrs_non_negative,
    attrs_percent,
    attrs_positive,
    attrs_text,
    attrs_timezone,
    attrs_whole,
    finite_number,
    whole_number,
)

__all__ = ["Settings", "SettingsError", "masked_dsn"]


class SettingsError(TradewardenError, ValueError):
    """A setting had a bad value; the message names where it came from, the value, and what fits."""


def _env(*names: str, parse: str) -> dict[str, Any]:
    return {"env": names, "parse": parse}


def _fraction(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not 0.0 < finite_number(attribute.name, value) < 1.0:
        raise ValueError(f"{attribute.name} must be a fraction in (0, 1), got {value!r}")


def _port(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if whole_number(attribute.name, value, 1) > 65535:
        raise ValueError(f"{attribute.name} must be a port number in 1..65535, got {value!r}")


_optional_text = attrs.validators.optional(attrs_text)
_optional_positive = attrs.validators.optional(attrs_positive)


def _optional_count(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        whole_number(attribute.name, value, 1)


def _limit(variable: str, parse: str) -> Any:
    # Every pre-trade limit is off unless set.
    validator = _optional_positive if parse == "float?" else _optional_count
    return attrs.field(default=None, validator=validator, metadata=_env(variable, parse=parse))


_PAPER_MAX_LEVERAGE: float | None = 100.0  # None allows any leverage


def _commission_percent(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not 0 <= finite_number(attribute.name, value) < 100:
        raise ValueError(f"{attribute.name} must be a percentage in [0, 100), got {value!r}")


def _stale_action(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in ("reducing", "halted"):
        raise ValueError(f"{attribute.name} must be 'reducing' or 'halted', got {value!r}")


def _stop_basis(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in STOP_BASES:
        raise ValueError(f"{attribute.name} must be 'equity' or 'entry', got {value!r}")


def _cooldown_rules(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be rule names separated by commas, got {value!r}")


def _ping_url(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    attrs_text(instance, attribute, value)
    wanted = f"{attribute.name} must be an http:// or https:// URL with a host and no #fragment, got {value!r}"
    try:
        parts = urlsplit(value)
        hostname, _ = parts.hostname, parts.port
    except ValueError as exc:  # (an unclosed [IPv6] host, a bad port): named, with why
        raise ValueError(f"{wanted} ({exc})") from None
    if parts.scheme not in ("http", "https") or not hostname or parts.fragment:
        raise ValueError(wanted)


def _secret_repr(value: str | None) -> str:
    return "None" if value is None else "'***'"


_DSN_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)|(://[^/@:]*:)[^/@]*@", re.I)
_DSN_KEYWORD = re.compile(r"^\s*[A-Za-z_]+\s*=")


def masked_dsn(dsn: str) -> str:
    """``dsn`` with its password, if any, shown as ``***`` (for errors and reprs)."""
    return _DSN_PASSWORD.sub(lambda m: f"{m.group(1)}***" if m.group(1) else f"{m.group(3)}***@", dsn)


def _dsn(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    # Checked by shape only: the core does not import the PostgreSQL driver.
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a string, got {type(value).__name__}")
    if not (value.startswith(("postgresql://", "postgres://")) or _DSN_KEYWORD.match(value)):
        raise ValueError(
            f"{attribute.name} must be a PostgreSQL connection string ('host=... dbname=...') or a "
            f"postgresql:// URI, got {masked_dsn(value)!r}"
        )


def _dsn_repr(value: str | None) -> str:
    return "None" if value is None else repr(masked_dsn(value))


@attrs.frozen
class Settings:
    """Every setting of the runtime with its default; see README for the variable of each."""

    loop_id: str = attrs.field(default="main", validator=attrs_text, metadata=_env("LOOP_ID", parse="str"))
    account_currency: str = attrs.field(
        default="GBP", validator=attrs_text, metadata=_env("ACCOUNT_CURRENCY", parse="str")
    )
    heartbeat_interval_seconds: float = attrs.field(
        default=10.0, validator=attrs_positive, metadata=_env("HEARTBEAT_INTERVAL_SECONDS", parse="float")
    )
    heartbeat_timeout_seconds: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs_positive), metadata=_env("HEARTBEAT_TIMEOUT_SECONDS", parse="float?")
    )
    stall_after_seconds: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs_positive), metadata=_env("STALL_AFTER_SECONDS", parse="float?")
    )
    loop_interval_seconds: float = attrs.field(
        default=1.0, validator=attrs_positive, metadata=_env("LOOP_INTERVAL_SECONDS", parse="float")
    )
    max_drawdown_percent: float = attrs.field(
        default=20.0, validator=attrs_percent, metadata=_env("MAX_DRAWDOWN_PERCENT", parse="float")
    )
    drawdown_trailing: bool = attrs.field(default=True, validator=attrs_boolean, metadata=_env("DRAWDOWN_TRAILING", parse="bool"))
    min_equity: float = attrs.field(
        default=500.0, validator=attrs_non_negative, metadata=_env("MIN_EQUITY_GBP", "MIN_EQUITY", parse="float")
    )
    daily_loss_percent: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs_percent), metadata=_env("DAILY_LOSS_PERCENT", parse="float?")
    )
    trading_timezone: str = attrs.field(
        default="UTC", validator=[attrs_text, attrs_timezone], metadata=_env("TRADING_TIMEZONE", parse="str")
    )
    guard_warn_fraction: float | None = attrs.field(
        default=None, validator=_fraction, metadata=_env("GUARD_WARN_FRACTION", parse="float?")
    )
    equity_stale_seconds: float = attrs.field(
        default=30.0, validator=attrs_non_negative, metadata=_env("EQUITY_STALE_SECONDS", parse="float")
    )
    equity_stale_action: str = attrs.field(
        default="reducing", validator=_stale_action, metadata=_env("EQUITY_STALE_ACTION", parse="str")
    )
    broker_call_bound_seconds: float = attrs.field(
        default=10.0, validator=attrs_positive, metadata=_env("BROKER_CALL_BOUND_SECONDS", parse="float")
    )
    store_call_bound_seconds: float = attrs.field(
        default=10.0, validator=attrs_positive, metadata=_env("STORE_CALL_BOUND_SECONDS", parse="float")
    )
    max_order_volume: float | None = _limit("MAX_ORDER_VOLUME", "float?")
    max_order_notional: float | None = _limit("MAX_ORDER_NOTIONAL", "float?")
    max_open_positions: int | None = _limit("MAX_OPEN_POSITIONS", "int?")
    max_symbol_exposure: float | None = _limit("MAX_SYMBOL_EXPOSURE", "float?")
    max_total_exposure: float | None = _limit("MAX_TOTAL_EXPOSURE", "float?")
    max_leverage: float | None = _limit("MAX_LEVERAGE", "float?")
    max_orders_per_second: int | None = _limit("MAX_ORDERS_PER_SECOND", "int?")
    max_orders_per_day: int | None = _limit("MAX_ORDERS_PER_DAY", "int?")
    max_trades_per_day: int | None = _limit("MAX_TRADES_PER_DAY", "int?")
    runaway_refusals: int | None = _limit("RUNAWAY_REFUSALS", "int?")
    runaway_window_seconds: float = attrs.field(
        default=60.0, validator=attrs_positive, metadata=_env("RUNAWAY_WINDOW_SECONDS", parse="float")
    )
    contract_size: float = attrs.field(default=1.0, validator=attrs_positive, metadata=_env("CONTRACT_SIZE", parse="float"))
    position_stop_percent: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs_percent), metadata=_env("POSITION_STOP_PERCENT", parse="float?")
    )
    position_stop_basis: str = attrs.field(
        default="equity", validator=_stop_basis, metadata=_env("POSITION_STOP_BASIS", parse="str")
    )
    cooldown_rules: str | None = attrs.field(
        default=None, validator=_cooldown_rules, metadata=_env("COOLDOWN_RULES", parse="str?")
    )
    cooldown_seconds: float | None = attrs.field(
        default=None, validator=cooldown_seconds, metadata=_env("COOLDOWN_SECONDS", parse="float?")
    )
    # The paper broker's costs and margin (runtime.adapters.paper.PaperCosts): free by default, and
    # 100:1 at most (what many retail FX brokers allow outside the ESMA 30:1 cap; far above any sane
    # position, and a volume typo such as 1e9 lots on 10,000 is refused at the broker).
    paper_commission_per_lot: float = attrs.field(
        default=0.0, validator=attrs_non_negative, metadata=_env("PAPER_COMMISSION_PER_LOT", parse="float")
    )
    paper_commission_percent: float = attrs.field(
        default=0.0, validator=_commission_percent, metadata=_env("PAPER_COMMISSION_PERCENT", parse="float")
    )
    paper_spread: float = attrs.field(default=0.0, validator=attrs_non_negative, metadata=_env("PAPER_SPREAD", parse="float"))
    paper_point: float | None = attrs.field(default=None, validator=_optional_positive, metadata=_env("PAPER_POINT", parse="float?"))
    paper_slippage: float = attrs.field(default=0.0, validator=attrs_non_negative, metadata=_env("PAPER_SLIPPAGE", parse="float"))
    paper_max_leverage: float | None = attrs.field(
        default=_PAPER_MAX_LEVERAGE, validator=_optional_positive, metadata=_env("PAPER_MAX_LEVERAGE", parse="float?")
    )
    max_restarts: int = attrs.field(default=5, validator=attrs_whole, metadata=_env("SUPERVISOR_MAX_RESTARTS", parse="int"))
    within_seconds: float = attrs.field(
        default=60.0, validator=attrs_positive, metadata=_env("SUPERVISOR_WITHIN_SECONDS", parse="float")
    )
    statsd_host: str | None = attrs.field(
        default=None, validator=_optional_text, metadata=_env("STATSD_HOST", parse="str?")
    )
    statsd_port: int = attrs.field(default=8125, validator=_port, metadata=_env("STATSD_PORT", parse="int"))
    statsd_flush_seconds: float = attrs.field(
        default=0.1, validator=attrs_non_negative, metadata=_env("STATSD_FLUSH_SECONDS", parse="float")
    )
    statsd_prefix: str = attrs.field(
        default="tradewarden", validator=attrs_text, metadata=_env("STATSD_PREFIX", parse="str")
    )
    telegram_bot_token: str | None = attrs.field(
        default=None, validator=_optional_text, repr=_secret_repr, metadata=_env("TELEGRAM_BOT_TOKEN", parse="str?")
    )
    telegram_chat_id: str | None = attrs.field(
        default=None, validator=_optional_text, metadata=_env("TELEGRAM_CHAT_ID", parse="str?")
    )
    telegram_api_base_url: str = attrs.field(
        default="https://api.telegram.org", validator=attrs_text, metadata=_env("TELEGRAM_API_BASE_URL", parse="str")
    )
    state_db: str | None = attrs.field(default=None, validator=_optional_text, metadata=_env("STATE_DB", parse="str?"))
    state_dsn: str | None = attrs.field(default=None, validator=_dsn, repr=_dsn_repr, metadata=_env("STATE_DSN", parse="str?"))
    control_host: str = attrs.field(
        default="127.0.0.1", validator=attrs_text, metadata=_env("CONTROL_HOST", parse="str")
    )
    control_port: int = attrs.field(default=8787, validator=_port, metadata=_env("CONTROL_PORT", parse="int"))
    control_token: str | None = attrs.field(
        default=None, validator=_optional_text, repr=_secret_repr, metadata=_env("CONTROL_TOKEN", parse="str?")
    )
    # The dead man's switch (off unless set): pinged while healthy, so an outside monitor alerts
    # when the pings stop. The URL is the check's credential, hence kept out of the repr.
    healthcheck_ping_url: str | None = attrs.field(
        default=None, validator=_ping_url, repr=_secret_repr, metadata=_env("HEALTHCHECK_PING_URL", parse="str?")
    )
    log_json: bool = attrs.field(default=False, validator=attrs_boolean, metadata=_env("LOG_JSON", parse="bool"))
    log_level: str = attrs.field(default="INFO", validator=attrs_text, metadata=_env("LOG_LEVEL", parse="str"))

    def __attrs_post_init__(self) -> None:
        timeout = self.heartbeat_timeout_seconds
        if timeout is not None and timeout >= self.heartbeat_interval_seconds:
            raise ValueError(
                f"heartbeat_timeout_seconds must be shorter than heartbeat_interval_seconds "
                f"({self.heartbeat_interval_seconds!r}), got {timeout!r}"
            )
        self.cooldown()  # a cooldown naming an unknown rule, or a timed one without seconds, is refused here
        if not self.heartbeat_timeout > 0:  # (a subnormal interval halves to 0.0)
            raise ValueError(
                "heartbeat_interval_seconds must be a number of seconds whose half (the heartbeat's timeout) "
                f"is > 0, got {self.heartbeat_interval_seconds!r}"
            )
        if self.state_db is not None and self.state_dsn is not None:
            raise ValueError(
                f"state_dsn ({masked_dsn(self.state_dsn)!r}) and state_db ({self.state_db!r}) are both set: "
                "an account's state lives in one store, unset one of them"
            )

    @property
    def heartbeat_timeout(self) -> float:
        """How long the heartbeat waits for the loop's metrics: the setting, or half the interval."""
        return self.heartbeat_timeout_seconds or self.heartbeat_interval_seconds / 2

    @property
    def stall_after(self) -> float:
        """How long without a completed cycle counts as a stall: the setting, or 3 intervals of
        the slower of the loop and the heartbeat."""
        return self.stall_after_seconds or 3 * max(self.heartbeat_interval_seconds, self.loop_interval_seconds)

    def guards(self) -> list[Guard]:
        """The guard rules these settings ask for, in the order they are checked."""
        warn = self.guard_warn_fraction
        rules: list[Guard] = [
            MaxDrawdownGuard(self.max_drawdown_percent, trailing=self.drawdown_trailing, warn_at=warn),
            MinEquityGuard(self.min_equity, warn_at=warn),
        ]
        if self.daily_loss_percent is not None:
            rules.append(DailyLossGuard(self.daily_loss_percent, timezone=self.trading_timezone, warn_at=warn))
        return rules

    def limits(self) -> list[Limit]:
        """The pre-trade limits these settings ask for, in the order the gate checks them."""
        rules: list[Limit] = []
        makers: list[tuple[Any, Callable[[Any], Limit]]] = [
            (self.max_order_volume, MaxOrderVolume),
            (self.max_order_notional, MaxOrderNotional),
            (self.max_open_positions, MaxOpenPositions),
            (self.max_symbol_exposure, MaxSymbolExposure),
            (self.max_total_exposure, MaxTotalExposure),
            (self.max_leverage, MaxLeverage),
        ]
        rules.extend(make(value) for value, make in makers if value is not None)
        if self.max_orders_per_second is not None:
            rules.append(OrderRate(self.max_orders_per_second, 1.0, "max_orders_per_second"))
        if self.max_orders_per_day is not None:
            rules.append(OrderRate(self.max_orders_per_day, 86_400.0, "max_orders_per_day"))
        if self.max_trades_per_day is not None:
            rules.append(MaxTradesPerDay(self.max_trades_per_day, self.trading_timezone))
        return rules

    def gate(self) -> Gate:
        """A new order gate with these settings' limits and runaway detector (one per guard)."""
        runaway = None
        if self.runaway_refusals is not None:
            runaway = RunawayLoop(self.runaway_refusals, self.runaway_window_seconds)
        return Gate(self.limits(), runaway=runaway, contract_size=self.contract_size)

    def position_stop(self) -> PositionStop | None:
        """The per-position stop these settings ask for, or None (off unless set)."""
        if self.position_stop_percent is None:
            return None
        return PositionStop(self.position_stop_percent, self.position_stop_basis, self.contract_size)

    def cooldown(self) -> Cooldown | None:
        """The automatic resume these settings ask for, or None (halts latch unless set)."""
        if self.cooldown_rules is None:
            return None
        return Cooldown(self.cooldown_rules, self.cooldown_seconds, self.trading_timezone)

    @classmethod
    def variables(cls) -> tuple[str, ...]:
        """Every environment variable `load` reads, in field order."""
        return tuple(var for field in attrs.fields(cls) for var in field.metadata["env"])

    @classmethod
    def load(
        cls,
        config_file: str | os.PathLike[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        override_names: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Settings from ``config_file`` (TOML, keys are field names), then the environment, then
        ``overrides``. A bad value raises `SettingsError` naming its source, value and what fits;
        an override is named ``argument <field>``, or as ``override_names`` names its field (the
        command-line flag it came from: ``argument --max-drawdown``)."""
        names = {} if override_names is None else override_names
        environ = os.environ if environ is None else environ
        fields = attrs.fields_dict(cls)
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        if config_file is not None:
            for key, value in _read_toml(Path(config_file)).items():
                if key not in fields:
                    raise SettingsError(f"{config_file}: unknown setting {key!r}; known: {', '.join(fields)}")
                values[key], sources[key] = value, f"{config_file}: {key}"
        for name, field in fields.items():
            for var in field.metadata["env"]:
                if var in environ:
                    raw = environ[var]
                    values[name], sources[name] = _parse(var, raw, field.metadata["parse"]), f"{var}={raw!r}"
                    break
        for key, value in overrides.items():
            if key not in fields:
                raise SettingsError(f"unknown setting {key!r}; known: {', '.join(fields)}")
            values[key], sources[key] = value, f"argument {names.get(key, key)}"
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            # Field validators start their message with the field's name.
            source = next((s for n, s in sources.items() if str(exc).startswith(n)), "settings")
            raise SettingsError(f"{source}: {exc}") from exc


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise SettingsError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    return data.get("tradewarden", data) if isinstance(data.get("tradewarden"), dict) else data


_PARSERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "str": ("a non-empty string", str),
    "float": ("a number", float),
    "int": ("a whole number", int),
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(var: str, raw: str, kind: str) -> Any:
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    text = raw.strip()
    if optional and text.lower() in {"", "none", "off"}:
        return None
    if kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise SettingsError(f"{var}={raw!r}: expected true or false (1/0, yes/no, on/off)")
    expected, parse = _PARSERS[kind]
    try:
        return parse(text)
    except ValueError:
        either = " or off (also none, or empty)" if optional else ""
        raise SettingsError(f"{var}={raw!r}: expected {expected}{either}") from None
