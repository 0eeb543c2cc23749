"""The MetaTrader 5 adapter: its pure mapping on MT5-shaped tuples, and the clear ImportError off Windows."""

from __future__ import annotations

import importlib
import sys
import types
from collections import namedtuple
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from actor_helpers import WAIT, LogLines

from actors import RunCycle, start_trading_system
from runtime import (
    BrokerError,
    Fill,
    ListSignalSource,
    MemoryStore,
    Order,
    OrderRejected,
    Position,
    Settings,
    Side,
    TradingState,
)
from runtime.adapters import mt5_mapping as m

# The shapes (field names and order) the MetaTrader5 package returns.
AccountInfo = namedtuple("AccountInfo", "login balance credit profit equity margin margin_free currency")
TradePosition = namedtuple(
    "TradePosition",
    "ticket time time_msc time_update time_update_msc type magic identifier reason volume price_open "
    "sl tp price_current swap profit symbol comment external_id",
)
Tick = namedtuple("Tick", "time bid ask last volume time_msc flags volume_real")
OrderSendResult = namedtuple(
    "OrderSendResult", "retcode deal order volume price bid ask comment request_id retcode_external request"
)
TradeDeal = namedtuple(
    "TradeDeal",
    "ticket order time time_msc type entry magic position_id reason volume price commission swap profit fee "
    "symbol comment external_id",
)


def _position(ticket: int = 5001, kind: int = 0, volume: float = 0.3, profit: float = -12.5) -> TradePosition:
    return TradePosition(
        ticket, 1_700_000_000, 1_700_000_000_000, 0, 0, kind, 0, ticket, 3, volume, 1.0842, 0.0, 0.0, 1.0815, 0.0,
        profit, "EURUSD", "", "",
    )


TICK = Tick(1_700_000_000, 1.08150, 1.08162, 0.0, 0, 1_700_000_000_000, 6, 0.0)


def _result(retcode: int = 10009, comment: str = "Request executed") -> OrderSendResult:
    return OrderSendResult(retcode, 777, 888, 0.3, 1.0815, 1.0815, 1.08162, comment, 1, 0, None)


# -- pure mapping ------------------------------------------------------------------------------------


def _deal(comment: str, volume: float, price: float, profit: float = 0.0, kind: int = 0) -> TradeDeal:
    return TradeDeal(
        901, 888, 1_700_000_000, 0, kind, 0, 0, 5001, 3, volume, price, -0.5, 0.0, profit, 0.0, "EURUSD", comment, ""
    )


def test_a_client_id_travels_in_the_deal_comment_and_back() -> None:
    longest = "f" * 28
    assert m.order_comment(longest) == "tw:" + longest and len(m.order_comment(longest)) == 31
    assert m.client_id_from_comment("tw:abc") == "abc"
    assert [m.client_id_from_comment(c) for c in ("tradewarden", "tw:", "", None)] == [None, None, None, None]


def test_an_order_is_found_again_in_the_deal_history_by_its_client_id() -> None:
    deals = [_deal("tw:other", 9.0, 2.0), _deal("tw:c1", 0.1, 1.10, 1.0), _deal("tw:c1", 0.3, 1.20, 2.0)]
    fill = m.fill_from_deals(deals, "c1")
    assert fill is not None and fill.price == pytest.approx(1.175)
    assert fill == Fill(
        "5001", "EURUSD", Side.BUY, 0.4, fill.price, datetime.fromtimestamp(1_700_000_000, UTC), 2.0, "c1"
    )
    assert m.fill_from_deals(deals, "never-sent") is None


def test_a_failed_history_call_is_an_unknown_outcome_never_no_fill() -> None:
    # None is the package's answer when history_deals_get fails: whether the order traded is
    # unknown, and "no fill" would have the guard journal it as not executed.
    with pytest.raises(
        BrokerError,
        match=r"^history_deals_get\(\) returned None \(last_error \(-10004, 'No IPC connection'\)\): "
        r"whether client id 'c1' traded is unknown$",
    ):
        m.fill_from_deals(None, "c1", (-10004, "No IPC connection"))


def test_net_deposits_are_the_balance_credit_and_bonus_deals() -> None:
    kinds = {
        m.DEAL_TYPE_BALANCE: 10_000.0,  # a deposit
        m.DEAL_TYPE_CREDIT: 2_000.0,  # credit granted: in the equity, not the balance
        m.DEAL_TYPE_BONUS: 500.0,
        m.DEAL_TYPE_BUY: -120.0,
        m.DEAL_TYPE_SELL: 300.0,
        4: -30.0,  # an additional charge
        5: -15.0,  # a correction of a deal's result
        7: -7.0,  # a commission
        12: 3.0,  # interest
        17: -2.0,  # tax
    }
    deals = [_deal("", 0.0, 0.0, profit, kind) for kind, profit in kinds.items()]
    assert m.net_deposits_from_deals(deals) == 12_500.0
    taken_back = [*deals, _deal("", 0.0, 0.0, -2_000.0, m.DEAL_TYPE_CREDIT), _deal("", 0.0, 0.0, -500.0, m.DEAL_TYPE_BONUS)]
    assert m.net_deposits_from_deals(taken_back) == 10_000.0
    with pytest.raises(BrokerError, match=r"^deal\.profit must be a finite number, got nan$"):
        m.net_deposits_from_deals([_deal("", 0.0, 0.0, float("nan"), m.DEAL_TYPE_CREDIT)])


def test_a_failed_history_call_is_unknown_net_deposits_never_zero() -> None:
    with pytest.raises(
        BrokerError,
        match=r"^history_deals_get\(\) returned None \(last_error \(-10004, 'No IPC connection'\)\): "
        r"the account's net deposits are unknown$",
    ):
        m.net_deposits_from_deals(None, (-10004, "No IPC connection"))


def test_a_deal_of_unknown_type_is_refused_naming_it() -> None:
    with pytest.raises(BrokerError, match=r"^deal\.type must be 0 \(buy\) or 1 \(sell\), got 7$"):
        m.fill_from_deals([_deal("tw:c1", 0.1, 1.1, kind=7)], "c1")


def test_equity_comes_from_account_info() -> None:
    assert m.equity_from_account(AccountInfo(1, 10_000.0, 0.0, -250.5, 9_749.5, 120.0, 9_629.5, "GBP")) == 9_749.5
    with pytest.raises(BrokerError, match="account_info\\(\\) returned None"):
        m.equity_from_account(None)
    with pytest.raises(BrokerError, match="account_info\\(\\).equity must be a finite number, got nan"):
        m.equity_from_account(AccountInfo(1, 0.0, 0.0, 0.0, float("nan"), 0.0, 0.0, "GBP"))


def test_positions_map_type_ticket_volume_price_and_profit() -> None:
    buy, sell = _position(5001, 0, 0.3, -12.5), _position(5002, 1, 1.0, 40.0)
    assert m.positions_from_mt5((buy, sell)) == [
        Position("5001", "EURUSD", Side.BUY, 0.3, 1.0842, -12.5),
        Position("5002", "EURUSD", Side.SELL, 1.0, 1.0842, 40.0),
    ]
    assert m.positions_from_mt5(()) == []
    with pytest.raises(BrokerError, match="positions_get\\(\\) returned None"):
        m.positions_from_mt5(None)


def test_an_unknown_position_type_or_bad_volume_is_refused_naming_it() -> None:
    with pytest.raises(BrokerError, match="position type must be 0 \\(buy\\) or 1 \\(sell\\), got 7"):
        m.position_from_mt5(_position(kind=7))
    with pytest.raises(BrokerError, match="volume must be > 0"):
        m.position_from_mt5(_position(volume=0.0))


def test_a_market_order_request_buys_at_the_ask_and_sells_at_the_bid() -> None:
    buy = m.market_order_request(Order("EURUSD", Side.BUY, 0.5, client_id="c0ffee"), TICK, deviation=10, magic=42)
    assert buy == {
        "action": m.TRADE_ACTION_DEAL,
        "symbol": "EURUSD",
        "volume": 0.5,
        "type": m.ORDER_TYPE_BUY,
        "price": TICK.ask,
        "deviation": 10,
        "magic": 42,
        "comment": "tw:c0ffee",
        "type_time": m.ORDER_TIME_GTC,
        "type_filling": m.ORDER_FILLING_IOC,
    }
    sell = m.market_order_request(Order("EURUSD", Side.SELL, 0.5), TICK)
    assert (sell["type"], sell["price"]) == (m.ORDER_TYPE_SELL, TICK.bid)


def test_closing_a_buy_sells_its_ticket_at_the_bid_and_a_sell_buys_at_the_ask() -> None:
    close_buy = m.close_request(_position(5001, 0, 0.3), TICK, deviation=5, filling=m.ORDER_FILLING_RETURN)
    assert close_buy == {
        "action": 1,
        "symbol": "EURUSD",
        "volume": 0.3,
        "type": 1,
        "position": 5001,
        "price": TICK.bid,
        "deviation": 5,
        "magic": 0,
        "comment": "tradewarden",
        "type_time": 0,
        "type_filling": 2,
    }
    close_sell = m.close_request(_position(5002, 1, 1.0), TICK)
    assert (close_sell["type"], close_sell["position"], close_sell["price"]) == (0, 5002, TICK.ask)


def test_no_tick_means_no_price() -> None:
    with pytest.raises(BrokerError, match="symbol_info_tick\\(\\) returned None"):
        m.market_price(Side.BUY, None)
    with pytest.raises(BrokerError, match="tick.bid must be > 0, got 0.0"):
        m.market_price(Side.SELL, TICK._replace(bid=0.0))


def test_only_retcode_done_is_success() -> None:
    done = _result()
    assert m.check_order_result(done, "closing position 5001") is done
    with pytest.raises(OrderRejected, match=r"closing position 5001: refused with retcode 10018 \('Market closed'\)"):
        m.check_order_result(_result(10018, "Market closed"), "closing position 5001")
    # A partial fill is not a done close, and no rejection either: part of it traded.
    with pytest.raises(BrokerError, match=r"retcode 10010") as partial:
        m.check_order_result(_result(10010, "partial"), "closing position 5001")
    with pytest.raises(BrokerError, match=r"retcode 10008") as placed:  # placed: it may still trade
        m.check_order_result(_result(10008, "placed"), "market buy")
    with pytest.raises(BrokerError, match=r"order_send\(\) returned None \(last_error \(-2, 'Invalid params'\)\)") as none:
        m.check_order_result(None, "market buy", (-2, "Invalid params"))
    assert [type(e.value) for e in (partial, placed, none)] == [BrokerError] * 3


def test_a_fill_and_its_realised_pnl_come_from_the_result_and_deals() -> None:
    deal = TradeDeal(777, 888, 0, 0, 1, 1, 0, 5001, 3, 0.3, 1.0815, -0.6, -0.2, -8.1, 0.0, "EURUSD", "", "")
    pnl = m.realised_pnl_from_deals([deal])
    assert pnl == pytest.approx(-8.9)
    at = datetime(2024, 5, 1, tzinfo=UTC)
    fill = m.fill_from_result(_result(), side=Side.SELL, symbol="EURUSD", position_id="5001", at=at, realised_pnl=pnl)
    assert (fill.position_id, fill.side, fill.volume, fill.price, fill.time) == ("5001", Side.SELL, 0.3, 1.0815, at)
    assert m.realised_pnl_from_deals(None) == 0.0


# -- the adapter module ------------------------------------------------------------------------------


@pytest.fixture
def fresh_mt5_import() -> Iterator[None]:
    sys.modules.pop("runtime.adapters.mt5", None)
    yield
    sys.modules.pop("runtime.adapters.mt5", None)


@pytest.mark.skipif(sys.platform == "win32", reason="the refusal is for platforms without MetaTrader5")
def test_importing_the_adapter_off_windows_says_why_and_what_to_use(fresh_mt5_import: None) -> None:
    with pytest.raises(ImportError) as info:
        importlib.import_module("runtime.adapters.mt5")
    message = str(info.value)
    assert "MetaTrader5" in message and "Windows-only" in message
    assert "runtime.PaperBroker" in message


class _Terminal(types.ModuleType):
    """A stand-in for the MetaTrader5 package (the third-party terminal), holding one account."""

    TRADE_ACTION_DEAL, ORDER_TYPE_BUY, ORDER_TYPE_SELL, POSITION_TYPE_BUY, POSITION_TYPE_SELL = 1, 0, 1, 0, 1
    ORDER_TIME_GTC, ORDER_FILLING_FOK, ORDER_FILLING_IOC, ORDER_FILLING_RETURN = 0, 0, 1, 2
    TRADE_RETCODE_DONE = 10009
    DEAL_TYPE_BUY, DEAL_TYPE_SELL, DEAL_TYPE_BALANCE, DEAL_TYPE_CREDIT, DEAL_TYPE_BONUS = 0, 1, 2, 3, 6

    def __init__(self) -> None:
        super().__init__("MetaTrader5")
        self.positions = [_position(5001, 0, 0.3)]
        self.sent: list[dict[str, Any]] = []
        self.equity = 9_987.5
        self.deposits: list[TradeDeal] = []  # balance deals, in the history before every trade
        self.history_fails = 0  # how many history_deals_get calls to come fail (answer None)
        self.error = (1, "Success")

    def initialize(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def last_error(self) -> tuple[int, str]:
        return self.error

    def account_info(self) -> AccountInfo:
        return AccountInfo(1, 10_000.0, 0.0, self.equity - 10_000.0, self.equity, 0.0, 0.0, "GBP")

    def positions_get(self, ticket: int | None = None) -> tuple[TradePosition, ...]:
        return tuple(p for p in self.positions if ticket is None or p.ticket == ticket)

    def symbol_info_tick(self, symbol: str) -> Tick:
        return TICK

    def order_send(self, request: dict[str, Any]) -> OrderSendResult:
        self.sent.append(request)
        return OrderSendResult(10009, 777, 888, request["volume"], request["price"], 0, 0, "done", 1, 0, None)

    def history_deals_get(self, *window: datetime, ticket: int | None = None) -> tuple[TradeDeal, ...] | None:
        if self.history_fails:  # the package's documented answer to an error, its cause in last_error
            self.history_fails -= 1
            self.error = (-10004, "No IPC connection")
            return None
        self.error = (1, "Success")
        if window:  # the history by time: the deposits, then every deal sent with its request's comment
            return (*self.deposits, *(
                TradeDeal(777, 888, 1_700_000_000, 0, r["type"], 0, 0, 5001, 3, r["volume"], r["price"], 0.0, 0.0, 0.0, 0.0,
                          r["symbol"], r["comment"], "")
                for r in self.sent
            ))
        return (TradeDeal(ticket, 888, 0, 0, 1, 1, 0, 5001, 3, 0.3, 1.0815, 0.0, 0.0, -8.1, 0.0, "EURUSD", "", ""),)

    def shutdown(self) -> None:
        pass


@pytest.fixture
def terminal(fresh_mt5_import: None, monkeypatch: pytest.MonkeyPatch) -> _Terminal:
    """The stand-in terminal, installed as the MetaTrader5 package on a platform taken for Windows."""
    made = _Terminal()
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setitem(sys.modules, "MetaTrader5", made)
    return made


def test_the_adapter_drives_a_terminal_through_the_mapping(terminal: _Terminal) -> None:
    broker = importlib.import_module("runtime.adapters.mt5").MT5Broker(deviation=7)
    assert broker.account_equity() == 9_987.5
    assert [p.position_id for p in broker.open_positions()] == ["5001"]
    fill = broker.close_position("5001")
    assert terminal.sent[-1]["position"] == 5001 and terminal.sent[-1]["deviation"] == 7
    assert (fill.side, fill.price, fill.realised_pnl) == (Side.SELL, TICK.bid, -8.1)
    bought = broker.submit_order(Order("EURUSD", Side.BUY, 0.1, client_id="c-42"))
    assert (bought.position_id, bought.price, bought.client_id) == ("5001", TICK.ask, "c-42")
    assert terminal.sent[-1]["comment"] == "tw:c-42"
    found = broker.find_fill("c-42")
    assert (found.side, found.volume, found.price, found.client_id) == (Side.BUY, 0.1, TICK.ask, "c-42")
    assert broker.find_fill("never-sent") is None
    with pytest.raises(BrokerError, match="unknown position '9'"):
        broker.close_position("9")


def test_a_close_with_a_client_id_carries_it_in_the_deal_comment_and_is_found_again(terminal: _Terminal) -> None:
    broker = importlib.import_module("runtime.adapters.mt5").MT5Broker()
    fill = broker.close_position("5001", "stop-7")
    assert (terminal.sent[-1]["position"], terminal.sent[-1]["comment"]) == (5001, "tw:stop-7")
    assert (fill.position_id, fill.side, fill.volume, fill.price, fill.client_id) == ("5001", Side.SELL, 0.3, TICK.bid, "stop-7")
    found = broker.find_fill("stop-7")
    assert (found.side, found.volume, found.price, found.client_id) == (Side.SELL, 0.3, TICK.bid, "stop-7")
    plain = broker.close_position("5001")  # a liquidation's close: no client id, the default comment
    assert (terminal.sent[-1]["comment"], plain.client_id) == ("tradewarden", None)


def test_a_failed_history_read_is_an_error_never_a_guess(terminal: _Terminal) -> None:
    broker = importlib.import_module("runtime.adapters.mt5").MT5Broker()
    broker.submit_order(Order("EURUSD", Side.BUY, 0.1, client_id="c-42"))
    terminal.history_fails = 2
    with pytest.raises(BrokerError, match=r"\(last_error \(-10004, 'No IPC connection'\)\): the account's net deposits are unknown$"):
        broker.account_snapshot()
    with pytest.raises(BrokerError, match=r"\(last_error \(-10004, 'No IPC connection'\)\): whether client id 'c-42' traded is unknown$"):
        broker.find_fill("c-42")
    assert broker.find_fill("c-42").client_id == "c-42"  # read again once the terminal answers


def test_one_failed_history_read_neither_moves_money_nor_halts_the_guard(terminal: _Terminal) -> None:
    # 10,000 deposited, 500 up: a failed read of the deal history once read as net deposits 0,
    # a withdrawal of all 10,000, then a deposit of it back, judged as a 95% drawdown: HALTED,
    # the book liquidated, and a stored peak of 220,500 that refused a plain resume.
    terminal.deposits = [_deal("", 0.0, 0.0, 10_000.0, m.DEAL_TYPE_BALANCE)]
    terminal.equity = 10_500.0
    broker = importlib.import_module("runtime.adapters.mt5").MT5Broker()
    store = MemoryStore()
    system = start_trading_system(
        Settings(heartbeat_interval_seconds=3600), broker, ListSignalSource(), store=store, loop_interval=None
    )
    try:
        system.loop.ask(RunCycle(), timeout=WAIT)
        terminal.history_fails = 1
        with LogLines(level="ERROR") as lines:
            system.loop.ask(RunCycle(), timeout=WAIT)
        system.loop.ask(RunCycle(), timeout=WAIT)
        state = system.guard_status().state
        assert (state.trading_state, state.peak_equity, state.current_drawdown) == (TradingState.ACTIVE, 10_500.0, 0.0)
        assert [p.position_id for p in broker.open_positions()] == ["5001"]
        assert store.load_guard("main").net_deposits == 10_000.0
        assert lines.snapshot() == [
            "ERROR could not read account equity (1 in a row; said once a minute while it lasts): BrokerError(\"history_"
            "deals_get() returned None (last_error (-10004, 'No IPC connection')): the account's net deposits are unknown\")"
        ]
    finally:
        system.stop()
