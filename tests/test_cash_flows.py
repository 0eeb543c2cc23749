"""Deposits and withdrawals travel with the equity they change, so they can never fake a
drawdown or a gain: on the paper broker, through the MT5 mapping, and through the real guard."""

from __future__ import annotations

from collections import namedtuple
from datetime import UTC, datetime

import pytest
from actor_helpers import WAIT, EventLog, LogLines, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import CashFlow, EquityReading, GetGuardState, RunCycle, start_trading_system
from actors.messages import Crash
from runtime import (
    BrokerError,
    EventType,
    ListSignalSource,
    ManualClock,
    MemoryMetrics,
    MemoryStore,
    Order,
    PaperBroker,
    Settings,
    TradingState,
)
from runtime.adapters import mt5_mapping as m
from runtime.adapters.sqlite import SqliteStore
from runtime.broker import AccountSnapshot
from runtime.risk.monitor import ResumeRefused

T0 = datetime(2024, 5, 1, 9, tzinfo=UTC)


# --- the paper broker -------------------------------------------------------------------------


def test_a_paper_deposit_and_withdrawal_move_cash_and_net_deposits_together():
    broker = PaperBroker(10_000)
    assert broker.account_snapshot() == AccountSnapshot(10_000.0, 0.0)
    broker.deposit(2_500)
    broker.withdraw(500.0)
    assert broker.account_snapshot() == AccountSnapshot(12_000.0, 2_000.0)
    assert broker.cash == 12_000.0


@pytest.mark.parametrize(
    ("call", "amount", "error", "message"),
    [
        ("deposit", 0, ValueError, r"^a deposit must be > 0, got 0$"),
        ("withdraw", -5, ValueError, r"^a withdrawal must be > 0, got -5$"),
        ("deposit", float("nan"), ValueError, r"^amount must be a finite real number, got nan$"),
        ("withdraw", 10_000, BrokerError, r"^withdrawal of 10000\.0 refused: equity is 10000\.0$"),
    ],
)
def test_an_impossible_cash_flow_is_refused_and_changes_nothing(call, amount, error, message):
    broker = PaperBroker(10_000)
    with pytest.raises(error, match=message):
        getattr(broker, call)(amount)
    assert broker.account_snapshot() == AccountSnapshot(10_000.0, 0.0)


# --- MetaTrader 5: balance, credit and bonus deals are the cash flows ---------------------------

Deal = namedtuple("Deal", "type profit")


def test_mt5_net_deposits_are_the_balance_deals_and_not_the_trades():
    deals = [Deal(m.DEAL_TYPE_BALANCE, 10_000.0), Deal(m.DEAL_TYPE_BUY, -120.0), Deal(m.DEAL_TYPE_BALANCE, -2_500.0),
             Deal(m.DEAL_TYPE_SELL, 300.0)]
    assert m.net_deposits_from_deals(deals) == 7_500.0
    assert m.net_deposits_from_deals(()) == 0.0  # an account with no history has deposited nothing
    with pytest.raises(BrokerError, match=r"^deal\.profit must be a finite number, got nan$"):
        m.net_deposits_from_deals([Deal(m.DEAL_TYPE_BALANCE, float("nan"))])


# --- through the real guard -------------------------------------------------------------------


@pytest.fixture
def system_factory():
    systems = []

    def make(broker: PaperBroker, store=None):
        events = EventLog()
        metrics = MemoryMetrics()
        system = start_trading_system(
            Settings(heartbeat_interval_seconds=3600, min_equity=0, max_restarts=100),
            broker,
            ListSignalSource(),
            store=store or MemoryStore(),
            metrics=metrics,
            clock=ManualClock(T0),
            loop_interval=None,
            subscribers=[events],
            drills=True,
        )
        systems.append(system)
        return system, events, metrics

    yield make
    for system in systems:
        system.stop()


def test_a_withdrawal_of_half_the_account_is_neither_a_drawdown_nor_a_halt(system_factory):
    broker = PaperBroker(10_000)
    system, events, _ = system_factory(broker)
    system.loop.ask(RunCycle())
    broker.withdraw(5_000)  # a 50% fall in equity, all of it money taken out
    system.loop.ask(RunCycle())
    state = system.guard_status().state
    assert (state.trading_state, state.current_drawdown, state.current_equity) == (TradingState.ACTIVE, 0.0, 5_000.0)
    assert state.peak_equity == pytest.approx(5_000.0)
    broker.deposit(15_000)  # quadruples the equity: not a gain either
    system.loop.ask(RunCycle())
    state = system.guard_status().state
    assert state.peak_equity == pytest.approx(20_000.0) and state.current_drawdown == pytest.approx(0.0, abs=1e-12)


def test_a_flow_made_while_the_guard_was_restarting_is_taken_once(system_factory):
    broker, store = PaperBroker(10_000), MemoryStore()
    system, _, _ = system_factory(broker, store)
    system.loop.ask(RunCycle())
    system.guard.tell(Crash("drill"))
    broker.withdraw(4_000)
    system.loop.ask(RunCycle())
    system.loop.ask(RunCycle())
    state = system.guard_status().state
    assert system.children()["guard"].incarnation == 2
    assert (state.trading_state, state.current_drawdown) == (TradingState.ACTIVE, 0.0)
    assert store.load_guard("main").net_deposits == -4_000.0


def test_a_bad_or_impossible_cash_flow_message_is_refused_counted_and_never_fatal(system_factory):
    with pytest.raises(ValueError, match=r"^amount must be a finite real number, got nan$"):
        CashFlow(float("nan"))
    system, _, metrics = system_factory(PaperBroker(10_000))
    system.loop.ask(RunCycle())
    for _ in range(6):
        system.guard.tell(CashFlow(-50_000.0))  # more than the whole account
    status = system.guard.ask(GetGuardState(), timeout=WAIT)
    assert status.bad_cash_flows == 6 and metrics.counters["bad_cash_flows_total"] == 6
    assert status.state.trading_state is TradingState.ACTIVE and status.state.current_equity == 10_000.0
    assert system.children()["guard"].incarnation == 1 and not system.gave_up


def test_numbers_too_large_for_a_float_are_refused_counted_and_never_fatal(system_factory):
    # An integer past a float's range (10**400), or too long even to write (10**5000), told as
    # the equity or the net deposits: Python raises OverflowError converting the first and
    # ValueError writing the second, and either used to crash the guard until the system gave up.
    system, _, metrics = system_factory(PaperBroker(10_000))
    system.loop.ask(RunCycle())
    at = datetime.now(UTC)
    with LogLines() as lines:
        for huge in (10**400, 10**5000):
            for _ in range(3):
                system.guard.tell(EquityReading(huge, at))
                system.guard.tell(EquityReading(10_000.0, at, None, None, huge))
        status = system.guard.ask(GetGuardState(), timeout=WAIT)
    assert (status.bad_readings, status.bad_cash_flows) == (6, 6)
    assert metrics.counters["bad_readings_total"] == 6 and metrics.counters["bad_cash_flows_total"] == 6
    assert status.state.trading_state is TradingState.ACTIVE and status.state.current_equity == 10_000.0
    assert system.children()["guard"].incarnation == 1 and not system.gave_up
    # Each finite, but the equity before the flow (equity less the flow) is past a float's range.
    for equity, flow in ((1.5e308, -1.5e308), (10**308, -(10**308))):
        system.guard.tell(EquityReading(equity, at, None, None, flow))
    assert system.guard.ask(GetGuardState(), timeout=WAIT).bad_cash_flows == 8
    assert system.children()["guard"].incarnation == 1 and not system.gave_up
    # Beside a good equity, a send time or a count too long to write is taken as unknown.
    with LogLines() as unknown:
        system.guard.tell(EquityReading(9_000.0, at, -(10**5000), 10**5000))
        system.guard.ask(GetGuardState(), timeout=WAIT)
    assert [line for line in unknown.snapshot() if "unknown" in line or "timed from now" in line] == [
        "WARNING positions_open an integer of 16,610 bits is not a whole number >= 0: taken as unknown",
        "WARNING sent_at an integer of 16,610 bits is not a finite number: the reaction is timed from now",
    ]
    assert system.children()["guard"].incarnation == 1 and not system.gave_up
    # (the guard's own lines: its alerts reach the log through the alert actor, in their own time)
    refused = sorted({line for line in lines.snapshot() if "refused" in line and "ALERT" not in line})
    assert refused == [
        "WARNING bad equity reading refused: equity must be a finite real number, got an integer of 1,329 bits, too large for a float",
        "WARNING bad equity reading refused: equity must be a finite real number, got an integer of 16,610 bits, too large for a float",
        "WARNING cash flow an integer of 1,329 bits refused: net_deposits must be a finite real number, got an integer of"
        " 1,329 bits, too large for a float",
        "WARNING cash flow an integer of 16,610 bits refused: net_deposits must be a finite real number, got an integer of"
        " 16,610 bits, too large for a float",
    ]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("deposit"), st.floats(1.0, 50_000.0)),
            st.tuples(st.just("withdraw"), st.floats(0.01, 0.95)),  # a fraction of the equity
            st.tuples(st.just("reading"), st.none()),
            st.tuples(st.just("crash"), st.none()),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_random_flows_readings_and_guard_crashes_never_move_the_drawdown_or_halt(system_factory, steps):
    broker = PaperBroker(10_000)
    system, _, _ = system_factory(broker)
    system.loop.ask(RunCycle())
    for kind, value in steps:
        if kind == "deposit":
            broker.deposit(value)
        elif kind == "withdraw":
            broker.withdraw(broker.account_equity() * value)
        elif kind == "crash":
            system.guard.tell(Crash("drill"))
        else:
            snapshot = broker.account_snapshot()
            system.guard.tell(EquityReading(snapshot.equity, T0, 0, None, snapshot.net_deposits))
    system.loop.ask(RunCycle())
    state = system.guard_status().state
    crashes = sum(kind == "crash" for kind, _ in steps)
    assert system.children()["guard"].incarnation == 1 + crashes
    assert state.trading_state is TradingState.ACTIVE
    assert state.current_drawdown == pytest.approx(0.0, abs=1e-9)
    assert state.current_equity == pytest.approx(broker.account_equity())


def test_a_withdrawal_after_a_rise_the_guard_did_not_see_is_neither_a_loss_nor_refused(system_factory):
    # The guard last saw 1,000; the account then grew to 5,000 and 4,500 was taken out: the next
    # snapshot is 500 with net deposits -4,500, a gain and a withdrawal, not a 50% loss.
    system, _, _ = system_factory(PaperBroker(1_000))
    system.loop.ask(RunCycle())
    system.guard.tell(EquityReading(500.0, T0, 0, None, -4_500.0))
    status = system.guard.ask(GetGuardState(), timeout=WAIT)
    assert (status.state.trading_state, status.bad_cash_flows) == (TradingState.ACTIVE, 0)
    assert status.state.current_drawdown == pytest.approx(0.0, abs=1e-12)


# --- money deposited into an account at or below zero --------------------------------------------

RECAPITALISED = (
    "money was deposited after equity fell to zero or below (a deposit is not a recovery: the loss before it "
    "cannot be measured as a drawdown)"
)


def long_at(price: float, volume: float) -> PaperBroker:
    broker = PaperBroker(10_000)
    broker.update_price("X", price)
    broker.submit_order(Order("X", "buy", volume))
    return broker


def test_a_deposit_after_a_gap_through_zero_is_no_recovery_and_only_a_rebaseline_resumes_also_after_a_restart(
    system_factory, tmp_path
):
    # The deposit used to be refused (it cannot be scaled at -100) and counted, and the new money
    # then read as a recovery from 101% to 1%: a plain resume lifted the halt.
    broker = long_at(100.0, 1_000)
    store = SqliteStore(tmp_path / "state.db")
    system, _, metrics = system_factory(broker, store)
    system.loop.ask(RunCycle())
    broker.update_price("X", 89.9)  # a gap: equity -100
    system.loop.ask(RunCycle())
    assert system.guard_status().state.trading_state is TradingState.HALTED
    broker.deposit(10_000.0)
    system.loop.ask(RunCycle())
    status = system.guard.ask(GetGuardState(), timeout=WAIT)
    assert status.bad_cash_flows == 0 and "bad_cash_flows_total" not in metrics.counters
    state = status.state
    assert (state.current_equity, state.peak_equity, state.entry_equity, state.current_drawdown) == pytest.approx(
        (9_900.0, 20_000.0, 20_000.0, 0.505))
    refusal = (
        "resume refused: max drawdown 50.50% >= limit 20.00% (peak 20000.00, equity 9900.00); " + RECAPITALISED +
        "; resume with a rebaseline to measure from equity 9900.00 (the peak and the day's start set to it)"
    )
    with pytest.raises(ResumeRefused) as refused:
        system.resume("ops")
    assert (str(refused.value), refused.value.rebaseline_helps) == (refusal, True)
    system.guard.tell(Crash("drill"))  # the mark is saved with the guard's record
    assert wait_until(lambda: system.children()["guard"].incarnation == 2 and system.children()["guard"].alive)
    with pytest.raises(ResumeRefused) as again:
        system.resume("ops")
    assert str(again.value) == refusal
    assert system.resume("ops", rebaseline=True) is TradingState.HALTED
    state = system.guard_status().state
    assert (state.trading_state, state.peak_equity, state.entry_equity) == (
        TradingState.ACTIVE, pytest.approx(9_900.0), pytest.approx(20_000.0))
    assert store.load_guard("main").drawdown.recapitalised is False


def test_a_loss_through_zero_and_a_deposit_between_two_readings_halt_on_the_loss_and_refuse_a_plain_resume(
    system_factory,
):
    # The guard never saw the -100: it scaled the 100,000 deposit by the 10,000 it last saw, and
    # read 99,900 as 9.18% below the scaled peak: no halt at all.
    broker = long_at(100.0, 1_000)
    system, events, _ = system_factory(broker)
    system.loop.ask(RunCycle())
    broker.update_price("X", 89.9)
    broker.deposit(100_000.0)
    system.loop.ask(RunCycle())
    state = system.guard_status().state
    assert (state.trading_state, state.reason, state.current_equity) == (
        TradingState.HALTED,
        "max drawdown 101.00% >= limit 20.00% (peak 10000.00, equity -100.00); equity -100.00 < minimum 0.00",
        pytest.approx(99_900.0),
    )
    triggered = events.wait_count(EventType.GUARD_TRIGGERED, 2)
    assert sorted(e.metadata["guard"] for e in triggered) == ["max_drawdown", "min_equity"]
    with pytest.raises(ResumeRefused) as refused:
        system.resume("ops")
    assert str(refused.value) == (
        "resume refused: " + RECAPITALISED + "; resume with a rebaseline to measure from equity 99900.00 (the peak "
        "and the day's start set to it)"
    )
