"""The broker port: what the runtime asks of any broker, and the values it exchanges."""

from __future__ import annotations

import enum
import inspect
import uuid
from datetime import datetime
from typing import Protocol, runtime_checkable

import attrs

from runtime.errors import TradewardenError
from runtime.validation import attrs_finite, attrs_positive, attrs_text, finite_number, member

__all__ = ["AccountSnapshot", "CLIENT_ID_MAX_LENGTH", "closes_with_client_id", "fill_mismatch", "is_in_process", "read_account", "Broker", "BrokerError", "Fill", "Order", "OrderRejected", "Position", "Side", "new_client_id", "to_side"]


class BrokerError(TradewardenError, RuntimeError):
    """A broker refused or failed an operation; the message says which and why.

    Raised by `Broker.submit_order`, it does not say the order was not executed: a venue may
    time out after the order reached it. Only `OrderRejected` says that."""


class OrderRejected(BrokerError):
    """The broker refused an order and did not execute any of it, and will not: it answered with
    a refusal (not enough margin, the market closed, a volume it does not take, a duplicate).

    Raise it from `Broker.submit_order` only when that is certain. The guard then journals the
    order as failed at once (TRADE_FAILED). Any other error, and a result that is not a `Fill`,
    leaves the order's outcome unknown: the guard looks it up with `Broker.find_fill` until the
    broker says."""


class Side(enum.Enum):
    """Direction of an order or a position."""

    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        """The side that closes this one."""
        return Side.SELL if self is Side.BUY else Side.BUY

    @property
    def sign(self) -> int:
        """+1 for BUY, -1 for SELL."""
        # By value, not ``self is Side.BUY``: a member looked up through its class costs a
        # metaclass call, and brokers and guards ask this for every position on every reading.
        return 1 if self._value_ == "buy" else -1


def to_side(value: object) -> Side:
    """The side ``value`` is or names (``"buy"``, ``"sell"``): ``TypeError`` for a value that is not a
    Side or a string, ``ValueError`` for another string, both naming ``side``."""
    return member("side", Side, value)


def new_client_id() -> str:
    """A fresh client order id: 20 hex digits, unique across processes, short enough for a
    MetaTrader 5 deal comment."""
    return uuid.uuid4().hex[:20]


def _client_id(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a string, got {value!r}")
    if not value or len(value) > CLIENT_ID_MAX_LENGTH or not value.isprintable():
        raise ValueError(
            f"{attribute.name} must be a printable string of 1 to {CLIENT_ID_MAX_LENGTH} characters, got {value!r}"
        )


CLIENT_ID_MAX_LENGTH = 28  # a MetaTrader 5 comment holds 31 characters; the adapter prefixes "tw:"


@attrs.frozen
class Order:
    """A market order: buy or sell ``volume`` units of ``symbol``.

    ``client_id`` is made when the order is, before it is submitted, so the journal can record the
    order before the broker sees it and a restart can find it at the broker afterwards.
    """

    symbol: str = attrs.field(validator=attrs_text)
    side: Side = attrs.field(converter=to_side)
    volume: float = attrs.field(validator=attrs_positive)
    client_id: str = attrs.field(factory=new_client_id, validator=_client_id)


@attrs.frozen
class Position:
    """An open position as the broker reports it; ``position_id`` is the broker's ticket."""

    position_id: str
    symbol: str = attrs.field(validator=attrs_text)
    side: Side = attrs.field(converter=to_side)
    volume: float = attrs.field(validator=attrs_positive)
    entry_price: float = attrs.field(validator=attrs_finite)
    unrealised_pnl: float = attrs.field(default=0.0, validator=attrs_finite)

    def revalued(self, unrealised_pnl: float) -> Position:
        """This position with ``unrealised_pnl`` in place of its own, refused as the constructor
        refuses it (not a finite real number: ``TypeError`` or ``ValueError`` naming the field).

        Only the new value is checked: the other fields are this position's, checked when it was
        made, and a broker revalues every open position on every reading of the account."""
        finite_number("unrealised_pnl", unrealised_pnl)
        copy = object.__new__(Position)
        put = object.__setattr__  # (the frozen class's own __setattr__ refuses; attrs' __init__ does the same)
        put(copy, "position_id", self.position_id)
        put(copy, "symbol", self.symbol)
        put(copy, "side", self.side)
        put(copy, "volume", self.volume)
        put(copy, "entry_price", self.entry_price)
        put(copy, "unrealised_pnl", unrealised_pnl)
        return copy


@attrs.frozen
class Fill:
    """An executed deal: what moved, at what price, and when; ``realised_pnl`` is what it put into
    cash (the profit of any part closed, less its commission) and ``costs`` what trading it cost
    (commission, plus the spread and slippage already in ``price``; 0 where the broker does not say)."""

    position_id: str
    symbol: str
    side: Side = attrs.field(converter=to_side)
    volume: float = attrs.field(validator=attrs_positive)
    price: float = attrs.field(validator=attrs_finite)
    time: datetime
    realised_pnl: float = attrs.field(default=0.0, validator=attrs_finite)
    client_id: str | None = None  # the order's client id; None for a liquidation's close
    costs: float = attrs.field(default=0.0, validator=attrs_finite)  # commission, spread and slippage paid


@attrs.frozen
class AccountSnapshot:
    """The account in one read: its equity and its cumulative net deposits (deposits minus
    withdrawals since the account opened; None when the broker cannot say).

    Read together, so the guard can tell a cash flow from a gain or a loss: a change in
    ``net_deposits`` between two snapshots is money moved in or out, not trading.
    """

    equity: float
    net_deposits: float | None = None


def is_in_process(broker: object) -> bool:
    """True when ``broker``'s own class declares ``in_process = True``: its account lives in this
    process and dies with it. The guard then journals an order and its outcome through the
    emitter, in order with every other event, instead of durably through the store before the
    broker call: whatever would survive the process to need that record is gone with the account.

    Any other broker gets the durable journal before the call: no declaration, any other value,
    and a subclass that does not declare it again itself (a ``PaperBroker`` subclass may send its
    orders to a real venue; it must say it does not).
    """
    return vars(type(broker)).get("in_process") is True


def closes_with_client_id(broker: object) -> bool:
    """True when ``broker.close_position`` takes a ``client_id`` keyword (the port's form); False
    for a broker written against the older one-argument form, which the guard still drives
    without it (its position stop's close then cannot be found again after a crash)."""
    try:
        parameters = inspect.signature(broker.close_position).parameters.values()  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        return False
    return any(p.name == "client_id" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def fill_mismatch(order: Order, fill: Fill) -> str | None:
    """How ``fill`` differs from what ``order`` asked for, or None when it matches: another
    symbol or side, more volume than ordered (less is a partial fill), or another order's client
    id (None, a broker that does not say, is not a mismatch). Each difference names the fill's
    value and the order's."""
    found = []
    if fill.symbol != order.symbol:
        found.append(f"symbol {fill.symbol!r} (ordered {order.symbol!r})")
    if fill.side is not order.side:
        found.append(f"side {fill.side.value} (ordered {order.side.value})")
    if fill.volume > order.volume * (1 + 1e-9):
        found.append(f"volume {fill.volume:g} (ordered {order.volume:g})")
    if fill.client_id is not None and fill.client_id != order.client_id:
        found.append(f"client id {fill.client_id!r} (ordered {order.client_id!r})")
    return "; ".join(found) or None


def read_account(broker: Broker) -> AccountSnapshot:
    """One snapshot of ``broker``'s account: `Broker.account_snapshot` where the broker has it,
    else its equity alone (no cash-flow information)."""
    snapshot = getattr(broker, "account_snapshot", None)
    if snapshot is None:
        return AccountSnapshot(broker.account_equity())
    result: AccountSnapshot = snapshot()
    return result


@runtime_checkable
class Broker(Protocol):
    """What the loop and the guard need from a broker. Any method may raise `BrokerError`.

    A broker may also offer ``account_snapshot() -> AccountSnapshot`` (equity and cumulative net
    deposits in one read, as `PaperBroker` and the MT5 adapter do); then deposits and withdrawals
    are told apart from trading by the guard itself. Without it, tell the guard each cash flow
    (`CashFlow`), which races with readings.

    A broker whose whole state lives in this process and dies with it (`PaperBroker`) may
    declare ``in_process = True`` (see `is_in_process`). A broker that lives anywhere else (the
    MT5 terminal, any live trade server, a test double of one) must not.
    """

    def account_equity(self) -> float:
        """Cash plus the unrealised profit and loss of every open position."""
        ...

    def open_positions(self) -> list[Position]:
        """Every open position."""
        ...

    def submit_order(self, order: Order) -> Fill:
        """Execute a market order and return its fill: the order's symbol, side and volume (less
        only when partly filled), with its ``client_id``.

        Raise `OrderRejected` when the broker certainly did not execute it (the guard journals
        TRADE_FAILED). Any other error (a timeout, a lost connection after the order was sent),
        or a result that is not a `Fill`, leaves its outcome unknown: the guard asks `find_fill`
        at once, and again on its watch for a late fill until the broker knows the order or the
        watch ends, and answers the sender with ``OrderOutcome.unknown``. A fill that does not
        match its order is journaled as the broker reports it and alerted."""
        ...

    def close_position(self, position_id: str, client_id: str | None = None) -> Fill:
        """Close the whole of one open position with an opposite deal and return its fill.

        With a ``client_id`` (the guard's per-position stop journals its close as an order), the
        broker keeps the close under it, so `find_fill` finds it after a restart as for any order.
        """
        ...

    def find_fill(self, client_id: str) -> Fill | None:
        """The fill of the order submitted with ``client_id``, or None when the broker never
        executed one (the guard asks after a restart, to settle an order whose outcome it lost)."""
        ...
