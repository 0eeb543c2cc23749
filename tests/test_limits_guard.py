"""The guard applies its gate's limits: a refused order is a rejected TRADE_FAILED naming the rule,
counted per rule, and never reaches the broker; a runaway signal source ends REDUCING with an alert."""

from __future__ import annotations

from actor_helpers import WAIT, AlertInbox, EventLog, FlakyBroker
from test_guard_actor import GuardTree

from actors import start_trading_system
from actors.messages import RunCycle
from runtime import EventType, ListSignalSource, ManualClock, Order, PaperBroker, Settings, Signal, TradingState


def guard_with(trees, broker, **limits) -> GuardTree:
    tree = GuardTree(broker, gate=Settings(**limits).gate())
    trees.append(tree)
    return tree


def paper(price: float = 1.0) -> PaperBroker:
    broker = PaperBroker(10_000)
    broker.update_price("EURUSD", price)
    return broker


def test_an_order_past_a_limit_is_a_rejected_trade_failed_naming_the_rule_and_never_reaches_the_broker(trees):
    broker = FlakyBroker(paper())
    tree = guard_with(trees, broker, max_order_volume=100, contract_size=1.0)
    outcome = tree.place("EURUSD", "buy", 1e6)
    assert outcome.refusal == "volume 1,000,000.00 > limit 100.00 for EURUSD" and outcome.fill is None
    [failed] = tree.events.wait_count(EventType.TRADE_FAILED, 1)
    assert (failed.metadata["rejected"], failed.metadata["refused_by"], failed.metadata["error"]) == (
        True, "max_order_volume", "volume 1,000,000.00 > limit 100.00 for EURUSD"
    )
    assert broker.submit_calls == 0 and tree.events.of(EventType.ORDER_SUBMITTED) == []
    assert tree.metrics.counters["order_refused_total.max_order_volume"] == 1


def test_notional_uses_the_brokers_latest_price_and_an_order_within_it_goes_out(trees):
    broker = paper(price=1.04)
    tree = guard_with(trees, broker, max_order_notional=50_000)
    assert tree.place("EURUSD", "buy", 50_000).refusal == "notional 52,000.00 > limit 50,000.00 for EURUSD"
    assert tree.place("EURUSD", "buy", 40_000).executed
    assert broker.net_volume("EURUSD") == 40_000


def test_a_broker_without_prices_is_valued_at_entry_prices_and_an_unknown_symbol_is_refused(trees):
    inner = paper(price=100.0)
    inner.submit_order(Order("EURUSD", "buy", 5))
    broker = FlakyBroker(inner)  # no price(symbol): only the entry prices are known
    tree = guard_with(trees, broker, max_symbol_exposure=1_000)
    assert tree.place("EURUSD", "buy", 6).refusal == "exposure 1,100.00 > limit 1,000.00 for EURUSD"
    assert tree.place("GBPUSD", "buy", 1).refusal == "no price known for GBPUSD, so its notional cannot be checked"
    assert tree.place("EURUSD", "sell", 5).executed  # reducing: no price needed
    assert broker.submit_calls == 1


def test_a_runaway_signal_source_ends_reducing_with_a_critical_alert_and_few_orders_at_the_broker():
    broker, alerts, signals, clock, events = FlakyBroker(paper()), AlertInbox(), ListSignalSource(), ManualClock(), EventLog()
    settings = Settings(max_orders_per_second=2, max_trades_per_day=5, runaway_refusals=4, runaway_window_seconds=10)
    system = start_trading_system(
        settings, broker, signals, alerts=alerts, clock=clock, loop_interval=None, subscribers=[events]
    )
    try:
        for _ in range(40):  # an order per cycle, ten cycles a second, forever
            signals.push(Signal("EURUSD", "buy", 1))
            system.loop.ask(RunCycle(), timeout=WAIT)
            clock.advance(0.1)
        alert = alerts.wait_for("Runaway order loop")
        assert alert.critical
        assert alert.text == (
            "runaway order loop: 4 orders refused by rate limits within 10s (limit 4); trading reducing until resumed"
        )
        assert system.guard_status().state.trading_state is TradingState.REDUCING
        changed = events.wait_for(lambda es: any(e.metadata.get("to") == "reducing" for e in es))
        assert [e.metadata["from"] for e in changed if e.metadata.get("to") == "reducing"] == ["active"]
        assert broker.submit_calls <= 5  # the day's ceiling, let alone the rate
        refused = [e.metadata["refused_by"] for e in events.of(EventType.TRADE_FAILED)]
        assert set(refused) <= {"max_orders_per_second", "max_trades_per_day", "trading_state"}
        assert system.resume(by="desk") is TradingState.REDUCING
        assert system.guard_status().state.trading_state is TradingState.ACTIVE
    finally:
        system.stop()


class NaNQuotes(PaperBroker):
    """A paper account whose broker quotes NaN for every symbol (a feed gone bad)."""

    def price(self, symbol: str) -> float:
        return float("nan")


def test_a_broker_quoting_nan_gets_no_order_past_a_notional_limit(trees):
    broker = NaNQuotes(10_000)
    broker.update_price("EURUSD", 1.0)
    tree = guard_with(trees, broker, max_order_notional=1_000)
    outcome = tree.place("EURUSD", "buy", 1e9)
    assert outcome.refusal == "the price of EURUSD is nan, not a number above 0, so its notional cannot be checked"
    assert broker.net_volume("EURUSD") == 0
