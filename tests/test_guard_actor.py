"""The guard actor through its messages, with real neighbours: an emitter, a recording loop and
alert sender, a paper broker (made flaky where a test needs a failing broker) and a store."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from actor_helpers import WAIT, EventLog, FlakyBroker, Journal, Recorder

from actors import ChildSpec, EmitterActor, GuardActor, Supervisor
from actors.messages import (
    Crash,
    EquityBatch,
    EquityReading,
    GetGuardState,
    Hang,
    Resume,
    SendAlert,
    TradingStateChanged,
)
from runtime import EventType, MemoryMetrics, MemoryStore, Order, PaperBroker, Settings, TradingState
from runtime.adapters.system_clock import SystemClock

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


class GuardTree:
    """A supervisor with the guard and just enough around it to watch what it does."""

    def __init__(self, broker, *, settings: Settings | None = None, store=None) -> None:
        self.broker = broker
        self.settings = settings or Settings()
        self.store = store or MemoryStore()
        self.events = EventLog()
        self.journal = Journal()
        self.metrics = MemoryMetrics()
        specs = [
            ChildSpec("emitter", lambda ctx: EmitterActor.start(ctx, sinks=[self.events])),
            ChildSpec("alerts", lambda ctx: Recorder.start(ctx, self.journal), liveness_timeout=None),
            ChildSpec(
                "guard",
                lambda ctx: GuardActor.start(
                    ctx, guards=self.settings.guards(), broker=broker, store=self.store, metrics=self.metrics
                ),
            ),
            ChildSpec("loop", lambda ctx: Recorder.start(ctx, self.journal)),
        ]
        self.handle = Supervisor.launch(specs, probe_interval=0.05, child_clock=SystemClock.shared(), drills=True)
        self.guard = self.handle.address("guard")

    def read(self, *equities: float, positions_open: int | None = None) -> None:
        for equity in equities:
            self.guard.tell(EquityReading(equity, T0, positions_open))

    def status(self):
        return self.guard.ask(GetGuardState(), timeout=WAIT)

    def loop_states(self) -> list[TradingState]:
        return [e[3].state for e in self.journal.snapshot() if e[:2] == ("got", "loop") and isinstance(e[3], TradingStateChanged)]

    def alerts(self) -> list:
        return [e[3].alert for e in self.journal.snapshot() if e[:2] == ("got", "alerts") and isinstance(e[3], SendAlert)]

    def stop(self) -> None:
        self.handle.stop()


def broker_with_positions(*symbols: str) -> PaperBroker:
    broker = PaperBroker(10_000)
    for symbol in symbols:
        broker.update_price(symbol, 100.0)
        broker.submit_order(Order(symbol, "buy", 10))
    return broker


@pytest.fixture
def tree_factory():
    trees = []

    def make(*args, **kwargs) -> GuardTree:
        tree = GuardTree(*args, **kwargs)
        trees.append(tree)
        return tree

    yield make
    for tree in trees:
        tree.stop()


def test_a_breach_halts_tells_the_loop_closes_every_position_alerts_counts_and_reports(tree_factory):
    broker = broker_with_positions("EURUSD", "GBPUSD")
    tree = tree_factory(broker)
    tree.read(10_000, 12_000, 11_000, 9_540)
    status = tree.status()
    assert status.state.trading_state is TradingState.HALTED
    assert status.state.reason == "max drawdown 20.50% >= limit 20.00% (peak 12000.00, equity 9540.00)"
    assert broker.open_positions() == []
    closed = tree.events.wait_count(EventType.POSITION_CLOSED, 2)
    assert sorted(e.metadata["symbol"] for e in closed) == ["EURUSD", "GBPUSD"]
    [triggered] = tree.events.wait_count(EventType.GUARD_TRIGGERED, 1)
    assert triggered.metadata["guard"] == "max_drawdown" and triggered.metadata["peak_equity"] == 12_000
    tree.journal.wait_for(lambda es: any(isinstance(e[-1], SendAlert) for e in es))
    [alert] = tree.alerts()
    assert alert.critical and "20.50%" in alert.text
    tree.journal.wait_for(lambda es: TradingState.HALTED in tree.loop_states())
    assert status.block_counts["drawdown_block_total"] == 1
    assert tree.metrics.counters["drawdown_block_total"] == 1
    tree.events.wait_count(EventType.TRADING_STATE_CHANGED, 1)
    order = [e.event_type for e in tree.events.events]
    assert order.index(EventType.POSITION_CLOSED) < order.index(EventType.GUARD_TRIGGERED)


def test_many_consecutive_checks_with_slowly_falling_equity_fire_the_drawdown_guard(tree_factory):
    # The old system rebuilt its peak on every call, so a slow slide never looked like a drawdown.
    tree = tree_factory(broker_with_positions("X"))
    tree.read(*[10_000 - 25 * i for i in range(100)])
    status = tree.status()
    assert status.state.trading_state is TradingState.HALTED
    assert status.state.peak_equity == 10_000
    assert tree.metrics.counters["drawdown_block_total"] == 1


def test_a_failing_broker_is_retried_with_backoff_until_flat_with_one_close_event_per_position(tree_factory):
    broker = FlakyBroker(broker_with_positions("A", "B"), close_failures=3)
    tree = tree_factory(broker)
    tree.read(10_000, 7_000)
    closed = tree.events.wait_count(EventType.POSITION_CLOSED, 2)
    assert broker.inner.open_positions() == []
    assert len(closed) == 2 and {e.metadata["symbol"] for e in closed} == {"A", "B"}
    assert max(e.metadata["attempt"] for e in closed) >= 1
    assert broker.close_calls == 5
    assert tree.status().liquidating is False
    tree.journal.wait_for(lambda es: sum(isinstance(e[-1], SendAlert) for e in es) >= 2)
    assert any(a.title == "Liquidation failing" for a in tree.alerts())
    assert len(tree.events.of(EventType.POSITION_CLOSED)) == 2


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None, "9000", True])
def test_a_bad_reading_is_refused_counted_and_never_kills_the_guard(tree_factory, bad):
    tree = tree_factory(broker_with_positions("X"))
    tree.read(11_000)
    tree.guard.tell(EquityReading(bad, T0))
    status = tree.status()
    assert status.bad_readings == 1
    assert tree.metrics.counters["bad_readings_total"] == 1
    assert status.state.peak_equity == 11_000 and status.state.current_equity == 11_000
    assert tree.handle.children()["guard"].incarnation == 1


def test_after_a_crash_the_guard_keeps_its_peak_and_its_latched_halt(tree_factory):
    broker = broker_with_positions("X")
    tree = tree_factory(broker)
    tree.read(10_000, 13_000)
    tree.guard.tell(Crash("first"))
    assert tree.status().state.peak_equity == 13_000
    tree.read(10_000)  # 23% below the kept peak: must fire although this incarnation never saw 13,000
    assert tree.status().state.trading_state is TradingState.HALTED
    tree.guard.tell(Crash("second"))
    status = tree.status()
    assert status.state.trading_state is TradingState.HALTED
    assert status.state.peak_equity == 13_000
    assert tree.handle.children()["guard"].incarnation == 3
    # the new incarnation tells the loop its latched state as soon as it is up
    tree.journal.wait_for(lambda es: tree.loop_states()[-2:] == [TradingState.HALTED, TradingState.HALTED])


def test_a_breach_while_halted_and_flat_does_not_liquidate_again_but_an_open_position_is_closed(tree_factory):
    broker = broker_with_positions("X")
    tree = tree_factory(broker)
    tree.read(10_000, 7_000, positions_open=1)
    tree.events.wait_count(EventType.POSITION_CLOSED, 1)
    tree.read(6_000, 5_500, positions_open=0)
    status = tree.status()
    assert status.block_counts["drawdown_block_total"] == 1
    assert len(tree.events.of(EventType.POSITION_CLOSED)) == 1
    broker.submit_order(Order("X", "sell", 3))  # a position opened behind the guard's back
    tree.read(5_400, positions_open=1)
    tree.events.wait_count(EventType.POSITION_CLOSED, 2)
    assert broker.open_positions() == []
    assert tree.status().block_counts["drawdown_block_total"] == 1


def test_resume_returns_to_active_and_keeps_the_peak(tree_factory):
    tree = tree_factory(broker_with_positions("X"))
    tree.read(12_000, 9_000)
    assert tree.status().state.trading_state is TradingState.HALTED
    assert tree.guard.ask(Resume("risk desk")) is TradingState.HALTED
    status = tree.status()
    assert status.state.trading_state is TradingState.ACTIVE and status.state.peak_equity == 12_000
    tree.journal.wait_for(lambda es: tree.loop_states()[-1:] == [TradingState.ACTIVE])


def test_a_warning_level_asks_for_reducing_and_clears_when_equity_recovers(tree_factory):
    tree = tree_factory(broker_with_positions("X"), settings=Settings(guard_warn_fraction=0.5, min_equity=0))
    tree.read(10_000, 8_900)  # 11% down: past half of the 20% limit
    assert tree.status().state.trading_state is TradingState.REDUCING
    tree.read(9_800)
    assert tree.status().state.trading_state is TradingState.ACTIVE
    tree.journal.wait_for(lambda es: tree.loop_states()[-2:] == [TradingState.REDUCING, TradingState.ACTIVE])
    assert len(tree.events.of(EventType.POSITION_CLOSED)) == 0


def test_a_hung_alert_service_does_not_delay_the_liquidation(tree_factory):
    broker = broker_with_positions("X")
    tree = tree_factory(broker)
    release = threading.Event()
    tree.handle.address("alerts").tell(Hang(release, seconds=WAIT))
    tree.read(10_000, 7_000)
    status = tree.guard.ask(GetGuardState(), timeout=2.0)
    assert status.state.trading_state is TradingState.HALTED
    assert broker.open_positions() == []
    release.set()


def test_a_batch_gives_the_same_state_and_breach_as_one_reading_at_a_time(tree_factory):
    curve = [10_000, 10_500, 11_200, 10_100, 8_900, 9_500, 12_000]
    one = tree_factory(broker_with_positions("X"))
    one.read(*curve)
    batched = tree_factory(broker_with_positions("X"))
    batched.guard.tell(EquityBatch(curve, T0))
    a, b = one.status(), batched.status()
    assert a.state == b.state and a.block_counts == b.block_counts
    assert a.state.reason.startswith("max drawdown 20.54%")


def test_a_new_guard_starts_from_the_brokers_equity_and_saves_it_before_answering(tree_factory):
    broker = PaperBroker(25_000)
    store = MemoryStore()
    tree = tree_factory(broker, store=store)
    assert tree.status().state.peak_equity == 25_000
    assert store.load_guard("main").drawdown.peak_equity == 25_000


class FailingSaves(MemoryStore):
    """A store whose disk has filled up: every save after the first raises."""

    def __init__(self) -> None:
        super().__init__()
        self.saves = 0

    def save_guard(self, loop_id, record):
        self.saves += 1
        if self.saves > 1:
            raise OSError("No space left on device")
        super().save_guard(loop_id, record)


def test_a_store_that_cannot_save_does_not_stop_the_guard_from_liquidating_and_it_says_so(tree_factory):
    broker = broker_with_positions("X")
    tree = tree_factory(broker, store=FailingSaves())
    tree.read(10_000, 7_000)
    status = tree.status()
    assert status.state.trading_state is TradingState.HALTED
    assert broker.open_positions() == []
    tree.journal.wait_for(lambda es: any(a.title == "Guard state not saved" for a in tree.alerts()))
    assert tree.metrics.counters["store_errors_total"] >= 1
    assert tree.handle.children()["guard"].incarnation == 1


def test_resume_cancels_a_liquidation_still_retrying(tree_factory):
    broker = FlakyBroker(broker_with_positions("X"), close_failures=1_000)
    tree = tree_factory(broker)
    tree.read(10_000, 7_000)
    assert tree.status().liquidating is True
    tree.guard.ask(Resume("risk desk"))
    status = tree.status()
    assert status.liquidating is False and status.state.trading_state is TradingState.ACTIVE


def test_after_a_crash_the_worst_drawdown_is_kept_to_within_a_tenth_of_a_point(tree_factory):
    tree = tree_factory(broker_with_positions("X"))
    tree.read(10_000, 9_500, 9_000, 9_400)  # worst drawdown 10%, while within every limit
    before = tree.status().state.max_drawdown
    tree.guard.tell(Crash("lost"))
    after = tree.status().state.max_drawdown
    assert before == pytest.approx(0.10) and before - after < 0.001
