"""The trading loop inside a real trading system: signals to orders by trading state, events,
equity to the guard, heartbeat figures and lifetime totals that survive a restart."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from actor_helpers import WAIT, EventLog, FlakyBroker, LogLines, UnreachableBroker

from actors import start_trading_system
from actors.loop import LoopActor, NoGuard
from actors.messages import Crash, EquityReading, GetJournals, RunCycle
from actors.supervision.context import ChildContext
from runtime import (
    EventType,
    ListSignalSource,
    ManualClock,
    MemoryMetrics,
    MemoryStore,
    Order,
    OrderRejected,
    PaperBroker,
    Settings,
    Signal,
    TradingState,
)
from runtime.adapters.sqlite import StoreError

T0 = datetime(2024, 1, 1, tzinfo=UTC)


class RejectSmall:
    """An approval policy that refuses signals below a volume."""

    def approve(self, signal: Signal) -> bool:
        return signal.volume >= 5


@pytest.fixture
def system_factory():
    systems = []

    def make(broker=None, *, settings=None, approval=None, store=None, metrics=None, signals=None):
        broker = broker or PaperBroker(10_000)
        if isinstance(broker, PaperBroker):
            broker.update_price("X", 100.0)
        signals = signals or ListSignalSource()
        events = EventLog()
        system = start_trading_system(
            settings or Settings(heartbeat_interval_seconds=3600),
            broker,
            signals,
            approval=approval,
            store=store or MemoryStore(),
            metrics=metrics,
            clock=ManualClock(),
            loop_interval=None,
            subscribers=[events],
            drills=True,
        )
        systems.append(system)
        return system, signals, events, broker

    yield make
    for system in systems:
        system.stop()


def test_a_signal_is_received_approved_executed_and_the_equity_goes_to_the_guard(system_factory):
    system, signals, events, broker = system_factory()
    signals.push(Signal("X", "buy", 10, reason="test"))
    status = system.loop.ask(RunCycle())
    assert status.metrics.signals_processed == 1 and status.metrics.trades_executed == 1
    assert status.metrics.positions_open == 1 and status.metrics.account_equity == 10_000
    events.wait_count(EventType.TRADE_EXECUTED, 1)
    kinds = [e.event_type for e in events.events if e.event_type.value.startswith(("signal", "trade"))]
    assert kinds == [EventType.SIGNAL_RECEIVED, EventType.SIGNAL_APPROVED, EventType.TRADE_EXECUTED]
    assert broker.net_volume("X") == 10
    broker.update_price("X", 200.0)
    system.loop.ask(RunCycle())
    assert system.guard_status().state.peak_equity == 11_000


def test_a_signal_the_policy_refuses_is_received_but_not_executed(system_factory):
    system, signals, events, broker = system_factory(approval=RejectSmall())
    signals.push(Signal("X", "buy", 1))
    status = system.loop.ask(RunCycle())
    assert status.metrics.signals_processed == 1 and status.metrics.trades_executed == 0
    assert events.of(EventType.SIGNAL_APPROVED) == [] and broker.open_positions() == []


class SaysNo:
    """An approval policy that answers in words, not True or False."""

    def approve(self, signal: Signal) -> str:
        return "no"


def test_an_approval_that_is_not_true_or_false_approves_nothing_and_counts_an_error(system_factory):
    system, signals, events, broker = system_factory(approval=SaysNo())
    signals.push(Signal("X", "buy", 10))
    status = system.loop.ask(RunCycle())
    assert (status.metrics.signals_processed, status.metrics.trades_executed, status.metrics.error_count) == (1, 0, 1)
    assert events.of(EventType.SIGNAL_APPROVED) == [] and broker.open_positions() == []


class Careless(ListSignalSource):
    """A signal source that gives back, beside a real signal, what it meant to make one from."""

    def poll(self, now):
        return [("X", "buy", 1), *super().poll(now), None]


def test_what_a_signal_source_gives_that_is_not_a_signal_is_skipped_and_counted_and_the_loop_lives_on(system_factory):
    system, signals, events, broker = system_factory(signals=Careless())
    signals.push(Signal("X", "buy", 10))
    status = system.loop.ask(RunCycle())
    assert (status.metrics.signals_processed, status.metrics.trades_executed, status.metrics.error_count) == (1, 1, 2)
    assert broker.net_volume("X") == 10
    assert system.children()["loop"].incarnation == 1


def test_while_halted_no_order_reaches_the_broker_and_the_signal_is_recorded_as_rejected(system_factory):
    broker = FlakyBroker(PaperBroker(10_000))
    broker.inner.update_price("X", 100.0)
    system, signals, events, _ = system_factory(broker)
    system.guard.tell(EquityReading(5_000.0, T0))  # a 50% drawdown: the guard halts trading
    signals.push(Signal("X", "buy", 10))
    system.loop.ask(RunCycle())
    [failed] = events.wait_count(EventType.TRADE_FAILED, 1)
    assert failed.metadata["rejected"] is True and failed.metadata["error"] == "trading halted"
    assert broker.submit_calls == 0


def test_while_reducing_only_orders_that_reduce_exposure_go_through(system_factory):
    settings = Settings(heartbeat_interval_seconds=3600, guard_warn_fraction=0.5)
    system, signals, events, broker = system_factory(settings=settings)
    signals.push(Signal("X", "buy", 50))
    system.loop.ask(RunCycle())
    broker.update_price("X", 78.0)  # equity 8,900: 11% down, past half the 20% limit
    system.loop.ask(RunCycle())
    assert system.guard_status().state.trading_state is TradingState.REDUCING
    signals.push(Signal("X", "buy", 5), Signal("X", "sell", 60), Signal("X", "sell", 20))
    status = system.loop.ask(RunCycle())
    assert status.metrics.trades_executed == 2
    assert broker.net_volume("X") == 30
    rejected = events.wait_count(EventType.TRADE_FAILED, 2)
    assert [e.metadata["volume"] for e in rejected] == [5, 60]
    assert all(e.metadata["rejected"] for e in rejected)


def test_an_account_that_cannot_be_read_every_cycle_is_said_once_and_when_it_reads_again(system_factory):
    broker = UnreachableBroker(10_000)
    system, _, _, _ = system_factory(broker)
    broker.down = True
    with LogLines("INFO") as logs:
        for _ in range(5):
            status = system.loop.ask(RunCycle())
        broker.down = False
        system.loop.ask(RunCycle())
    assert status.metrics.error_count == 5  # every failure is counted all the same
    said = [line for line in logs.snapshot() if "account equity" in line]
    assert said == [
        "ERROR could not read account equity (1 in a row; said once a minute while it lasts): "
        "BrokerError('trade server unreachable')",
        "INFO account equity read again after 5 failed reads",
    ]


def test_a_loop_that_reported_a_breach_sends_no_more_orders_in_the_same_cycle(system_factory):
    # Every order goes through the guard, which reads the account before and after each order: an
    # equity that breaches halts trading before the next order is checked.
    system, signals, events, broker = system_factory()
    signals.push(Signal("X", "buy", 50), Signal("X", "buy", 1))
    broker.update_price("X", 100.0)
    system.loop.ask(RunCycle())
    broker.update_price("X", 50.0)  # equity 7,500: a breach, not yet reported to the guard
    signals.push(Signal("X", "buy", 1), Signal("X", "buy", 1))
    system.loop.ask(RunCycle())
    # the guard reads the account before judging an order: the drop halts trading at the first
    # order of the cycle, so neither reaches the broker
    failed = events.wait_count(EventType.TRADE_FAILED, 2)
    assert [e.metadata["error"] for e in failed] == ["trading halted", "trading halted"]
    assert len(events.of(EventType.TRADE_EXECUTED)) == 2
    assert broker.open_positions() == []


def test_a_broker_that_raises_gives_trade_failed_and_an_error_count_and_the_loop_lives_on(system_factory):
    class RefusingBroker(PaperBroker):
        def submit_order(self, order: Order):
            raise OrderRejected("market closed")

    system, signals, events, broker = system_factory(RefusingBroker(10_000))
    signals.push(Signal("X", "buy", 1))
    status = system.loop.ask(RunCycle())
    assert status.metrics.error_count == 1
    [failed] = events.wait_count(EventType.TRADE_FAILED, 1)
    assert "market closed" in failed.metadata["error"] and failed.metadata["rejected"] is False
    assert system.children()["loop"].incarnation == 1


def test_lifetime_totals_survive_a_crash_of_the_loop_while_per_run_counts_start_again(system_factory):
    system, signals, events, broker = system_factory()
    signals.push(Signal("X", "buy", 1), Signal("X", "buy", 1))
    system.loop.ask(RunCycle())
    system.loop.tell(Crash())
    signals.push(Signal("X", "buy", 1))
    status = system.loop.ask(RunCycle())
    assert status.metrics.total_signals_lifetime == 3 and status.metrics.total_trades_lifetime == 3
    assert status.metrics.signals_processed == 1
    events.wait_count(EventType.LOOP_STARTED, 2)
    [stopped] = events.wait_count(EventType.LOOP_STOPPED, 1)
    assert stopped.metadata["how"] == "crashed"


def test_a_restarted_loop_cannot_trade_while_the_guard_holds_halted(system_factory):
    system, signals, events, broker = system_factory()
    signals.push(Signal("X", "buy", 30))
    system.loop.ask(RunCycle())
    broker.update_price("X", 1.0)  # equity 7,030: a 29.7% drawdown
    system.loop.ask(RunCycle())
    assert system.guard_status().state.trading_state is TradingState.HALTED
    system.loop.tell(Crash())
    signals.push(Signal("X", "buy", 5))
    status = system.loop.ask(RunCycle())
    assert status.metrics.trades_executed == 0 and broker.open_positions() == []
    [failed] = events.wait_count(EventType.TRADE_FAILED, 1)
    assert (failed.metadata["rejected"], failed.metadata["error"], failed.metadata["volume"]) == (True, "trading halted", 5)


def test_a_loop_without_a_guard_refuses_to_start():
    with pytest.raises(NoGuard, match=r"^loop 'main' has no guard sibling: it would trade unguarded, so it does not start$"):
        LoopActor.start(
            ChildContext.standalone("loop", clock=ManualClock()),
            broker=PaperBroker(),
            signals=ListSignalSource(),
            store=MemoryStore(),
            interval=None,
        )


def test_every_order_is_journaled_with_its_client_id_before_and_after_the_broker(system_factory):
    store = MemoryStore()
    system, signals, events, broker = system_factory(store=store)
    signal = Signal("X", "buy", 10, reason="cross")
    signals.push(signal)
    system.loop.ask(RunCycle())
    [executed] = events.wait_count(EventType.TRADE_EXECUTED, 1)
    [submitted] = events.of(EventType.ORDER_SUBMITTED)
    [position] = broker.open_positions()
    client_id = submitted.metadata["client_order_id"]
    order = {"signal_id": signal.signal_id, "symbol": "X", "side": "buy", "volume": 10, "reason": "cross", "client_order_id": client_id}
    assert submitted.metadata == {**order, "rule": None, "closes": None}
    assert executed.metadata == {
        **order, "position_id": position.position_id, "price": 100.0, "filled_volume": 10,
        "realised_pnl": 0.0, "reconciled": False, "costs": 0.0,
    }
    assert broker.find_fill(client_id).position_id == position.position_id
    # A paper account's orders reach the journal through the emitter, in order with every event.
    [journal_sink] = system.emitter.ask(GetJournals(), timeout=WAIT)
    assert journal_sink.wait_backlog(0, WAIT)
    journal = [e.event_type for e in store.events() if e.event_type in (EventType.ORDER_SUBMITTED, EventType.TRADE_EXECUTED)]
    assert journal == [EventType.ORDER_SUBMITTED, EventType.TRADE_EXECUTED]
    assert store.unsettled_orders("main") == []


def test_loop_duration_and_positions_are_reported_as_metrics(system_factory):
    metrics = MemoryMetrics()
    system, signals, events, broker = system_factory(metrics=metrics)
    signals.push(Signal("X", "buy", 1))
    system.loop.ask(RunCycle())
    assert metrics.gauges["positions_open"] == 1
    assert len(metrics.timings["loop_duration_ms"]) == 1 and metrics.timings["loop_duration_ms"][0] >= 0


class TotalsRefused(MemoryStore):
    """A store that refuses to save the loop's lifetime totals while ``full`` (a full disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.full = True

    def save_loop_totals(self, loop_id, totals) -> None:
        if self.full:
            raise StoreError("state_db 'state.db': saving the totals of loop 'main' failed: database or disk is full")
        super().save_loop_totals(loop_id, totals)


def test_a_store_that_refuses_the_totals_does_not_crash_the_loop_and_they_are_saved_once_it_takes_them(system_factory):
    # Each cycle crashed the loop; six crashes in a second and the supervisor gave up.
    store, metrics = TotalsRefused(), MemoryMetrics()
    system, signals, events, broker = system_factory(store=store, metrics=metrics)
    with LogLines() as lines:
        for _ in range(8):
            signals.push(Signal("X", "buy", 1))
            assert system.loop.ask(RunCycle(), timeout=WAIT).metrics.trades_executed >= 1
        store.full = False
        signals.push(Signal("X", "buy", 1))
        system.loop.ask(RunCycle(), timeout=WAIT)
    assert system.children()["loop"].incarnation == 1 and not system.gave_up
    assert store.load_loop_totals("main").total_trades_lifetime == 9
    assert metrics.counters["store_errors_total"] == 8
    said = [line for line in lines.snapshot() if "lifetime totals" in line]
    assert said == [
        "ERROR lifetime totals not saved: StoreError(\"state_db 'state.db': saving the totals of loop 'main' failed: "
        "database or disk is full\"); saved again with the next change",
        "WARNING lifetime totals saved again",
    ]
