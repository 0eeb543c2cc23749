"""The embedded default broker: fills market orders at the latest price of a replayed series."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import attrs

from runtime.broker import AccountSnapshot, BrokerError, Fill, Order, OrderRejected, Position, Side
from runtime.validation import finite_number, text

__all__ = ["PaperBroker", "PaperCosts"]

# The broker asks every open position's side on every valuation: a module constant, since an
# Enum member looked up through its class costs a metaclass call each time.
_LONG = Side.BUY


def _non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if finite_number(attribute.name, value) < 0:
        raise ValueError(f"{attribute.name} must be a number >= 0, got {value!r}")


def _optional_positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and finite_number(attribute.name, value) <= 0:
        raise ValueError(f"{attribute.name} must be a number > 0 or None (off), got {value!r}")


def _percent_of_notional(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not 0 <= finite_number(attribute.name, value) < 100:
        raise ValueError(f"{attribute.name} must be a percentage in [0, 100), got {value!r}")


@attrs.frozen
class PaperCosts:
    """What trading on a `PaperBroker` costs, and the margin it allows. The default costs nothing
    and allows any leverage (the settings' ``paper_max_leverage`` defaults to 100:1).

    The fed price is the bid (as MetaTrader's bars are): a buy fills at the ask, ``bid + spread``,
    a sell at the bid, and both ``slippage`` worse. Longs are valued at the bid, shorts at the ask.

    * ``commission_per_lot``: account money per unit of volume, on every fill;
    * ``commission_percent``: percent of the fill's notional (volume x price x contract size);
    * ``spread``: the ask less the bid, in price units; used until a price comes with its own;
    * ``point``: the price of one point, to read a spread given in points (the MT5 export's
      ``<SPREAD>`` column, handed to `PaperBroker.update_price` as ``spread_points``); None
      ignores spreads in points;
    * ``slippage``: price units by which every fill is worse than its quote;
    * ``max_leverage``: an order that raises the notional held above ``max_leverage`` x equity
      (after the order's costs) is refused; None allows any. Orders that reduce exposure always pass.
    """

    commission_per_lot: float = attrs.field(default=0.0, validator=_non_negative)
    commission_percent: float = attrs.field(default=0.0, validator=_percent_of_notional)
    spread: float = attrs.field(default=0.0, validator=_non_negative)
    point: float | None = attrs.field(default=None, validator=_optional_positive)
    slippage: float = attrs.field(default=0.0, validator=_non_negative)
    max_leverage: float | None = attrs.field(default=None, validator=_optional_positive)


class PaperBroker:
    """A netting paper account: one position per symbol, filled at the price it was last fed.

    Equity is cash plus unrealised profit and loss, with ``contract_size`` units of the asset per
    unit of volume. An order against an open position reduces, closes or reverses it, realising
    profit and loss into cash. ``costs`` (a `PaperCosts`) sets commission, spread, slippage and
    the leverage limit. Impossible orders (no price yet, non-positive volume, unknown position,
    past the leverage limit) raise `BrokerError` and change nothing; an argument of the wrong type
    raises `TypeError`. Safe to share between threads. Its account lives in this process and
    dies with it (``in_process``, see `runtime.broker.is_in_process`).
    """

    in_process = True

    def __init__(
        self, starting_cash: float = 10_000.0, *, contract_size: float = 1.0, costs: PaperCosts | None = None
    ) -> None:
        self._cash = finite_number("starting_cash", starting_cash)
        if self._cash <= 0:
            raise ValueError(f"starting_cash must be > 0, got {starting_cash!r}")
        self._contract = finite_number("contract_size", contract_size)
        if self._contract <= 0:
            raise ValueError(f"contract_size must be > 0, got {contract_size!r}")
        if costs is not None and not isinstance(costs, PaperCosts):
            raise TypeError(f"costs must be a PaperCosts, got {costs!r} ({type(costs).__name__})")
        self._costs = costs if costs is not None else PaperCosts()
        self._prices: dict[str, float] = {}
        self._spreads: dict[str, float] = {}  # per symbol, when a price came with its spread in points
        self._time = datetime(1970, 1, 1, tzinfo=UTC)
        self._positions: dict[str, Position] = {}
        self._next_ticket = 1
        self._fills: dict[str, Fill] = {}  # by client id, for find_fill
        self._net_deposits = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any, starting_cash: float) -> PaperBroker:
        """A paper account of ``starting_cash`` as `runtime.settings.Settings` describe it: its
        ``contract_size`` and the costs and margin of its ``paper_*`` fields. The one way a
        paper account is made from settings (the replay, `tradewarden run` and its demo), so its
        profit and loss always use the contract size the pre-trade limits value orders with."""
        costs = PaperCosts(
            commission_per_lot=settings.paper_commission_per_lot,
            commission_percent=settings.paper_commission_percent,
            spread=settings.paper_spread,
            point=settings.paper_point,
            slippage=settings.paper_slippage,
            max_leverage=settings.paper_max_leverage,
        )
        return cls(starting_cash, contract_size=settings.contract_size, costs=costs)

    @property
    def costs(self) -> PaperCosts:
        """The account's commission, spread, slippage and leverage limit."""
        return self._costs

    @property
    def contract_size(self) -> float:
        """Units of the asset per unit of volume: a price move times volume times this is profit."""
        return self._contract

    def update_price(
        self, symbol: str, price: float, at: datetime | None = None, *, spread_points: float | None = None
    ) -> None:
        """Feed the next bid of ``symbol`` (finite, > 0); fills and valuations use it from now on.

        ``spread_points`` (finite, >= 0) is the spread that comes with it, in points (a bar's
        ``<SPREAD>``): with `PaperCosts.point` set it is the symbol's spread from now on; None
        keeps the spread the symbol has.
        """
        if type(symbol) is not str or symbol not in self._prices:  # (a symbol priced before was checked then)
            text("symbol", symbol)
        value = finite_number("price", price)
        if value <= 0:
            raise ValueError(f"price must be > 0, got {price!r} for {symbol!r}")
        if spread_points is not None and finite_number("spread_points", spread_points) < 0:
            raise ValueError(f"spread_points must be >= 0, got {spread_points!r} for {symbol!r}")
        with self._lock:
            self._prices[symbol] = value
            if spread_points is not None and self._costs.point is not None:
                self._spreads[symbol] = spread_points * self._costs.point
            if at is not None:
                self._time = at

    def price(self, symbol: str) -> float:
        """The latest price (the bid) fed for ``symbol``."""
        with self._lock:
            return self._price(symbol)

    def spread(self, symbol: str) -> float:
        """The spread of ``symbol`` now, in price units (the ask less the bid)."""
        with self._lock:
            return self._spread(symbol)

    def _price(self, symbol: str) -> float:
        try:
            return self._prices[symbol]
        except KeyError:
            raise BrokerError(f"no price yet for symbol {symbol!r}") from None

    def _spread(self, symbol: str) -> float:
        return self._spreads.get(symbol, self._costs.spread)

    def _pnl(self, position: Position, price: float) -> float:
        # (gain * side.sign, as a branch: the same product, exact either way, without a call.)
        gain = price - position.entry_price
        return (gain if position.side is _LONG else -gain) * position.volume * self._contract

    def _value(self, position: Position, symbol: str | None = None, bid: float = 0.0) -> float:
        # What ``position`` is worth at its symbol's latest bid (at ``bid`` when that is
        # ``symbol``): a long sells at the bid, a short buys back at the ask.
        price = bid if position.symbol == symbol else self._prices[position.symbol]
        if position.side is _LONG:
            return self._pnl(position, price)
        return self._pnl(position, price + self._spread(position.symbol))

    @property
    def cash(self) -> float:
        """Starting cash plus every realised profit and loss, less every commission."""
        with self._lock:
            return self._cash

    def account_equity(self) -> float:
        """Cash plus the unrealised profit and loss of every open position at the latest prices."""
        with self._lock:
            return self._equity()

    def _equity(self, symbol: str | None = None, bid: float = 0.0) -> float:
        # Cash plus every position's value at the latest bids, but at ``bid`` for ``symbol``'s.
        positions = self._positions
        if len(positions) > 1:  # added by sum(), whose rounding Python 3.12 compensates
            return self._cash + sum([self._value(p, symbol, bid) for p in positions.values()])
        # None or one (a replay's every bar): cash plus the one value is cash plus sum() of it
        # (sum() starts from +0, which differs from adding nothing only to a cash of -0.0, never made).
        equity = self._cash
        for position in positions.values():
            equity += self._value(position, symbol, bid)
        return equity

    def _notional(self) -> float:
        return sum(p.volume * self._prices[p.symbol] * self._contract for p in self._positions.values())

    def equity_at(self, symbol: str, price: float) -> float:
        """The equity `account_equity` would give were ``symbol``'s bid ``price`` (nothing
        changes; a short in it is valued at that bid plus its spread, as `account_equity` values
        it): what a replay asks to know the account at a bar's low or high."""
        value = finite_number("price", price)
        with self._lock:
            return self._equity(symbol, value)

    def account_snapshot(self) -> AccountSnapshot:
        """Equity and cumulative net deposits, read together under one lock."""
        with self._lock:
            return AccountSnapshot(self._equity(), self._net_deposits)

    @property
    def net_deposits(self) -> float:
        """Cumulative net deposits (deposits less withdrawals), as `account_snapshot` gives them,
        without valuing the account."""
        with self._lock:
            return self._net_deposits

    def deposit(self, amount: float) -> None:
        """Add ``amount`` (finite, > 0) of cash: a deposit, not a gain."""
        value = finite_number("amount", amount)
        if value <= 0:
            raise ValueError(f"a deposit must be > 0, got {amount!r}")
        with self._lock:
            self._cash += value
            self._net_deposits += value

    def withdraw(self, amount: float) -> None:
        """Take ``amount`` (finite, > 0) of cash out: a withdrawal, not a loss. Refused with
        `BrokerError` when it is more than the free cash (the equity less open losses)."""
        value = finite_number("amount", amount)
        if value <= 0:
            raise ValueError(f"a withdrawal must be > 0, got {amount!r}")
        with self._lock:
            equity = self._equity()
            if value >= equity:
                raise BrokerError(f"withdrawal of {value!r} refused: equity is {equity!r}")
            self._cash -= value
            self._net_deposits -= value

    def open_positions(self) -> list[Position]:
        """Every open position, valued at the latest price (longs at the bid, shorts at the ask)."""
        with self._lock:
            return [p.revalued(self._value(p)) for p in self._positions.values()]

    def positions_at(self, symbol: str, price: float) -> list[Position]:
        """Every open position as `open_positions` would give them were ``symbol``'s bid
        ``price`` (nothing changes): what a replay asks to know whether a per-position stop fires
        at a price inside a bar."""
        value = finite_number("price", price)
        with self._lock:
            return [p.revalued(self._value(p, symbol, value)) for p in self._positions.values()]

    def net_volume(self, symbol: str) -> float:
        """Signed exposure in ``symbol``: positive long, negative short, 0 flat."""
        with self._lock:
            position = self._by_symbol(symbol)
            return 0.0 if position is None else position.side.sign * position.volume

    def _by_symbol(self, symbol: str) -> Position | None:
        for position in self._positions.values():
            if position.symbol == symbol:
                return position
        return None

    def submit_order(self, order: Order) -> Fill:
        """Fill a market order at the latest price; it opens, adds to, reduces or reverses.

        The fill carries the order's client id. A client id already filled is refused: an order
        sent twice (a retry after a lost answer, say) must not trade twice. An order that would
        raise the notional held above `PaperCosts.max_leverage` times equity is refused, naming
        the order, the notional, the equity and the limit.

        Every refusal is an `OrderRejected`: the account is as if the order was never sent.
        """
        if not isinstance(order, Order):
            raise TypeError(f"order must be an Order, got {order!r} ({type(order).__name__})")
        with self._lock:
            if order.client_id in self._fills:
                raise OrderRejected(f"duplicate client id {order.client_id!r}: that order was already filled")
            before = (self._cash, dict(self._positions), self._next_ticket)
            notional_before = self._notional()
            try:
                fill = self._execute(order)
            except BrokerError as exc:  # no price, or none to sell at: refused before anything moved
                raise OrderRejected(str(exc)) from None
            refusal = self._over_leverage(order, notional_before)
            if refusal is not None:
                self._cash, self._positions, self._next_ticket = before  # as if it never traded
                raise OrderRejected(refusal)
            self._fills[order.client_id] = fill
            return fill

    def _over_leverage(self, order: Order, notional_before: float) -> str | None:
        limit = self._costs.max_leverage
        notional = self._notional()
        if limit is None or notional <= notional_before:
            return None
        equity = self._equity()
        if equity > 0 and notional <= limit * equity:
            return None
        leverage = f"{notional / equity:,.1f}:1" if equity > 0 else "unbounded (equity <= 0)"
        return (
            f"order refused: {order.side.value} {order.volume:g} {order.symbol} would hold notional "
            f"{notional:,.2f} on equity {equity:,.2f}, leverage {leverage}, over max_leverage {limit:g}:1"
        )

    def _fill_price(self, symbol: str, side: Side) -> float:
        bid = self._price(symbol)
        if side is Side.BUY:
            return bid + self._spread(symbol) + self._costs.slippage
        price = bid - self._costs.slippage
        if price <= 0:
            raise BrokerError(f"cannot sell {symbol!r}: the bid {bid!r} less slippage {self._costs.slippage!r} is <= 0")
        return price

    def _charge(self, symbol: str, volume: float, price: float) -> tuple[float, float]:
        # (commission, costs): the commission leaves cash now; the costs add what the spread and
        # slippage took through the price, against the bid.
        notional = volume * price * self._contract
        commission = volume * self._costs.commission_per_lot + notional * self._costs.commission_percent / 100.0
        self._cash -= commission
        paid = abs(price - self._prices[symbol]) * volume * self._contract
        return commission, commission + paid

    def _execute(self, order: Order) -> Fill:
        price = self._fill_price(order.symbol, order.side)
        commission, costs = self._charge(order.symbol, order.volume, price)
        held = self._by_symbol(order.symbol)
        if held is None:
            ticket = self._open(order.symbol, order.side, order.volume, price)
            return Fill(ticket, order.symbol, order.side, order.volume, price, self._time, 0.0 - commission, order.client_id, costs)
        if held.side is order.side:
            volume = held.volume + order.volume
            entry = (held.entry_price * held.volume + price * order.volume) / volume
            self._positions[held.position_id] = Position(held.position_id, held.symbol, held.side, volume, entry)
            return Fill(
                held.position_id, order.symbol, order.side, order.volume, price, self._time, 0.0 - commission,
                order.client_id, costs,
            )
        closed = min(held.volume, order.volume)
        realised = self._reduce(held, closed, price)
        remainder = order.volume - closed
        # The same tolerance as _reduce: a rounding remainder must not open a dust position.
        if remainder > 1e-12 * order.volume:
            self._open(order.symbol, order.side, remainder, price)
        return Fill(
            held.position_id, order.symbol, order.side, order.volume, price, self._time, realised - commission,
            order.client_id, costs,
        )

    def find_fill(self, client_id: str) -> Fill | None:
        """The fill of the order submitted with ``client_id``, or None if none was filled."""
        with self._lock:
            return self._fills.get(client_id)

    def close_position(self, position_id: str, client_id: str | None = None) -> Fill:
        """Close the whole position with ticket ``position_id`` at the latest price (never refused
        for leverage: it only reduces). With a ``client_id`` the fill carries it and `find_fill`
        finds it; a client id already filled is refused, as for an order."""
        text("position_id", position_id)
        if client_id is not None:
            text("client_id", client_id)
        with self._lock:
            if client_id is not None and client_id in self._fills:
                raise BrokerError(f"duplicate client id {client_id!r}: that order was already filled")
            held = self._positions.get(position_id)
            if held is None:
                raise BrokerError(f"unknown position {position_id!r}: it is not open")
            side = held.side.opposite
            price = self._fill_price(held.symbol, side)
            commission, costs = self._charge(held.symbol, held.volume, price)
            realised = self._reduce(held, held.volume, price)
            fill = Fill(position_id, held.symbol, side, held.volume, price, self._time, realised - commission, client_id, costs)
            if client_id is not None:
                self._fills[client_id] = fill
            return fill

    def _open(self, symbol: str, side: Side, volume: float, price: float) -> str:
        ticket = str(self._next_ticket)
        self._next_ticket += 1
        self._positions[ticket] = Position(ticket, symbol, side, volume, price)
        return ticket

    def _reduce(self, held: Position, volume: float, price: float) -> float:
        realised = self._pnl(held, price) * (volume / held.volume)
        self._cash += realised
        left = held.volume - volume
        if left <= 1e-12 * held.volume:
            del self._positions[held.position_id]
        else:
            self._positions[held.position_id] = Position(held.position_id, held.symbol, held.side, left, held.entry_price)
        return realised
