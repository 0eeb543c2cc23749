"""A `Broker` over a local MetaTrader 5 terminal, via the Windows-only MetaTrader5 package.

Install with ``pip install 'tradewarden[mt5]'`` on Windows, next to a running terminal with
algorithmic trading allowed. Importing this module anywhere else raises ``ImportError``
saying so; use ``runtime.PaperBroker`` there. The translation itself lives in
``runtime.adapters.mt5_mapping`` and is tested on every platform.
"""

from __future__ import annotations

import sys

if sys.platform != "win32":
    raise ImportError(
        "runtime.adapters.mt5 needs the MetaTrader5 package, which is Windows-only (it talks to a "
        f"MetaTrader 5 terminal running on the same Windows machine); this is {sys.platform}. "
        "Use runtime.PaperBroker here, or run on Windows with: pip install 'tradewarden[mt5]'"
    )

try:
    import MetaTrader5 as mt5
except ImportError as exc:
    raise ImportError(
        "runtime.adapters.mt5 needs the MetaTrader5 package: pip install 'tradewarden[mt5]' "
        "(Windows only). Without it, use runtime.PaperBroker."
    ) from exc

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.adapters import mt5_mapping as mapping
from runtime.broker import AccountSnapshot, BrokerError, Fill, Order, Position

__all__ = ["MT5Broker"]

# The mapping hard-codes MQL5's documented values so it can run without the package; a package
# that disagrees must not send a buy where a sell was meant.
for _name in (
    "TRADE_ACTION_DEAL",
    "ORDER_TYPE_BUY",
    "ORDER_TYPE_SELL",
    "POSITION_TYPE_BUY",
    "POSITION_TYPE_SELL",
    "ORDER_TIME_GTC",
    "ORDER_FILLING_FOK",
    "ORDER_FILLING_IOC",
    "ORDER_FILLING_RETURN",
    "TRADE_RETCODE_DONE",
    "DEAL_TYPE_BUY",
    "DEAL_TYPE_SELL",
    "DEAL_TYPE_BALANCE",
    "DEAL_TYPE_CREDIT",
    "DEAL_TYPE_BONUS",
):
    if getattr(mt5, _name, None) != getattr(mapping, _name):
        raise ImportError(
            f"MetaTrader5.{_name} is {getattr(mt5, _name, None)!r}, expected {getattr(mapping, _name)!r}; "
            "this MetaTrader5 package version is not supported"
        )


def _error_if_none(answer: Any) -> Any:
    # The terminal's last error explains a None answer; asked only then (it is one more IPC call).
    return mt5.last_error() if answer is None else None


class MT5Broker:
    """The `Broker` port on the MetaTrader 5 terminal this process is attached to.

    Construction calls ``mt5.initialize`` (with ``login``/``password``/``server``/``path`` when
    given) and raises `BrokerError` with the terminal's last error when it fails. Every method
    raises `BrokerError` naming the operation, the retcode and the terminal's comment when the
    terminal refuses. Calls are serialised by a lock: the package has one global connection.
    Market deals accept ``deviation`` points of slippage and use the ``filling`` policy
    (``ORDER_FILLING_IOC`` unless the broker needs another). Each deal's comment carries its
    order's client id, so `find_fill` can find it in the last ``history_days`` days of deals.
    """

    def __init__(
        self,
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        path: str | None = None,
        timeout_ms: int = 60_000,
        deviation: int = 20,
        magic: int = 0,
        filling: int = mapping.ORDER_FILLING_IOC,
        history_days: int = 7,
    ) -> None:
        self._lock = threading.Lock()
        self._history_days = history_days
        self._deviation = deviation
        self._magic = magic
        self._filling = filling
        options: dict[str, Any] = {"timeout": timeout_ms}
        if login is not None:
            options["login"] = login
        if password is not None:
            options["password"] = password
        if server is not None:
            options["server"] = server
        args = (path,) if path is not None else ()
        if not mt5.initialize(*args, **options):
            raise BrokerError(f"MetaTrader5.initialize failed (login {login!r}, server {server!r}): {mt5.last_error()!r}")

    def account_equity(self) -> float:
        """The account's equity as the terminal reports it."""
        with self._lock:
            return mapping.equity_from_account(mt5.account_info())

    def open_positions(self) -> list[Position]:
        """Every open position on the account."""
        with self._lock:
            return mapping.positions_from_mt5(mt5.positions_get())

    def price(self, symbol: str) -> float:
        """The latest price of ``symbol`` (the middle of its bid and ask), for the notional limits;
        `BrokerError` when the terminal has no tick for it."""
        with self._lock:
            return mapping.price_from_tick(symbol, mt5.symbol_info_tick(symbol))

    def submit_order(self, order: Order) -> Fill:
        """Send a market deal for ``order`` and return its fill; a deal the server refused raises
        `OrderRejected`, one it may have carried out all the same a plain `BrokerError`."""
        with self._lock:
            tick = mt5.symbol_info_tick(order.symbol)
            request = mapping.market_order_request(
                order, tick, deviation=self._deviation, magic=self._magic, filling=self._filling
            )
            result = mapping.check_order_result(
                mt5.order_send(request), f"market {order.side.value} {order.volume} {order.symbol}", mt5.last_error()
            )
            # The deal names the position it opened or changed; its own times are in the trade
            # server's zone, not UTC, so the fill is stamped with this machine's UTC time.
            deals = mt5.history_deals_get(ticket=result.deal) or ()
            position_id = str(deals[0].position_id) if deals else str(result.order)
            return mapping.fill_from_result(
                result,
                side=order.side,
                symbol=order.symbol,
                position_id=position_id,
                at=datetime.now(UTC),
                realised_pnl=mapping.realised_pnl_from_deals(deals),
                client_id=order.client_id,
            )

    def account_snapshot(self) -> AccountSnapshot:
        """Equity and cumulative net deposits (the balance, credit and bonus deals of the whole
        history), read under one lock; `BrokerError` when either read fails (never a guess)."""
        with self._lock:
            equity = mapping.equity_from_account(mt5.account_info())
            deals = mt5.history_deals_get(datetime(1970, 1, 2, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1))
            return AccountSnapshot(equity, mapping.net_deposits_from_deals(deals, _error_if_none(deals)))

    def find_fill(self, client_id: str) -> Fill | None:
        """The fill of the order sent with ``client_id``, from the deals of the last
        ``history_days`` days (its deal comment carries the client id); None if there is none;
        `BrokerError` when the history cannot be read (the outcome is unknown, not "no fill")."""
        with self._lock:
            now = datetime.now(UTC)
            deals = mt5.history_deals_get(now - timedelta(days=self._history_days), now + timedelta(days=1))
            return mapping.fill_from_deals(deals, client_id, _error_if_none(deals))

    def close_position(self, position_id: str, client_id: str | None = None) -> Fill:
        """Close the whole position with ticket ``position_id`` and return the closing fill; a
        ``client_id`` goes in the deal comment (``tw:<id>``), so `find_fill` finds the close."""
        with self._lock:
            try:
                ticket = int(position_id)
            except (TypeError, ValueError):
                raise BrokerError(f"position_id must be an MT5 ticket number, got {position_id!r}") from None
            found = mt5.positions_get(ticket=ticket)
            if not found:
                raise BrokerError(f"unknown position {position_id!r}: it is not open ({mt5.last_error()!r})")
            raw = found[0]
            comment = mapping.DEFAULT_COMMENT if client_id is None else mapping.order_comment(client_id)
            request = mapping.close_request(
                raw, mt5.symbol_info_tick(raw.symbol), deviation=self._deviation, magic=self._magic, filling=self._filling,
                comment=comment,
            )
            result = mapping.check_order_result(mt5.order_send(request), f"closing position {position_id}", mt5.last_error())
            deals = mt5.history_deals_get(ticket=result.deal) or ()
            return mapping.fill_from_result(
                result,
                side=mapping.side_from_position_type(raw.type).opposite,
                symbol=raw.symbol,
                position_id=position_id,
                at=datetime.now(UTC),
                realised_pnl=mapping.realised_pnl_from_deals(deals),
                client_id=client_id,
            )

    def shutdown(self) -> None:
        """Detach from the terminal (``mt5.shutdown``)."""
        with self._lock:
            mt5.shutdown()

