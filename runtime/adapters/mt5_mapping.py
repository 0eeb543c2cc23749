"""Pure translation between MetaTrader 5's Python structures and the runtime's broker values.

Nothing here imports MetaTrader5: the functions read the named tuples it returns
(``AccountInfo``, ``TradePosition``, ``Tick``, ``OrderSendResult``, ``TradeDeal``) by attribute
and build the request dicts ``order_send`` takes, so they are tested on any platform. The
constants are MQL5's documented values; ``runtime.adapters.mt5`` checks them against the package.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from runtime.broker import BrokerError, Fill, Order, OrderRejected, Position, Side

__all__ = [
    "ORDER_FILLING_FOK",
    "ORDER_FILLING_IOC",
    "ORDER_FILLING_RETURN",
    "ORDER_TIME_GTC",
    "ORDER_TYPE_BUY",
    "ORDER_TYPE_SELL",
    "POSITION_TYPE_BUY",
    "POSITION_TYPE_SELL",
    "TRADE_ACTION_DEAL",
    "TRADE_RETCODE_DONE",
    "CLIENT_COMMENT_PREFIX",
    "CASH_FLOW_DEAL_TYPES",
    "DEAL_TYPE_BALANCE",
    "DEAL_TYPE_BONUS",
    "DEAL_TYPE_BUY",
    "DEAL_TYPE_CREDIT",
    "DEAL_TYPE_SELL",
    "check_order_result",
    "client_id_from_comment",
    "close_request",
    "equity_from_account",
    "fill_from_deals",
    "fill_from_result",
    "market_order_request",
    "market_price",
    "net_deposits_from_deals",
    "order_comment",
    "order_type",
    "position_from_mt5",
    "positions_from_mt5",
    "price_from_tick",
    "realised_pnl_from_deals",
    "side_from_position_type",
]

TRADE_ACTION_DEAL = 1
ORDER_TYPE_BUY = 0
ORDER_TYPE_SELL = 1
POSITION_TYPE_BUY = 0
POSITION_TYPE_SELL = 1
ORDER_TIME_GTC = 0
ORDER_FILLING_FOK = 0
ORDER_FILLING_IOC = 1
ORDER_FILLING_RETURN = 2
TRADE_RETCODE_DONE = 10009
DEAL_TYPE_BUY = 0
DEAL_TYPE_SELL = 1
DEAL_TYPE_BALANCE = 2  # a deposit (profit > 0) or a withdrawal (profit < 0) on the balance
DEAL_TYPE_CREDIT = 3  # credit the broker grants (> 0) or takes back (< 0): part of the equity, not the balance
DEAL_TYPE_BONUS = 6  # a bonus the broker adds to the balance (> 0) or removes (< 0)

# The deals that move money into or out of the account rather than earn or lose it: the owner's
# deposits and withdrawals, and the broker's credit and bonuses (granted and taken back at the
# broker's will, unrelated to the trades). Each changes the equity by its ``profit``, and read as
# trading, taking back a credit would be a drawdown of the whole credit.
# Every other type is what trading and holding positions earned or cost, and counts as profit or
# loss: buys and sells (0, 1), additional charges (4), corrections of a deal's result (5), the
# commissions (7 to 11), interest (12), cancelled deals (13, 14), dividends (15, 16) and tax (17).
# A type MQL5 adds later counts as trading too: a loss the guard sees is never hidden as a flow.
CASH_FLOW_DEAL_TYPES = frozenset({DEAL_TYPE_BALANCE, DEAL_TYPE_CREDIT, DEAL_TYPE_BONUS})

DEFAULT_COMMENT = "tradewarden"
CLIENT_COMMENT_PREFIX = "tw:"  # a deal comment holds 31 characters: the prefix and a client id fit


def order_comment(client_id: str) -> str:
    """The deal comment that carries an order's client id to the trade server and back."""
    return CLIENT_COMMENT_PREFIX + client_id


def client_id_from_comment(comment: Any) -> str | None:
    """The client id a deal comment carries, or None for a deal tradewarden did not send."""
    if isinstance(comment, str) and comment.startswith(CLIENT_COMMENT_PREFIX) and len(comment) > len(CLIENT_COMMENT_PREFIX):
        return comment[len(CLIENT_COMMENT_PREFIX) :]
    return None


def _finite(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BrokerError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def equity_from_account(info: Any) -> float:
    """The account's equity from ``mt5.account_info()``; None (no connection) or a missing or
    non-finite ``equity`` raises `BrokerError`."""
    if info is None:
        raise BrokerError("account_info() returned None: the terminal is not connected to an account")
    return _finite("account_info().equity", getattr(info, "equity", None))


def side_from_position_type(position_type: Any) -> Side:
    """BUY for ``POSITION_TYPE_BUY`` (0), SELL for ``POSITION_TYPE_SELL`` (1)."""
    if position_type == POSITION_TYPE_BUY and not isinstance(position_type, bool):
        return Side.BUY
    if position_type == POSITION_TYPE_SELL and not isinstance(position_type, bool):
        return Side.SELL
    raise BrokerError(f"position type must be 0 (buy) or 1 (sell), got {position_type!r}")


def order_type(side: Side) -> int:
    """``ORDER_TYPE_BUY`` (0) for BUY, ``ORDER_TYPE_SELL`` (1) for SELL."""
    return ORDER_TYPE_BUY if Side(side) is Side.BUY else ORDER_TYPE_SELL


def position_from_mt5(raw: Any) -> Position:
    """A `Position` from one ``TradePosition``: its ticket as ``position_id``, ``price_open`` as
    the entry price and ``profit`` as the unrealised P&L."""
    try:
        return Position(
            position_id=str(raw.ticket),
            symbol=raw.symbol,
            side=side_from_position_type(raw.type),
            volume=raw.volume,
            entry_price=raw.price_open,
            unrealised_pnl=raw.profit,
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise BrokerError(f"cannot read position {raw!r}: {exc}") from exc


def positions_from_mt5(raws: Iterable[Any] | None) -> list[Position]:
    """Every position from ``mt5.positions_get()``; None (the call failed) raises `BrokerError`."""
    if raws is None:
        raise BrokerError("positions_get() returned None: the terminal could not list positions")
    return [position_from_mt5(raw) for raw in raws]


def market_price(side: Side, tick: Any) -> float:
    """The price a market deal on ``side`` fills near: the ask to buy, the bid to sell."""
    if tick is None:
        raise BrokerError("symbol_info_tick() returned None: no price for the symbol (is it in Market Watch?)")
    field = "ask" if Side(side) is Side.BUY else "bid"
    price = _finite(f"tick.{field}", getattr(tick, field, None))
    if price <= 0:
        raise BrokerError(f"tick.{field} must be > 0, got {price!r}")
    return price


def price_from_tick(symbol: str, tick: Any) -> float:
    """The latest price of ``symbol`` from ``mt5.symbol_info_tick``: the middle of the bid and
    the ask (what a position is valued at, neither side's spread). No tick, or a bid or ask that
    is not a finite number > 0, raises `BrokerError` naming the symbol."""
    if tick is None:
        raise BrokerError(f"symbol_info_tick({symbol!r}) returned None: no price for it (is it in Market Watch?)")
    sides = []
    for field in ("bid", "ask"):
        value = _finite(f"tick.{field} of {symbol}", getattr(tick, field, None))
        if value <= 0:
            raise BrokerError(f"tick.{field} of {symbol} must be > 0, got {value!r}")
        sides.append(value)
    return (sides[0] + sides[1]) / 2.0


def market_order_request(
    order: Order,
    tick: Any,
    *,
    deviation: int = 20,
    magic: int = 0,
    filling: int = ORDER_FILLING_IOC,
    comment: str | None = None,
) -> dict[str, Any]:
    """The ``order_send`` request for a market `Order`: a deal at the current ask or bid,
    accepting ``deviation`` points of slippage. The comment carries the order's client id
    (`order_comment`) unless one is given."""
    if not isinstance(order, Order):
        raise TypeError(f"order must be an Order, got {order!r} ({type(order).__name__})")
    text = order_comment(order.client_id) if comment is None else comment
    return _deal(order.symbol, float(order.volume), order.side, tick, deviation, magic, filling, text)


def close_request(
    raw_position: Any,
    tick: Any,
    *,
    deviation: int = 20,
    magic: int = 0,
    filling: int = ORDER_FILLING_IOC,
    comment: str = DEFAULT_COMMENT,
) -> dict[str, Any]:
    """The ``order_send`` request closing the whole of one ``TradePosition``: the opposite deal
    for its full volume, naming its ticket in ``position``, at the bid (closing a buy) or the
    ask (closing a sell)."""
    closing = side_from_position_type(raw_position.type).opposite
    volume = _finite("position volume", raw_position.volume)
    request = _deal(raw_position.symbol, volume, closing, tick, deviation, magic, filling, comment)
    request["position"] = int(raw_position.ticket)
    return request


def _deal(
    symbol: str, volume: float, side: Side, tick: Any, deviation: int, magic: int, filling: int, comment: str
) -> dict[str, Any]:
    # The one shape of a market deal request that opening and closing share.
    return {
        "action": TRADE_ACTION_DEAL,
        "symbol": symbol,
        "volume": volume,
        "type": order_type(side),
        "price": market_price(side, tick),
        "deviation": deviation,
        "magic": magic,
        "comment": comment,
        "type_time": ORDER_TIME_GTC,
        "type_filling": filling,
    }


# Retcodes that are not done yet may still have traded: 10008, the order was placed, and 10010,
# part of it was done. Every other retcode is the trade server refusing the request.
_MAY_HAVE_TRADED = frozenset({10008, 10010})


def check_order_result(result: Any, what: str, last_error: Any = None) -> Any:
    """Return ``result`` when its ``retcode`` is ``TRADE_RETCODE_DONE`` (10009); otherwise raise
    `BrokerError` naming ``what``, the retcode and the server's comment (or ``last_error`` when
    ``order_send`` returned None). It is an `OrderRejected` (nothing traded) when the server
    answered with a refusal; a plain `BrokerError` when the request may have traded all the same
    (no answer, 10008 placed, 10010 done partially), so the guard looks it up by client id."""
    if result is None:
        raise BrokerError(f"{what}: order_send() returned None (last_error {last_error!r})")
    retcode = getattr(result, "retcode", None)
    if retcode != TRADE_RETCODE_DONE:
        comment = getattr(result, "comment", "")
        error = OrderRejected if retcode not in _MAY_HAVE_TRADED else BrokerError
        raise error(f"{what}: refused with retcode {retcode!r} ({comment!r}); {TRADE_RETCODE_DONE} means done")
    return result


def net_deposits_from_deals(deals: Iterable[Any] | None, last_error: Any = None) -> float:
    """Cumulative net deposits from the account's deal history (``history_deals_get``): the sum
    of the ``profit`` of its cash-flow deals (`CASH_FLOW_DEAL_TYPES`: balance, credit and bonus;
    money in positive, money out negative); trades, commissions and charges do not count.

    None, the package's answer when the call failed, raises `BrokerError` naming ``last_error``:
    the net deposits are unknown then, and read as 0 they would fake a withdrawal of everything
    ever deposited (and a deposit of it all back on the next good read)."""
    if deals is None:
        raise BrokerError(
            f"history_deals_get() returned None (last_error {last_error!r}): the account's net deposits are unknown"
        )
    return sum(_finite("deal.profit", deal.profit) for deal in deals if getattr(deal, "type", None) in CASH_FLOW_DEAL_TYPES)


def realised_pnl_from_deals(deals: Iterable[Any] | None) -> float:
    """What the deals put on the balance: profit plus swap, commission and fee of each."""
    total = 0.0
    for deal in deals or ():
        for field in ("profit", "swap", "commission", "fee"):
            total += _finite(f"deal.{field}", getattr(deal, field, 0.0))
    return total


def fill_from_result(
    result: Any,
    *,
    side: Side,
    symbol: str,
    position_id: str,
    at: datetime | None = None,
    realised_pnl: float = 0.0,
    client_id: str | None = None,
) -> Fill:
    """A `Fill` from a done ``OrderSendResult``: its executed ``volume`` and ``price``."""
    return Fill(
        position_id=position_id,
        symbol=symbol,
        side=side,
        volume=_finite("result.volume", result.volume),
        price=_finite("result.price", result.price),
        time=at if at is not None else datetime.now(UTC),
        realised_pnl=realised_pnl,
        client_id=client_id,
    )


def fill_from_deals(deals: Iterable[Any] | None, client_id: str, last_error: Any = None) -> Fill | None:
    """The fill of the order sent with ``client_id``, rebuilt from the account's ``TradeDeal``
    history (``history_deals_get``), or None when no deal carries its comment.

    None for ``deals`` (the call failed) raises `BrokerError` naming ``last_error``: whether the
    order traded is unknown then, and None would tell the guard it was not executed.

    Several deals of one order (a partial fill) make one fill: their volumes summed, their
    price volume-weighted, their profit, swap, commission and fee summed; it is stamped with the
    first deal's time (the trade server's seconds, read as UTC).
    """
    if deals is None:
        raise BrokerError(
            f"history_deals_get() returned None (last_error {last_error!r}): "
            f"whether client id {client_id!r} traded is unknown"
        )
    comment = order_comment(client_id)
    mine = [deal for deal in deals if getattr(deal, "comment", None) == comment]
    if not mine:
        return None
    volume = sum(_finite("deal.volume", deal.volume) for deal in mine)
    if volume <= 0:
        raise BrokerError(f"deals of client id {client_id!r} have a total volume of {volume!r}")
    price = sum(_finite("deal.price", deal.price) * deal.volume for deal in mine) / volume
    first = mine[0]
    if first.type not in (DEAL_TYPE_BUY, DEAL_TYPE_SELL):
        raise BrokerError(f"deal.type must be {DEAL_TYPE_BUY} (buy) or {DEAL_TYPE_SELL} (sell), got {first.type!r}")
    return Fill(
        position_id=str(first.position_id),
        symbol=first.symbol,
        side=Side.BUY if first.type == DEAL_TYPE_BUY else Side.SELL,
        volume=volume,
        price=price,
        time=datetime.fromtimestamp(_finite("deal.time", first.time), UTC),
        realised_pnl=realised_pnl_from_deals(mine),
        client_id=client_id,
    )
