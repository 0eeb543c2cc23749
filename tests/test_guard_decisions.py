"""The guard actor's decision paths that only a failing outside world reaches: a broker that cannot
list its positions or price a symbol, and a cash flow the guard cannot take. Each ends in a clear
refusal or a fallback, counted and alerted, and the guard goes on."""

from __future__ import annotations

from actor_helpers import FlakyBroker
from test_guard_actor import GuardTree

from actors.messages import CashFlow
from runtime import BrokerError, EventType, Order, PaperBroker, Settings, TradingState


class BlindBroker(FlakyBroker):
    """A paper broker whose position service is down: every ``open_positions`` call raises."""

    def open_positions(self):
        raise BrokerError("position service unavailable")


class PartlyPricedBroker(FlakyBroker):
    """A paper broker that quotes only ``quoted``; asking any other symbol's price raises."""

    def __init__(self, inner: PaperBroker, quoted: str) -> None:
        super().__init__(inner)
        self.quoted = quoted

    def price(self, symbol: str) -> float:
        if symbol != self.quoted:
            raise BrokerError(f"no quote for {symbol}")
        return self.inner.price(symbol)


class AccountDownBroker(FlakyBroker):
    """A paper broker whose account service fails (``down`` is "raise") or answers NaN
    (``down`` is "nan") while its trade server still fills orders."""

    down: str | None = None

    def account_equity(self) -> float:
        if self.down == "raise":
            raise BrokerError("account service unavailable")
        if self.down == "nan":
            return float("nan")
        return self.inner.account_equity()


def paper(**prices: float) -> PaperBroker:
    broker = PaperBroker(10_000)
    for symbol, price in prices.items():
        broker.update_price(symbol, price)
    return broker


def test_with_limits_set_an_order_is_refused_when_the_positions_cannot_be_read(trees):
    broker = BlindBroker(paper(EURUSD=1.0))
    tree = GuardTree(broker, gate=Settings(max_order_volume=100).gate())
    trees.append(tree)
    outcome = tree.place("EURUSD", "buy", 1)
    assert (outcome.refusal, outcome.fill, outcome.trading_state) == (
        "the open positions could not be read, so the limits cannot be checked", None, TradingState.ACTIVE
    )
    [failed] = tree.events.wait_count(EventType.TRADE_FAILED, 1)
    assert (failed.metadata["rejected"], failed.metadata["refused_by"]) == (True, "positions_unread")
    assert broker.submit_calls == 0
    assert tree.metrics.counters["order_refused_total.positions_unread"] == 1


def test_without_limits_an_active_guard_never_reads_the_positions_and_the_order_goes_out(trees):
    broker = BlindBroker(paper(EURUSD=1.0))
    tree = GuardTree(broker)
    trees.append(tree)
    outcome = tree.place("EURUSD", "buy", 1)
    assert outcome.refusal is None and outcome.executed
    assert broker.submit_calls == 1


def test_a_symbol_the_broker_cannot_price_is_valued_at_its_entry_price(trees):
    inner = paper(EURUSD=1.0, GBPUSD=100.0)
    inner.submit_order(Order("GBPUSD", "buy", 5))  # entry 100
    inner.update_price("GBPUSD", 200.0)  # the quote the broker will not give
    broker = PartlyPricedBroker(inner, quoted="EURUSD")
    tree = GuardTree(broker, gate=Settings(max_total_exposure=1_000).gate())
    trees.append(tree)
    # GBPUSD at its entry price, 5 x 100 = 500; with 600 of EURUSD, 1,100 in all.
    assert tree.place("EURUSD", "buy", 600).refusal == "total exposure 1,100.00 > limit 1,000.00 after EURUSD"
    assert tree.place("EURUSD", "buy", 500).executed
    assert broker.submit_calls == 1


def test_a_cash_flow_that_would_leave_no_equity_is_refused_counted_and_alerted_and_the_guard_goes_on(trees):
    tree = GuardTree(paper())
    trees.append(tree)
    tree.read(10_000.0)
    tree.guard.tell(CashFlow(-10_000.0))
    status = tree.status()
    assert (status.bad_cash_flows, status.bad_readings, status.state.trading_state) == (1, 0, TradingState.ACTIVE)
    tree.journal.wait_for(lambda es: any(a.title == "Cash flow refused" for a in tree.alerts()))
    [alert] = [a for a in tree.alerts() if a.title == "Cash flow refused"]
    assert (alert.text, alert.critical) == (
        "-10000.0: cash flow amount -10000.0 would take equity from 10000.0 to 0.0 (must stay > 0)", False
    )
    tree.guard.tell(CashFlow(-1_000.0))  # one it can take: the next reading of 9,000 is no loss
    tree.read(9_000.0)
    status = tree.status()
    state = status.state
    assert (status.bad_cash_flows, state.trading_state, state.current_equity, state.peak_equity, state.current_drawdown) == (
        1, TradingState.ACTIVE, 9_000.0, 9_000.0, 0.0
    )


def test_an_order_that_adds_exposure_is_refused_while_the_account_cannot_be_read_and_a_reducing_one_goes_out(trees):
    # The account is 100 EURUSD long on 10,000. Its service then fails, or answers NaN: the
    # guard cannot tell whether the account is already past a limit, so it sends no order that
    # adds exposure (it used to judge them on the last good reading, for 30 seconds); an order
    # that reduces the position still goes out.
    inner = paper(EURUSD=1.0, GBPUSD=1.25)
    inner.submit_order(Order("EURUSD", "buy", 100))
    broker = AccountDownBroker(inner)
    tree = GuardTree(broker)
    trees.append(tree)
    assert tree.place("EURUSD", "buy", 1).executed
    for down, why in (("raise", "reading it failed: BrokerError('account service unavailable')"),
                      ("nan", "its equity nan is not a finite number")):
        broker.down = down
        for symbol, side in (("EURUSD", "buy"), ("GBPUSD", "sell")):
            outcome = tree.place(symbol, side, 1)
            assert (outcome.refusal, outcome.fill, outcome.trading_state) == (
                f"the account could not be read before this order ({why}): only an order that reduces exposure"
                " goes out until it can be",
                None,
                TradingState.ACTIVE,
            )
        assert tree.place("EURUSD", "sell", 10).executed
    failed = tree.events.wait_count(EventType.TRADE_FAILED, 4)
    assert [(f.metadata["rejected"], f.metadata["refused_by"]) for f in failed] == [(True, "account_unread")] * 4
    assert tree.metrics.counters["order_refused_total.account_unread"] == 4
    assert broker.submit_calls == 3 and inner.net_volume("EURUSD") == 81
    broker.down = None
    assert tree.place("GBPUSD", "sell", 1).executed  # read again: trading as before
