"""The embedded default broker: fills market orders at the latest price of a replayed series."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime

from runtime.broker import AccountSnapshot, BrokerError, Fill, Order, Position, Side
from runtime.validation import finite_number, text

__all__ = ["PaperBroker"]


class PaperBroker:
    """A netting paper account: one position per symbol, filled at the price it was last fed.

    Equity is cash plus unrealised profit and loss, with ``contract_size`` units of the asset per
    unit of volume. An order against an open position reduces, closes or reverses it, realising
    profit and loss into cash. Impossible orders (no price yet, non-positive volume, unknown
    position) raise `BrokerError` and change nothing; an argument of the wrong type raises
    `TypeError`. Safe to share between threads.
    """

    def __init__(self, starting_cash: float = 10_000.0, *, contract_size: float = 1.0) -> None:
        self._cash = finite_number("starting_cash", starting_cash)
        if self._cash <= 0:
            raise ValueError(f"starting_cash must be > 0, got {starting_cash!r}")
        self._contract = finite_number("contract_size", contract_size)
        if self._contract <= 0:
            raise ValueError(f"contract_size must be > 0, got {contract_size!r}")
        self._prices: dict[str, float] = {}
        self._time = datetime(1970, 1, 1, tzinfo=UTC)
        self._positions: dict[str, Position] = {}
        self._tickets = itertools.count(1)
        self._fills: dict[str, Fill] = {}  # by client id, for find_fill
        self._net_deposits = 0.0
        self._lock = threading.Lock()

    def update_price(self, symbol: str, price: float, at: datetime | None = None) -> None:
        """Feed the next price of ``symbol`` (finite, > 0); fills and valuations use it from now on."""
        text("symbol", symbol)
        value = finite_number("price", price)
        if value <= 0:
            raise ValueError(f"price must be > 0, got {price!r} for {symbol!r}")
        with self._lock:
            self._prices[symbol] = value
            if at is not None:
                self._time = at

    def price(self, symbol: str) -> float:
        """The latest price fed for ``symbol``."""
        with self._lock:
            return self._price(symbol)

    def _price(self, symbol: str) -> float:
        try:
            return self._prices[symbol]
        except KeyError:
            raise BrokerError(f"no price yet for symbol {symbol!r}") from None

    def _pnl(self, position: Position, price: float) -> float:
        return (price - position.entry_price) * position.side.sign * position.volume * self._contract

    @property
    def cash(self) -> float:
        """Starting cash plus every realised profit and loss."""
        with self._lock:
            return self._cash

    def account_equity(self) -> float:
        """Cash plus the unrealised profit and loss of every open position at the latest prices."""
        with self._lock:
            return self._equity()

    def _equity(self) -> float:
        return self._cash + sum(self._pnl(p, self._prices[p.symbol]) for p in self._positions.values())

    def equity_at(self, symbol: str, price: float) -> float:
        """The equity `account_equity` would give were ``symbol`` priced at ``price`` (nothing
        changes): what a replay asks to know the account at a bar's low or high."""
        value = finite_number("price", price)
        with self._lock:
            prices = self._prices
            return self._cash + sum(
                self._pnl(p, value if p.symbol == symbol else prices[p.symbol]) for p in self._positions.values()
            )

    def account_snapshot(self) -> AccountSnapshot:
        """Equity and cumulative net deposits, read together under one lock."""
        with self._lock:
            return AccountSnapshot(self._equity(), self._net_deposits)

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
        """Every open position, valued at the latest price."""
        with self._lock:
            return [
                Position(p.position_id, p.symbol, p.side, p.volume, p.entry_price, self._pnl(p, self._prices[p.symbol]))
                for p in self._positions.values()
            ]

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
        sent twice (a retry after a lost answer, say) must not trade twice.
        """
        if not isinstance(order, Order):
            raise TypeError(f"order must be an Order, got {order!r} ({type(order).__name__})")
        with self._lock:
            if order.client_id in self._fills:
                raise BrokerError(f"duplicate client id {order.client_id!r}: that order was already filled")
            fill = self._execute(order)
            self._fills[order.client_id] = fill
            return fill

    def _execute(self, order: Order) -> Fill:
        price = self._price(order.symbol)
        held = self._by_symbol(order.symbol)
        if held is None:
            return self._open(order.symbol, order.side, order.volume, price, order.client_id)
        if held.side is order.side:
            volume = held.volume + order.volume
            entry = (held.entry_price * held.volume + price * order.volume) / volume
            self._positions[held.position_id] = Position(held.position_id, held.symbol, held.side, volume, entry)
            return Fill(held.position_id, order.symbol, order.side, order.volume, price, self._time, 0.0, order.client_id)
        closed = min(held.volume, order.volume)
        realised = self._reduce(held, closed, price)
        remainder = order.volume - closed
        # The same tolerance as _reduce: a rounding remainder must not open a dust position.
        if remainder > 1e-12 * order.volume:
            self._open(order.symbol, order.side, remainder, price)
        return Fill(held.position_id, order.symbol, order.side, order.volume, price, self._time, realised, order.client_id)

    def find_fill(self, client_id: str) -> Fill | None:
        """The fill of the order submitted with ``client_id``, or None if none was filled."""
        with self._lock:
            return self._fills.get(client_id)

    def close_position(self, position_id: str) -> Fill:
        """Close the whole position with ticket ``position_id`` at the latest price."""
        text("position_id", position_id)
        with self._lock:
            held = self._positions.get(position_id)
            if held is None:
                raise BrokerError(f"unknown position {position_id!r}: it is not open")
            price = self._price(held.symbol)
            realised = self._reduce(held, held.volume, price)
            return Fill(position_id, held.symbol, held.side.opposite, held.volume, price, self._time, realised)

    def _open(self, symbol: str, side: Side, volume: float, price: float, client_id: str | None = None) -> Fill:
        ticket = str(next(self._tickets))
        self._positions[ticket] = Position(ticket, symbol, side, volume, price)
        return Fill(ticket, symbol, side, volume, price, self._time, 0.0, client_id)

    def _reduce(self, held: Position, volume: float, price: float) -> float:
        realised = self._pnl(held, price) * (volume / held.volume)
        self._cash += realised
        left = held.volume - volume
        if left <= 1e-12 * held.volume:
            del self._positions[held.position_id]
        else:
            self._positions[held.position_id] = Position(held.position_id, held.symbol, held.side, left, held.entry_price)
        return realised
