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
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

import attrs

from runtime.broker import Fill, Order, Position, Side
from runtime.events import Event, EventType
from runtime.heartbeat import HeartbeatMetrics
from runtime.risk.guards import TradingState
from runtime.signals import Signal
from runtime.validation import aware_datetime, boolean, finite_number, member, whole_number

__all__ = [
    "Payload",
    "payload",
    "key",
    "is_nullable",
    "kind_of",
    "PAYLOAD_TYPES",
    "SignalReceived",
    "SignalApproved",
    "OrderSubmitted",
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
    "Rebaselined",
    "EquityUnavailable",
    "EquityRestored",
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
    # Every event is made of these: the commonest values (an exact str, a whole number, a
    # finite float) pass one test inline; anything else gets the full check and its message.
    if kind is str:
        return lambda value: value if type(value) is str else check(field, value)
    if kind is int:
        return lambda value: value if type(value) is int and value >= 0 else check(field, value)
    if kind is float:
        return lambda value: value if type(value) is float and value - value == 0.0 else check(field, value)
    return lambda value: check(field, value)


def _nullable(check: _Converter) -> _Converter:
    return lambda value: None if value is None else check(value)


_REQUIRED: Any = attrs.NOTHING


def key(kind: type, *, name: str | None = None, nullable: bool = False, default: Any = _REQUIRED) -> Any:
    """A payload field holding a ``kind`` (str, int >= 0, float, bool, datetime or a string enum),
    stored under ``name`` in the metadata (the field's own name when None). A value of the wrong
    type raises `TypeError`, a wrong value `ValueError`, both naming the metadata key.
    ``nullable`` lets it hold None; with a ``default``, a journal written before the key existed
    still reads (the key is optional)."""
    return attrs.field(default=default, metadata={_KEY: (kind, name, nullable)})


def kind_of(field: attrs.Attribute) -> type:
    """The kind a payload field was declared with by `key` (for strategies and tools)."""
    kind: type = field.metadata[_KEY][0]
    return kind


def is_nullable(field: attrs.Attribute) -> bool:
    """True when a payload field was declared by `key` to hold None as well."""
    return bool(field.metadata[_KEY][2])


def _key_of(field: attrs.Attribute) -> str:
    return field.metadata[_KEY][1] or field.name


def _check_fields(cls: type, fields: list[attrs.Attribute]) -> list[attrs.Attribute]:
    # attrs calls this while it builds the class: each field gets the check its `key` declared.
    # Every field is a `key`: so a payload's metadata is JSON values by construction, and an
    # event is made from it without walking it again (`Payload.event`).
    checked = []
    for f in fields:
        if _KEY not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} must be declared with runtime.payloads.key(...)")
        kind, _, nullable = f.metadata[_KEY]
        check = _checker(kind, _key_of(f))
        checked.append(f.evolve(converter=_nullable(check) if nullable else check))
    return checked


@attrs.frozen
class _Layout:
    # How a payload class's metadata is written, worked out once per class: its keys in field
    # order, a getter of its field values as a tuple, and which of them are not JSON values as
    # they are (enums, datetimes; every other kind was checked to be one when the payload was made).
    # And, for `Payload.events_of`, the exact type of each field's value when every field holds
    # the value it is given (None when one converts it or may hold None).
    keys: tuple[str, ...]
    values: Callable[[Any], tuple[Any, ...]]
    converted: tuple[int, ...]
    exact: tuple[type, ...] | None

    def held_as_given(self, rows: Sequence[tuple[Any, ...]]) -> bool:
        """True when every row of ``rows`` (values, one per field in order) is what the fields'
        checks would let through unchanged: of the declared kinds exactly, whole numbers >= 0,
        floats finite. False for anything else, which the checks themselves must judge. Judged
        a column at a time, each in a few passes that Python makes in C."""
        if self.exact is None or set(map(len, rows)) - {len(self.exact)}:
            return False
        for kind, column in zip(self.exact, zip(*rows)):
            if set(map(type, column)) != {kind}:
                return False
            if kind is int and min(column) < 0:
                return False
            if kind is float and not all(map(math.isfinite, column)):
                return False
        return True


_LAYOUTS: dict[type, _Layout] = {}
_HELD_AS_GIVEN = (str, int, float, bool)  # the kinds whose checks give back the very value they pass


def _layout(cls: type) -> _Layout:
    layout = _LAYOUTS.get(cls)
    if layout is None:
        fields = attrs.fields(cls)
        names = [f.name for f in fields]
        if len(names) > 1:
            values: Callable[[Any], tuple[Any, ...]] = operator.attrgetter(*names)
        else:  # (attrgetter of one name gives the value itself, of none fails)
            values = lambda payload: tuple(getattr(payload, name) for name in names)  # noqa: E731
        kinds = [kind_of(f) for f in fields]
        converted = tuple(
            i for i, kind in enumerate(kinds) if kind is datetime or (isinstance(kind, type) and issubclass(kind, enum.Enum))
        )
        held = all(kind in _HELD_AS_GIVEN for kind in kinds) and not any(map(is_nullable, fields))
        layout = _LAYOUTS[cls] = _Layout(
            tuple(_key_of(f) for f in fields),
            values,
            converted,
            tuple(kinds) if held else None,
        )
    return layout


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
        layout = _layout(type(self))
        values = layout.values(self)
        if layout.converted:
            values = tuple(_json(v) if i in layout.converted else v for i, v in enumerate(values))
        return dict(zip(layout.keys, values))

    def event(self, loop_id: str, timestamp: datetime | None = None) -> Event:
        """An `Event` of this payload's type carrying it (now, when ``timestamp`` is None)."""
        # Every field was checked when the payload was made, so its metadata is JSON already.
        if timestamp is None:
            timestamp = datetime.now(UTC)
        return Event.of_json_metadata(self.event_type, loop_id, self.metadata(), timestamp)

    @classmethod
    def events_of(cls, loop_id: str, entries: Sequence[tuple[datetime, tuple[Any, ...]]]) -> list[Event]:
        """The events ``cls(*values).event(loop_id, at)`` makes for each ``(at, values)`` of
        ``entries``, in order, and the first error it would raise. When every value is one the
        fields would hold as it is given (`_Layout.held_as_given`: the common case, such as a
        replay's heartbeat figures), the metadata is made without a payload and the ids in one go."""
        layout = _layout(cls)
        rows = [values for _, values in entries]
        if not layout.held_as_given(rows):
            return [cls(*values).event(loop_id, at) for at, values in entries]
        keys = layout.keys
        made = [(dict(zip(keys, values)), at if at is not None else datetime.now(UTC)) for at, values in entries]
        return Event.all_of_json_metadata(cls.event_type, loop_id, made)

    @classmethod
    def from_metadata(cls: type[_P], metadata: Mapping[str, Any]) -> _P:
        """The payload held in ``metadata``; a missing or bad key raises `ValueError` naming it."""
        values = {}
        for field in attrs.fields(cls):
            name = _key_of(field)
            if name in metadata:
                values[field.name] = metadata[name]
            elif field.default is attrs.NOTHING:
                raise ValueError(f"{cls.event_type.value} metadata is missing {name!r}")
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


@attrs.frozen(field_transformer=_check_fields)
class _OrderPayload(Payload):
    # What every event of an order says of it first: the signal it came from (when it did) and
    # the order's own symbol, side and volume.
    signal_id: str | None = key(str, nullable=True)
    symbol: str = key(str)
    side: Side = key(Side)
    volume: float = key(float)
    reason: str = key(str)

    def order_fields(self) -> dict[str, Any]:
        """The order's own fields, which its outcome carries on."""
        return {name: getattr(self, name) for name in ("signal_id", "symbol", "side", "volume", "reason")}

    @staticmethod
    def _order(order: Order, signal: Signal | None) -> dict[str, Any]:
        return {
            "signal_id": signal.signal_id if signal is not None else None,
            "symbol": order.symbol,
            "side": order.side,
            "volume": order.volume,
            "reason": signal.reason if signal is not None else "",
        }


@payload(EventType.ORDER_SUBMITTED)
@attrs.frozen(field_transformer=_check_fields)
class OrderSubmitted(_OrderPayload):
    """An order passed the gate and is about to reach the broker, journaled first: its client id,
    the signal it came from, symbol, side, volume and reason. The close of one position by a
    rule of the guard (a position stop) names the ``rule`` and the position it ``closes``, so a
    guard that finds the fill after a restart can journal the position as closed; both are None
    for any other order, and in journals written before they existed."""

    client_order_id: str = key(str)
    rule: str | None = key(str, nullable=True, default=None)
    closes: str | None = key(str, nullable=True, default=None)

    @classmethod
    def of(cls, order: Order, signal: Signal | None) -> OrderSubmitted:
        """The payload of ``order`` (from ``signal``, when it came from one) about to be sent."""
        return cls(**cls._order(order, signal), client_order_id=order.client_id)

    @classmethod
    def closing(cls, order: Order, position_id: str, rule: str, reason: str) -> OrderSubmitted:
        """The payload of ``order``, the close of position ``position_id`` that ``rule`` fired
        for ``reason``."""
        fields = {**cls._order(order, None), "reason": reason}
        return cls(**fields, client_order_id=order.client_id, rule=rule, closes=position_id)


@payload(EventType.TRADE_EXECUTED)
@attrs.frozen(field_transformer=_check_fields)
class TradeExecuted(_OrderPayload):
    """An order was filled: the order, then the position, price, volume and profit of the fill;
    ``reconciled`` when a restarted guard found the fill at the broker; ``realised_pnl`` is what
    the fill put into cash and ``costs`` what trading cost it (`Fill`). Journals written before
    client ids existed read with ``client_order_id`` None, and before costs with ``costs`` 0."""

    position_id: str = key(str)
    price: float = key(float)
    filled_volume: float = key(float)
    realised_pnl: float = key(float)
    client_order_id: str | None = key(str, nullable=True, default=None)
    reconciled: bool = key(bool, default=False)
    costs: float = key(float, default=0.0)

    @classmethod
    def of(cls, submitted: OrderSubmitted, fill: Fill, *, reconciled: bool = False) -> TradeExecuted:
        """The payload of the order ``submitted`` described, carried out by ``fill``."""
        return cls(
            **submitted.order_fields(),
            position_id=fill.position_id,
            price=fill.price,
            filled_volume=fill.volume,
            realised_pnl=fill.realised_pnl,
            client_order_id=submitted.client_order_id,
            reconciled=reconciled,
            costs=fill.costs,
        )


@payload(EventType.TRADE_FAILED)
@attrs.frozen(field_transformer=_check_fields)
class TradeFailed(_OrderPayload):
    """An order did not trade: ``rejected`` when it never reached the broker (the gate refused
    it, or the loop held it back), else the broker failed it; ``error`` says why, and
    ``refused_by`` names the gate's rule that refused it (a limit, or ``trading_state``; None for
    any other failure, and in journals written before it existed)."""

    rejected: bool = key(bool)
    error: str = key(str)
    client_order_id: str | None = key(str, nullable=True, default=None)
    reconciled: bool = key(bool, default=False)
    refused_by: str | None = key(str, nullable=True, default=None)

    @classmethod
    def of(
        cls,
        order: Order,
        signal: Signal | None,
        *,
        rejected: bool,
        error: str,
        reconciled: bool = False,
        refused_by: str | None = None,
    ) -> TradeFailed:
        """The payload of ``order`` (from ``signal``) refused (``rejected``, by the rule
        ``refused_by`` when the gate refused it) or failed with ``error``."""
        return cls(
            **cls._order(order, signal), rejected=rejected, error=error, client_order_id=order.client_id,
            reconciled=reconciled, refused_by=refused_by,
        )

    @classmethod
    def held_back(cls, signal: Signal, error: str) -> TradeFailed:
        """The payload of a signal whose order the loop never sent (``error`` says why)."""
        return cls(**_SignalPayload._signal(signal), rejected=True, error=error)


@payload(EventType.POSITION_CLOSED)
@attrs.frozen(field_transformer=_check_fields)
class PositionClosed(Payload):
    """A position was closed by the guard or the fail-safe: what it was (``side`` is the
    position's; the closing fill is the opposite), the fill's price, profit and costs, why, and on
    which attempt; ``rule`` names the rule that closed that one position on its own
    (``position_stop``; None for a liquidation). Journals written before ``rule`` or ``costs``
    existed read with None and 0."""

    position_id: str = key(str)
    symbol: str = key(str)
    side: Side = key(Side)
    volume: float = key(float)
    price: float = key(float)
    realised_pnl: float = key(float)
    reason: str = key(str)
    attempt: int = key(int)
    rule: str | None = key(str, nullable=True, default=None)
    costs: float = key(float, default=0.0)

    @classmethod
    def found(cls, order: OrderSubmitted, fill: Fill) -> PositionClosed:
        """The payload of the position ``order`` closed (`OrderSubmitted.closing`), by ``fill``
        found at the broker after the guard that sent it had gone."""
        if order.closes is None:
            raise ValueError(f"order {order.client_order_id!r} closes no position")
        return cls(order.closes, order.symbol, order.side.opposite, order.volume, fill.price, fill.realised_pnl,
                   order.reason, 0, order.rule, fill.costs)

    @classmethod
    def of(cls, position: Position, fill: Fill, reason: str, attempt: int, *, rule: str | None = None) -> PositionClosed:
        """The payload of ``position`` closed by ``fill`` (by ``rule``, for a position stop)."""
        return cls(
            position.position_id,
            position.symbol,
            position.side,
            position.volume,
            fill.price,
            fill.realised_pnl,
            reason,
            attempt,
            rule,
            fill.costs,
        )


@payload(EventType.LOOP_STARTED)
@attrs.frozen(field_transformer=_check_fields)
class LoopStarted(Payload):
    """A loop incarnation started: its number and its lifetime totals (the loop holds no trading
    state; journals that carried one still read)."""

    incarnation: int = key(int)
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


@payload(EventType.REBASELINED)
@attrs.frozen(field_transformer=_check_fields)
class Rebaselined(Payload):
    """An operator resumed with a rebaseline: who, and the peak and the day's start before and after."""

    by: str = key(str)
    old_peak: float = key(float)
    new_peak: float = key(float)
    old_day_start: float = key(float)
    new_day_start: float = key(float)


@payload(EventType.EQUITY_UNAVAILABLE)
@attrs.frozen(field_transformer=_check_fields)
class EquityUnavailable(Payload):
    """The guard had no valid equity reading for ``seconds`` (past ``limit_seconds``): the last
    equity it knew, and the trading state it moved to (``action``)."""

    seconds: float = key(float)
    limit_seconds: float = key(float)
    last_equity: float = key(float)
    action: TradingState = key(TradingState)


@payload(EventType.EQUITY_RESTORED)
@attrs.frozen(field_transformer=_check_fields)
class EquityRestored(Payload):
    """Valid equity readings are back after EQUITY_UNAVAILABLE: the first one."""

    equity: float = key(float)

