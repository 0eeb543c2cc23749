"""One frozen payload class per event type: the only place an event's metadata keys are spelled.

A publisher builds the payload and sends ``payload.metadata()``; a reader calls
``Payload.from_event(event)`` and gets typed fields back, or a `ValueError` naming the event type
and the key that is missing or bad. The JSON shape is the journal's: enums are stored as their
values, datetimes as ISO 8601 strings, and extra keys are ignored so that an older reader can read
a newer journal.

To add one: declare the `EventType` member, then a class decorated with ``@payload(EventType.X)``
whose fields are made with `key` (the same name in the metadata unless ``name=`` says otherwise).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import attrs

from runtime.broker import Fill, Position, Side
from runtime.events import Event, EventType
from runtime.heartbeat import HeartbeatMetrics
from runtime.risk.guards import TradingState
from runtime.signals import Signal
from runtime.validation import aware_datetime, boolean, finite_number, member, whole_number

__all__ = [
    "Payload",
    "payload",
    "key",
    "kind_of",
    "PAYLOAD_TYPES",
    "SignalReceived",
    "SignalApproved",
    "TradeExecuted",
    "TradeFailed",
    "PositionClosed",
    "LoopStarted",
    "LoopStopped",
    "Heartbeat",
    "GuardTriggered",
    "TradingStateChanged",
    "ActorRestarted",
    "StallDetected",
]

_KEY = "tradewarden_key"
_Converter = Callable[[Any], Any]


def _string(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string, got {value!r} ({type(value).__name__})")
    return value


def _timestamp(field: str, value: Any) -> datetime:
    # A payload read back from JSON holds the ISO string the publisher wrote.
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{field} must be an ISO 8601 timestamp, got {value!r}") from None
    return aware_datetime(field, value)


def _number(field: str, value: Any) -> float:
    # Checked, not converted: a volume published as 1000 must read back as 1000, not 1000.0.
    finite_number(field, value)
    return value


def _checker(kind: type, field: str) -> _Converter:
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return lambda value: member(field, kind, value)
    checks: dict[type, Callable[[str, Any], Any]] = {
        str: _string,
        int: whole_number,
        float: _number,
        bool: boolean,
        datetime: _timestamp,
    }
    check = checks[kind]
    return lambda value: check(field, value)


def key(kind: type, *, name: str | None = None) -> Any:
    """A payload field holding a ``kind`` (str, int >= 0, float, bool, datetime or a string enum),
    stored under ``name`` in the metadata (the field's own name when None). A value of the wrong
    type raises `TypeError`, a wrong value `ValueError`, both naming the metadata key."""
    return attrs.field(metadata={_KEY: (kind, name)})


def kind_of(field: attrs.Attribute) -> type:
    """The kind a payload field was declared with by `key` (for strategies and tools)."""
    kind: type = field.metadata[_KEY][0]
    return kind


def _key_of(field: attrs.Attribute) -> str:
    return field.metadata[_KEY][1] or field.name


def _check_fields(cls: type, fields: list[attrs.Attribute]) -> list[attrs.Attribute]:
    # attrs calls this while it builds the class: each field gets the check its `key` declared.
    return [
        f.evolve(converter=_checker(f.metadata[_KEY][0], _key_of(f))) if _KEY in f.metadata else f for f in fields
    ]


def _json(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


_P = TypeVar("_P", bound="Payload")


@attrs.frozen(field_transformer=_check_fields)
class Payload:
    """The typed metadata of one event type: `metadata` writes it, `from_event` reads it back."""

    event_type: ClassVar[EventType]

    def metadata(self) -> dict[str, Any]:
        """The event metadata, exactly as the journal has always held it (JSON values only)."""
        return {_key_of(f): _json(getattr(self, f.name)) for f in attrs.fields(type(self))}

    def event(self, loop_id: str, timestamp: datetime | None = None) -> Event:
        """An `Event` of this payload's type carrying it (now, when ``timestamp`` is None)."""
        if timestamp is None:
            return Event(self.event_type, loop_id, self.metadata())
        return Event(self.event_type, loop_id, self.metadata(), timestamp)

    @classmethod
    def from_metadata(cls: type[_P], metadata: Mapping[str, Any]) -> _P:
        """The payload held in ``metadata``; a missing or bad key raises `ValueError` naming it."""
        values = {}
        for field in attrs.fields(cls):
            name = _key_of(field)
            if name not in metadata:
                raise ValueError(f"{cls.event_type.value} metadata is missing {name!r}")
            values[field.name] = metadata[name]
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{cls.event_type.value} metadata is malformed: {exc}") from None

    @classmethod
    def from_event(cls: type[_P], event: Event) -> _P:
        """The payload of ``event``, which must be of this payload's type (else `ValueError`)."""
        if event.event_type is not cls.event_type:
            raise ValueError(
                f"{cls.__name__} reads {cls.event_type.value} events, got a {event.event_type.value} event"
            )
        return cls.from_metadata(event.metadata)

    @staticmethod
    def of_event(event: Event) -> Payload:
        """The payload of ``event``, of whichever class is registered for its type."""
        try:
            kind = PAYLOAD_TYPES[event.event_type]
        except KeyError:
            raise ValueError(f"no payload class is registered for {event.event_type.value} events") from None
        return kind.from_event(event)


PAYLOAD_TYPES: dict[EventType, type[Payload]] = {}
"""The payload class of each event type, as `payload` registered them."""

_T = TypeVar("_T", bound=type[Payload])


def payload(event_type: EventType) -> Callable[[_T], _T]:
    """Class decorator: ``cls`` is the payload of ``event_type`` (one class per type)."""

    def register(cls: _T) -> _T:
        if event_type in PAYLOAD_TYPES:
            raise ValueError(f"{event_type.value} already has a payload class: {PAYLOAD_TYPES[event_type].__name__}")
        cls.event_type = event_type
        PAYLOAD_TYPES[event_type] = cls
        return cls

    return register


@attrs.frozen(field_transformer=_check_fields)
class _SignalPayload(Payload):
    # The signal's own fields, which every signal and trade event carries first.
    signal_id: str = key(str)
    symbol: str = key(str)
    side: Side = key(Side)
    volume: float = key(float)
    reason: str = key(str)

    @staticmethod
    def _signal(signal: Signal) -> dict[str, Any]:
        return {
            "signal_id": signal.signal_id,
            "symbol": signal.symbol,
            "side": signal.side,
            "volume": signal.volume,
            "reason": signal.reason,
        }


@payload(EventType.SIGNAL_RECEIVED)
@attrs.frozen(field_transformer=_check_fields)
class SignalReceived(_SignalPayload):
    """A signal reached the loop: its id, symbol, side, volume and reason."""

    @classmethod
    def of(cls, signal: Signal) -> SignalReceived:
        """The payload announcing ``signal``."""
        return cls(**cls._signal(signal))


@payload(EventType.SIGNAL_APPROVED)
@attrs.frozen(field_transformer=_check_fields)
class SignalApproved(_SignalPayload):
    """The approval policy passed a signal on; the same fields as `SignalReceived`."""

    @classmethod
    def of(cls, signal: Signal) -> SignalApproved:
        """The payload approving ``signal``."""
        return cls(**cls._signal(signal))


@payload(EventType.TRADE_EXECUTED)
@attrs.frozen(field_transformer=_check_fields)
class TradeExecuted(_SignalPayload):
    """A signal's order was filled: the signal, then the position, price, volume and profit of the fill."""

    position_id: str = key(str)
    price: float = key(float)
    filled_volume: float = key(float)
    realised_pnl: float = key(float)

    @classmethod
    def of(cls, signal: Signal, fill: Fill) -> TradeExecuted:
        """The payload of ``signal`` carried out by ``fill``."""
        return cls(
            **cls._signal(signal),
            position_id=fill.position_id,
            price=fill.price,
            filled_volume=fill.volume,
            realised_pnl=fill.realised_pnl,
        )


@payload(EventType.TRADE_FAILED)
@attrs.frozen(field_transformer=_check_fields)
class TradeFailed(_SignalPayload):
    """A signal's order did not go out: ``rejected`` when the trading state refused it, else the
    broker failed; ``error`` says why."""

    rejected: bool = key(bool)
    error: str = key(str)

    @classmethod
    def of(cls, signal: Signal, *, rejected: bool, error: str) -> TradeFailed:
        """The payload of ``signal`` refused (``rejected``) or failed with ``error``."""
        return cls(**cls._signal(signal), rejected=rejected, error=error)


@payload(EventType.POSITION_CLOSED)
@attrs.frozen(field_transformer=_check_fields)
class PositionClosed(Payload):
    """A position was closed by the guard or the fail-safe: what it was, the fill's price and
    profit, why, and on which attempt."""

    position_id: str = key(str)
    symbol: str = key(str)
    side: Side = key(Side)
    volume: float = key(float)
    price: float = key(float)
    realised_pnl: float = key(float)
    reason: str = key(str)
    attempt: int = key(int)

    @classmethod
    def of(cls, position: Position, fill: Fill, reason: str, attempt: int) -> PositionClosed:
        """The payload of ``position`` closed by ``fill``."""
        return cls(
            position.position_id,
            position.symbol,
            position.side,
            position.volume,
            fill.price,
            fill.realised_pnl,
            reason,
            attempt,
        )


@payload(EventType.LOOP_STARTED)
@attrs.frozen(field_transformer=_check_fields)
class LoopStarted(Payload):
    """A loop incarnation started: its number, the trading state it reloaded and its lifetime totals."""

    incarnation: int = key(int)
    trading_state: TradingState = key(TradingState)
    total_signals_lifetime: int = key(int)
    total_trades_lifetime: int = key(int)


@payload(EventType.LOOP_STOPPED)
@attrs.frozen(field_transformer=_check_fields)
class LoopStopped(Payload):
    """A loop incarnation stopped: its number, how it ended and why, and its lifetime totals."""

    incarnation: int = key(int)
    how: str = key(str)
    cause: str = key(str)
    total_signals_lifetime: int = key(int)
    total_trades_lifetime: int = key(int)


@payload(EventType.HEARTBEAT)
@attrs.frozen(field_transformer=_check_fields)
class Heartbeat(Payload):
    """One heartbeat: the loop's eight `HeartbeatMetrics` figures and the beat's number."""

    signals_processed: int = key(int)
    trades_executed: int = key(int)
    error_count: int = key(int)
    loop_duration_ms: float = key(float)
    positions_open: int = key(int)
    account_equity: float = key(float)
    total_signals_lifetime: int = key(int)
    total_trades_lifetime: int = key(int)
    beat: int = key(int)

    @classmethod
    def of(cls, metrics: HeartbeatMetrics, beat: int) -> Heartbeat:
        """The payload of beat number ``beat`` carrying ``metrics``."""
        figures: dict[str, Any] = metrics.as_dict()
        return cls(**figures, beat=beat)

    @property
    def metrics(self) -> HeartbeatMetrics:
        """The loop's figures this beat carried."""
        return HeartbeatMetrics(**{f.name: getattr(self, f.name) for f in attrs.fields(HeartbeatMetrics)})


@payload(EventType.GUARD_TRIGGERED)
@attrs.frozen(field_transformer=_check_fields)
class GuardTriggered(Payload):
    """A guard's breach halted trading: which guard, its reason, the reading's numbers and time."""

    guard: str = key(str)
    reason: str = key(str)
    equity: float = key(float)
    peak_equity: float = key(float)
    drawdown: float = key(float)
    at: datetime = key(datetime)


@payload(EventType.TRADING_STATE_CHANGED)
@attrs.frozen(field_transformer=_check_fields)
class TradingStateChanged(Payload):
    """The trading state moved (metadata keys ``from`` and ``to``), and why."""

    from_state: TradingState = key(TradingState, name="from")
    to_state: TradingState = key(TradingState, name="to")
    reason: str = key(str)


@payload(EventType.ACTOR_RESTARTED)
@attrs.frozen(field_transformer=_check_fields)
class ActorRestarted(Payload):
    """A supervisor restarted a child: its name, the cause, the attempt and the new incarnation."""

    actor: str = key(str)
    cause: str = key(str)
    attempt: int = key(int)
    incarnation: int = key(int)


@payload(EventType.STALL_DETECTED)
@attrs.frozen(field_transformer=_check_fields)
class StallDetected(Payload):
    """The heartbeat found the loop stalled: why, and how many stalls so far."""

    reason: str = key(str)
    stalls: int = key(int)
