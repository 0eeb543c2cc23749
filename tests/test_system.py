"""The whole trading system: clean stop in reverse order, the fail-safe when restarts run out,
embedding under a host's supervisor with escalation, and a stateful test that crashes random
actors while readings and signals flow."""

from __future__ import annotations

import subprocess
import sys
import threading

import attrs
import pykka
import pytest
from actor_helpers import WAIT, AlertInbox, EventLog, Journal, LogLines, UnreachableBroker, wait_until
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from test_each_way_of_dying import OnceBrokenStore

from actors import Supervisor, TradingSystem, start_trading_system
from actors.messages import Crash, EquityReading, GetGuardState, GetJournals, Ping, PlaceOrder, RunCycle
from runtime import (
    EventType,
    ListSignalSource,
    ManualClock,
    MemoryStore,
    Order,
    PaperBroker,
    Settings,
    Signal,
    TradingState,
)
from runtime.adapters.sqlite import SqliteStore, StoreError
from runtime.adapters.state_claim import StateFileClaim, StateFileHeld
from runtime.risk.monitor import ResumeRefused
from runtime.store import PendingHalt


def paper(*symbols: str) -> PaperBroker:
    broker = PaperBroker(10_000)
    for symbol in symbols:
        broker.update_price(symbol, 100.0)
        broker.submit_order(Order(symbol, "buy", 10))
    return broker


def test_stop_ends_every_actor_in_reverse_order_and_journals_loop_stopped():
    store = MemoryStore()
    system = start_trading_system(Settings(), paper(), ListSignalSource(), store=store, clock=ManualClock(), loop_interval=None)
    system.loop.ask(RunCycle())
    system.stop()
    assert system.wait(WAIT)
    kinds = [e.event_type for e in store.events()]
    assert kinds[0] is EventType.LOOP_STARTED and kinds[-1] is EventType.LOOP_STOPPED
    assert store.events()[-1].metadata["how"] == "normal"


class OlderPortStore:
    """A store of the user's own, written before pending halts were in the port: every other
    method is a working memory store's."""

    def __init__(self) -> None:
        self._memory = MemoryStore()

    def __getattr__(self, name: str):
        if name in {"save_pending_halt", "load_pending_halts", "clear_pending_halts"}:
            raise AttributeError(name)
        return getattr(self._memory, name)

    def __repr__(self) -> str:
        return "OlderPortStore()"


def test_a_store_without_every_method_of_the_port_is_refused_once_by_name_before_anything_starts():
    with pytest.raises(TypeError) as refused:
        TradingSystem(Settings(), paper(), ListSignalSource(), store=OlderPortStore(), clock=ManualClock(), loop_interval=None)
    assert str(refused.value) == (
        "store must be a runtime.store.StateStore, got OlderPortStore(), which has no save_pending_halt, "
        "load_pending_halts, clear_pending_halts (a store written for an older tradewarden must add them)"
    )


def test_halts_pending_in_the_store_come_first_so_the_system_starts_halted_and_refuses_the_first_order():
    broker, store, alerts, events = paper("A"), MemoryStore(), AlertInbox(), EventLog()
    buy = Signal("A", "buy", 5)
    signals = ListSignalSource([buy])
    store.save_pending_halt("main", PendingHalt("ops", "desk closed"))
    others = PendingHalt("ops", "another account's")
    store.save_pending_halt("other", others)
    system = start_trading_system(Settings(), broker, signals, store=store, alerts=alerts, clock=ManualClock(),
                                  loop_interval=None, subscribers=[events])
    try:
        system.loop.ask(RunCycle())  # the signal's order reaches the guard after the halt
        [refused] = events.wait_count(EventType.TRADE_FAILED, 1)
        events.wait_count(EventType.POSITION_CLOSED, 1)
        assert alerts.wait_for("Trading halted by hand").text == "halted by ops: desk closed"
        changes = events.of(EventType.TRADING_STATE_CHANGED)
        assert [(e.metadata["from"], e.metadata["to"], e.metadata["reason"]) for e in changes] == [
            ("active", "halted", "halted by ops: desk closed")]
        assert events.events.index(changes[0]) < events.events.index(refused)
        assert (refused.metadata["symbol"], refused.metadata["error"], refused.metadata["refused_by"]) == (
            "A", "trading halted", "trading_state")
        # Refused at the gate: nothing of the buy was submitted, and the halt closed the position.
        assert [e.event_type for e in events.events if e.metadata.get("signal_id") == buy.signal_id] == [
            EventType.SIGNAL_RECEIVED, EventType.SIGNAL_APPROVED, EventType.TRADE_FAILED]
        assert broker.open_positions() == []
        record = store.load_guard("main")
        assert (record.trading_state, record.reason) == (TradingState.HALTED, "halted by ops: desk closed")
        # Taken once: cleared from the store once HALTED was saved (another loop's is not this guard's).
        assert store.load_pending_halts("main") == []
        assert store.load_pending_halts("other") == [others]
    finally:
        system.stop()


class FailingClears(MemoryStore):
    """A store whose first ``failures`` clears of pending halts raise (a disk full for a moment)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def clear_pending_halts(self, loop_id, halt_ids):
        if self.failures:
            self.failures -= 1
            raise OSError("No space left on device")
        super().clear_pending_halts(loop_id, halt_ids)


def test_a_pending_halt_whose_clear_failed_is_cleared_before_a_resume_so_a_later_restart_stays_active():
    store = FailingClears(failures=2)
    store.save_pending_halt("main", PendingHalt("ops", "desk closed (monday)"))
    system = start_trading_system(Settings(), paper("A"), ListSignalSource(), store=store, clock=ManualClock(),
                                  loop_interval=None, drills=True)
    try:
        assert system.guard_status().state.trading_state is TradingState.HALTED  # taken; its clear failed
        # The second clear fails too: the resume is refused rather than leave the halt to come back.
        try:
            system.resume("ops")
        except ResumeRefused as refused:
            assert str(refused) == (
                "resume refused: a halt pressed before this guard started is still pending in the state store "
                "(clearing it failed; see the log), and the next start would take it again; try again")
        else:
            raise AssertionError("a resume lifted a halt still pending in the store")
        assert system.resume("ops") is TradingState.HALTED  # the third clear goes through
        assert store.load_pending_halts("main") == []
        before = system.children()["guard"].incarnation
        system.guard.tell(Crash("an unrelated defect"))
        assert wait_until(lambda: system.children()["guard"].incarnation > before), "the guard never restarted"
        assert system.guard_status().state.trading_state is TradingState.ACTIVE
    finally:
        system.stop()


class RefusedGuardSaves(MemoryStore):
    """A store whose next ``failures`` saves of the guard's record raise (a database locked for a moment)."""

    failures = 0

    def save_guard(self, loop_id, record):
        if self.failures:
            self.failures -= 1
            raise OSError("database is locked")
        super().save_guard(loop_id, record)


def test_a_pending_halt_taken_while_one_save_was_refused_is_cleared_once_halted_is_saved_so_no_restart_takes_it_again():
    # The first save of HALTED is refused, the next one (a moment later) goes through: the halt is
    # durable then, so its pending record must go, or every later restart halts and liquidates again.
    broker, store = paper("A"), RefusedGuardSaves()
    start_trading_system(Settings(), broker, ListSignalSource(), store=store, loop_interval=None).stop()
    store.save_pending_halt("main", PendingHalt("ops", "desk pressed /halt overnight"))
    store.failures = 1
    system = start_trading_system(Settings(), broker, ListSignalSource(), store=store, clock=ManualClock(),
                                  loop_interval=None, drills=True)
    try:
        assert store.load_guard("main").trading_state is TradingState.HALTED
        assert wait_until(lambda: store.load_pending_halts("main") == []), store.load_pending_halts("main")
        assert system.resume("ops") is TradingState.HALTED
        broker.submit_order(Order("A", "buy", 5))  # a position opened after the resume
        before = system.children()["guard"].incarnation
        system.guard.tell(Crash("an unrelated defect"))
        assert wait_until(lambda: system.children()["guard"].incarnation > before), "the guard never restarted"
        state = system.guard_status().state
        assert (state.trading_state, state.reason) == (TradingState.ACTIVE, None)
        assert [(p.symbol, p.volume) for p in broker.open_positions()] == [("A", 5)]
    finally:
        system.stop()


class StalledJournal(MemoryStore):
    """A store whose journal writes wait until ``flowing`` is set: a disk that stalls."""

    def __init__(self) -> None:
        super().__init__()
        self.flowing = threading.Event()

    def append_events(self, events):
        self.flowing.wait(WAIT)
        return super().append_events(events)


def test_started_halted_is_said_once_per_start_by_the_first_guard_to_come_up_even_when_an_earlier_one_failed():
    # Only the guard's incarnation 1 said it: a first start that failed (a database still
    # coming up) left a system halted in silence.
    store = OnceBrokenStore()
    first = start_trading_system(Settings(), PaperBroker(10_000), ListSignalSource(), store=store, clock=ManualClock(),
                                 loop_interval=None)
    try:
        first.halt("desk", "news at 14:30")
    finally:
        first.stop()
    store.armed = True  # the next start's first guard cannot read its record
    alerts = AlertInbox()
    second = start_trading_system(Settings(), PaperBroker(10_000), ListSignalSource(), store=store, alerts=alerts,
                                  clock=ManualClock(), loop_interval=None, drills=True)
    try:
        started = alerts.wait_for("Started halted")
        assert started.text == "halted by desk: news at 14:30; trading waits for a resume"
        assert second.children()["guard"].incarnation == 2
        second.guard.tell(Crash("drill"))  # a later restart of the guard is no start of the system
        assert wait_until(lambda: second.children()["guard"].incarnation == 3 and second.children()["guard"].alive)
        second.halt("desk", "drill over")  # its alert comes after anything the third guard said as it came up
        alerts.wait_for("Trading halted by hand")
        assert [a.title for a in alerts.sent] == ["Started halted", "Trading halted by hand"]
    finally:
        second.stop()


def test_journaled_waits_until_the_journal_holds_a_paper_order_answered_before_it_was_written():
    store = StalledJournal()
    system = start_trading_system(Settings(), paper("A"), ListSignalSource(), store=store, clock=ManualClock(),
                                  loop_interval=None)
    try:
        order = Order("A", "buy", 5)
        outcome = system.guard.ask(PlaceOrder(order, system.clock.now()), timeout=WAIT)
        assert outcome.executed
        assert system.journaled(0.2) is False  # answered, and not yet on record
        store.flowing.set()
        assert system.journaled(WAIT) is True
        recorded = [(e.event_type, e.metadata["client_order_id"]) for e in store.events()
                    if e.event_type in (EventType.ORDER_SUBMITTED, EventType.TRADE_EXECUTED)]
        assert recorded == [(EventType.ORDER_SUBMITTED, order.client_id), (EventType.TRADE_EXECUTED, order.client_id)]
    finally:
        store.flowing.set()
        system.stop()


def test_when_restarts_run_out_the_fail_safe_halts_closes_every_position_and_alerts():
    broker, store, alerts = paper("A", "B"), MemoryStore(), AlertInbox()
    system = start_trading_system(
        Settings(max_restarts=2, within_seconds=60), broker, ListSignalSource(), store=store, alerts=alerts,
        clock=ManualClock(), loop_interval=None, drills=True,
    )
    for _ in range(3):
        system.guard.tell(Crash("broken guard"))
        system.guard.ask(GetGuardState()) if _ < 2 else None
    assert system.wait(WAIT)
    assert system.gave_up
    assert broker.open_positions() == []
    assert store.load_guard("main").trading_state is TradingState.HALTED
    alert = alerts.wait_for("Supervisor gave up")
    assert alert.critical and "broken guard" in alert.text
    closed = [e for e in store.events() if e.event_type is EventType.POSITION_CLOSED]
    assert sorted(e.metadata["symbol"] for e in closed) == ["A", "B"]


def test_a_system_that_gave_up_before_its_guard_saved_a_record_comes_back_halted():
    # Nothing to halt at: no record and no equity. The halt waits in the store, and the next
    # start, once the venue answers, takes it before any order.
    broker, store, alerts = UnreachableBroker(10_000, down=True, why="venue unreachable"), MemoryStore(), AlertInbox()
    broker.update_price("A", 100.0)
    first = start_trading_system(Settings(max_restarts=1, within_seconds=60), broker, ListSignalSource(),
                                 store=store, alerts=alerts, clock=ManualClock(), loop_interval=None)
    assert first.wait(WAIT) and first.gave_up
    cause = alerts.wait_for("Supervisor gave up").text
    assert store.load_guard("main") is None
    assert [(h.by, h.reason) for h in store.load_pending_halts("main")] == [
        ("the fail-safe", f"supervisor gave up: {cause}")]

    broker.down = False
    events = EventLog()
    second = start_trading_system(Settings(), broker, ListSignalSource([Signal("A", "buy", 5)]), store=store,
                                  alerts=AlertInbox(), clock=ManualClock(), loop_interval=None, subscribers=[events])
    try:
        second.loop.ask(RunCycle())
        [refused] = events.wait_count(EventType.TRADE_FAILED, 1)
        assert (refused.metadata["error"], refused.metadata["refused_by"]) == ("trading halted", "trading_state")
        state = second.guard_status().state
        assert (state.trading_state, state.reason) == (
            TradingState.HALTED, f"halted by the fail-safe: supervisor gave up: {cause}")
        assert broker.open_positions() == [] and store.load_pending_halts("main") == []
    finally:
        second.stop()


class DownMetrics:
    """A metrics sink whose backend is down, and which raises (as the port says it must not)."""

    def incr(self, name, count=1):
        raise OSError("metrics backend down")

    gauge = timing = incr


def test_a_metrics_sink_that_raises_loses_its_figures_said_once_and_never_halts_trading():
    broker, events = paper("A"), EventLog()
    with LogLines() as logs:
        system = start_trading_system(Settings(), broker, ListSignalSource(), metrics=DownMetrics(), clock=ManualClock(),
                                      loop_interval=None, subscribers=[events])
        try:
            system.guard.tell(EquityReading(10_000.0, system.clock.now(), 1))
            assert system.guard_status().state.trading_state is TradingState.ACTIVE
            system.guard.tell(EquityReading(7_000.0, system.clock.now(), 1))  # a breach still halts and closes
            events.wait_count(EventType.POSITION_CLOSED, 1)
            assert system.guard_status().state.trading_state is TradingState.HALTED
            assert not system.gave_up and system.children()["guard"].incarnation == 1
        finally:
            system.stop()
    said = [line for line in logs.snapshot() if "metrics sink" in line]
    assert len(said) == 1 and "raised OSError('metrics backend down'): its figures are dropped" in said[0]


@pytest.mark.parametrize(("parts", "error", "message"), [
    ({"broker": None}, TypeError,
     "broker must be a runtime.broker.Broker, got None, which has no account_equity, open_positions, submit_order, "
     "close_position"),
    ({"signals": None}, TypeError, "signals must be a runtime.signals.SignalSource, got None, which has no poll"),
    ({"approval": "yes"}, TypeError, "approval must be a runtime.signals.ApprovalPolicy, got 'yes', which has no approve"),
    ({"alerts": print}, TypeError, "alerts must be a runtime.alerts.AlertSink, got <built-in function print>, which "
     "has no send"),
    ({"metrics": object}, TypeError, "metrics must be a runtime.metrics.MetricsSink, got <class 'object'>, which has "
     "no incr, gauge, timing"),
    ({"settings": {"max_drawdown_percent": 20}}, TypeError,
     "settings must be a runtime.settings.Settings, got {'max_drawdown_percent': 20}"),
    ({"loop_interval": -5}, ValueError, "loop_interval must be > 0 seconds, or None for no cycle timer, got -5"),
    ({"loop_interval": 0}, ValueError, "loop_interval must be > 0 seconds, or None for no cycle timer, got 0"),
    ({"loop_interval": float("nan")}, ValueError, "loop_interval must be a finite real number, got nan"),
])
def test_a_part_that_cannot_work_is_refused_by_name_before_anything_starts(parts, error, message):
    given = {"settings": Settings(), "broker": PaperBroker(10_000), "signals": ListSignalSource(), **parts}
    before = set(threading.enumerate())
    with pytest.raises(error) as refused:
        TradingSystem(given.pop("settings"), given.pop("broker"), given.pop("signals"), clock=ManualClock(), **given)
    assert type(refused.value) is error and str(refused.value) == message
    assert set(threading.enumerate()) <= before  # nothing started


class StuckAlerts:
    """An alert sink whose send blocks until released (a chat service that never answers)."""

    def __init__(self) -> None:
        self.sending = threading.Event()
        self.release = threading.Event()

    def send(self, alert):
        self.sending.set()
        self.release.wait(WAIT)


def test_a_stop_with_an_alert_sink_stuck_in_its_send_returns_by_its_deadline_and_never_raises():
    alerts = StuckAlerts()
    system = start_trading_system(Settings(), paper("A"), ListSignalSource(), alerts=alerts, clock=ManualClock(),
                                  loop_interval=None)
    try:
        system.halt("desk", "news")
        assert alerts.sending.wait(WAIT)
        with LogLines("CRITICAL") as logs:
            system.stop(timeout=1.0)  # (it raised pykka.Timeout, leaving the system half-stopped)
        # (A journal still writing at the deadline would add its own critical line: not this test's.)
        assert [line for line in logs.snapshot() if "did not stop" in line] == [
            "CRITICAL the trading system did not stop within 1s: what still runs is left to end on its own"]
    finally:
        alerts.release.set()
    assert system.wait(WAIT), "the system never ended once its alert sink let go"


def test_a_host_supervisor_owns_the_trading_system_and_hears_when_it_gives_up():
    host_events = EventLog()

    class HostListener(pykka.ThreadingActor):
        """One of the host's own actors, subscribed to the trading events."""

        def on_receive(self, message):
            host_events(message)

    host_notes = Journal()
    listener = HostListener.start()
    broker = paper("X")
    trading = TradingSystem(
        Settings(max_restarts=0), broker, ListSignalSource(), clock=ManualClock(), loop_interval=None,
        subscribers=[listener], drills=True,
    )
    host = Supervisor.launch(
        [trading.child_spec("trading")], on_restart=host_notes.add, probe_interval=0.05
    )
    trading.loop.ask(RunCycle(), timeout=WAIT)
    host_events.wait_count(EventType.LOOP_STARTED, 1)
    trading.guard.tell(EquityReading(12_000.0, ManualClock().now()))
    assert trading.guard.ask(GetGuardState(), timeout=WAIT).state.peak_equity == 12_000
    trading.guard.tell(Crash("fatal"))  # max_restarts=0: the trading supervisor gives up at once
    host_events.wait_count(EventType.LOOP_STARTED, 2)  # ...and the host started it all again
    [note] = host_notes.wait_for(lambda notes: len(notes) == 1)
    assert note.actor == "trading" and "guard ended (crashed: RuntimeError: fatal)" in note.cause
    status = trading.guard.ask(GetGuardState(), timeout=WAIT)
    assert status.state.peak_equity == 12_000, "the same store: the peak survives the whole restart"
    assert status.state.trading_state is TradingState.HALTED, "the fail-safe halted trading"
    assert broker.open_positions() == []
    host.stop()
    listener.stop()


class StuckSignals(ListSignalSource):
    """A signal source whose poll hangs, once ``hang`` is set, until ``release`` (a strategy
    waiting on a slow data service), and then gives what was pushed."""

    def __init__(self) -> None:
        super().__init__()
        self.hang, self.hanging, self.release = threading.Event(), threading.Event(), threading.Event()

    def poll(self, now):
        if self.hang.is_set():
            self.hanging.set()
            self.release.wait(WAIT)
        return super().poll(now)


def test_no_order_goes_out_once_stop_is_called_even_from_a_loop_still_winding_down():
    broker, signals, events = paper(), StuckSignals(), EventLog()
    broker.update_price("A", 100.0)
    system = start_trading_system(Settings(), broker, signals, clock=ManualClock(), loop_interval=None,
                                  subscribers=[events])
    signals.hang.set()
    system.loop.tell(RunCycle())
    assert signals.hanging.wait(WAIT)
    signals.push(Signal("A", "buy", 5))
    try:
        with LogLines("CRITICAL"):
            system.stop(timeout=0.5)  # returns while the loop is still inside its poll
    finally:
        signals.release.set()  # the poll gives a buy after stop() returned
    assert system.wait(WAIT)
    assert broker.open_positions() == []
    [refused] = events.wait_count(EventType.TRADE_FAILED, 1)
    assert (refused.metadata["refused_by"], refused.metadata["error"]) == (
        "stopping", "the trading system is stopping: no new order goes out")


def test_under_a_host_the_host_stops_the_trading_system_and_its_own_stop_is_refused_until_then(tmp_path):
    settings = Settings(state_db=str(tmp_path / "state.db"))  # a store the system builds, and closes
    trading = TradingSystem(settings, paper("X"), ListSignalSource(), clock=ManualClock(), loop_interval=None)
    host = Supervisor.launch([trading.child_spec("trading")], probe_interval=0.05)
    try:
        trading.loop.ask(RunCycle(), timeout=WAIT)
        with pytest.raises(RuntimeError) as refused:
            trading.stop()
        assert str(refused.value) == (
            "this trading system runs under a host's supervisor, which would restart it: stop the host first "
            "(host.stop() stops it too), then call stop() to drain its journal and close what it built")
        # Nothing changed: it still trades, on an open store.
        assert trading.guard.ask(GetGuardState(), timeout=WAIT).state.trading_state is TradingState.ACTIVE
    finally:
        host.stop()
    trading.stop()
    assert trading.unjournaled == 0
    with SqliteStore(tmp_path / "state.db") as store:  # closed by the system's stop, so open again
        assert store.events()[-1].event_type is EventType.LOOP_STOPPED


def test_a_subscriber_added_while_stopped_hears_the_next_start_and_no_error_is_raised():
    system = start_trading_system(Settings(), paper(), ListSignalSource(), clock=ManualClock(), loop_interval=None)
    system.stop()
    heard = EventLog()
    system.subscribe(heard)  # (it raised ChildUnavailable, and subscribed all the same)
    system.start()
    try:
        heard.wait_count(EventType.LOOP_STARTED, 1)
    finally:
        system.stop()


def test_a_subscribed_actor_that_stopped_is_dropped_said_once_and_the_others_still_hear():
    class Listener(pykka.ThreadingActor):
        def on_receive(self, message):
            pass

    listener, heard = Listener.start(), EventLog()
    system = start_trading_system(Settings(), paper("X"), ListSignalSource(), clock=ManualClock(), loop_interval=None,
                                  subscribers=[listener, heard])
    try:
        with LogLines() as logs:
            listener.stop()  # (inside: the emitter may find it gone with the first event after this)
            for _ in range(3):
                system.loop.ask(RunCycle(), timeout=WAIT)
            system.halt("desk", "news")
            heard.wait_count(EventType.TRADING_STATE_CHANGED, 1)
            assert system.emitter.ask(GetJournals(), timeout=WAIT) is not None  # (every publish delivered)
        assert [line for line in logs.snapshot() if "subscriber" in line] == [
            f"WARNING subscriber {listener!r} has stopped: it is told nothing more"]
        assert listener not in system.subscribers.snapshot()
    finally:
        system.stop()


class CrashingSystem(RuleBasedStateMachine):
    """Readings, signals and crashes of random actors; the guard's promises must hold throughout."""

    def __init__(self) -> None:
        super().__init__()
        self.broker = PaperBroker(10_000)
        self.broker.update_price("X", 100.0)
        self.signals = ListSignalSource()
        self.clock = ManualClock()
        self.system = start_trading_system(
            Settings(max_restarts=1_000, min_equity=500), self.broker, self.signals, clock=self.clock,
            loop_interval=None, liveness_timeout=5.0, drills=True,
        )
        self.peak = 10_000.0
        self.breached = False

    def _observe(self, equity: float) -> None:
        self.peak = max(self.peak, equity)
        if (self.peak - equity) / self.peak >= 0.2 or equity < 500:
            self.breached = True

    @rule(equity=st.floats(min_value=100, max_value=50_000))
    def reading(self, equity):
        self.system.guard.tell(EquityReading(equity, self.clock.now()))
        self._observe(equity)

    @rule(price=st.floats(min_value=50, max_value=200), buy=st.booleans(), volume=st.integers(1, 20))
    def cycle(self, price, buy, volume):
        self.broker.update_price("X", price)
        if not self.breached:  # the guard judges the order on the account read just before it
            self._observe(self.broker.account_equity())
        self.signals.push(Signal("X", "buy" if buy else "sell", volume))
        status = self.system.loop.ask(RunCycle(), timeout=WAIT)
        self._observe(status.metrics.account_equity)

    @rule(name=st.sampled_from(["guard", "loop", "emitter", "heartbeat", "alerts"]))
    def crash(self, name):
        self.system.address(name).tell(Crash(f"chaos in {name}"))

    def settle(self):
        for name in ("emitter", "alerts", "guard", "loop", "heartbeat"):
            self.system.address(name).ask(Ping(), timeout=WAIT)  # waits for a live incarnation
        self.system.guard.ask(GetGuardState(), timeout=WAIT)
        self.system.loop.ask(RunCycle(), timeout=WAIT)  # reports equity and open positions again
        return self.system.guard.ask(GetGuardState(), timeout=WAIT)

    @invariant()
    def guard_promises_hold(self):
        status = self.settle()
        if status.state.current_equity is not None:
            self._observe(status.state.current_equity)
        assert status.state.peak_equity == self.peak
        if self.breached:
            assert status.state.trading_state is TradingState.HALTED
            assert self.broker.open_positions() == []
        children = self.system.children()
        assert all(child.alive for child in children.values()), children

    def teardown(self):
        self.system.stop()


CrashingSystem.TestCase.settings = settings(
    max_examples=25, stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck)
)
test_crashing_random_actors_never_breaks_the_guards_promises = CrashingSystem.TestCase


class DyingStore(MemoryStore):
    """A store whose disk dies while the system runs: from then on every guard read and write fails."""

    dead = False

    def load_guard(self, loop_id):
        if self.dead:
            raise OSError("disk I/O error")
        return super().load_guard(loop_id)

    def save_guard(self, loop_id, record):
        if self.dead:
            raise OSError("disk I/O error")
        super().save_guard(loop_id, record)


def test_the_fail_safe_still_liquidates_and_alerts_when_the_store_is_what_failed():
    broker, alerts = paper("A"), AlertInbox()
    store = DyingStore()
    system = start_trading_system(
        Settings(max_restarts=0), broker, ListSignalSource(), store=store, alerts=alerts,
        clock=ManualClock(), loop_interval=None, drills=True,
    )
    store.dead = True
    system.guard.tell(Crash("disk I/O error"))
    assert system.wait(WAIT) and system.gave_up
    assert broker.open_positions() == []
    assert alerts.wait_for("Supervisor gave up").critical


def test_the_fail_safe_does_not_hang_on_a_stuck_broker_and_alerts_first():
    release = threading.Event()

    class StuckBroker(PaperBroker):
        stuck = False

        def open_positions(self):
            if self.stuck:
                release.wait(WAIT)
            return super().open_positions()

    broker, alerts = StuckBroker(10_000), AlertInbox()
    system = start_trading_system(
        Settings(max_restarts=0), broker, ListSignalSource(), alerts=alerts, clock=ManualClock(), loop_interval=None,
        fail_safe_deadline=0.5, drills=True,
    )
    try:
        broker.stuck = True
        system.guard.tell(Crash("fatal"))
        assert alerts.wait_for("Supervisor gave up").critical
        assert system.wait(WAIT), "the supervisor escalated although the broker hung"
    finally:
        release.set()


def _locked_from_outside(path: str) -> bool:
    # True when another process sees a lock on the file that conflicts with a write lock.
    probe = (
        "import fcntl, os, struct, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "held = struct.unpack('hhqqi', fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack('hhqqi', fcntl.F_WRLCK, 0, 0, 0, 0)))\n"
        "print(held[0] != fcntl.F_UNLCK)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe, path], capture_output=True, text=True, timeout=WAIT, check=True)
    return result.stdout.strip() == "True"


def test_two_systems_on_one_state_file_are_refused_until_the_first_stops(tmp_path):
    # Both used to start and trade: a halt of one left the other trading the same account.
    path = str(tmp_path / "state.db")
    settings = Settings(state_db=path)
    first = TradingSystem(settings, paper("X"), ListSignalSource(), clock=ManualClock(), loop_interval=None).start()
    try:
        with pytest.raises(StateFileHeld) as refused:
            TradingSystem(settings, paper("X"), ListSignalSource(), clock=ManualClock(), loop_interval=None)
        assert str(refused.value) == (
            f"state_db {path!r} is in use by another trading system in this process: two systems on one state file "
            "would both trade the account; stop the other, or give this one its own STATE_DB"
        )
        assert first.guard_status().state.trading_state is TradingState.ACTIVE  # the first is untouched
        # ... and so are its SQLite locks: closing a descriptor of the file on the way out would
        # have dropped them, and an outside reader would then have checkpointed and deleted its WAL.
        assert _locked_from_outside(path)
    finally:
        first.stop()
    second = TradingSystem(settings, paper("X"), ListSignalSource(), clock=ManualClock(), loop_interval=None).start()
    second.stop()


def test_a_system_refused_after_it_claimed_its_state_file_lets_the_claim_go(tmp_path):
    settings = Settings(state_db=str(tmp_path / "state.db"), statsd_host="no-such-host.invalid")
    with pytest.raises(ValueError, match=r"^statsd_host 'no-such-host.invalid' \(port 8125\) cannot be resolved"):
        TradingSystem(settings, paper("X"), ListSignalSource(), clock=ManualClock(), loop_interval=None)
    fixed = attrs.evolve(settings, statsd_host=None)
    TradingSystem(fixed, paper("X"), ListSignalSource(), clock=ManualClock(), loop_interval=None).start().stop()


def test_a_store_the_caller_gives_is_the_callers_to_claim(tmp_path):
    # (`tradewarden run` claims the file itself, then hands the system its store.)
    path = str(tmp_path / "state.db")
    claim = StateFileClaim.of(path)
    try:
        with SqliteStore(path) as store:
            trading = TradingSystem(Settings(state_db=path), paper("X"), ListSignalSource(), store=store,
                                    clock=ManualClock(), loop_interval=None).start()
            trading.stop()
    finally:
        assert claim is not None
        claim.close()


class FullDisk(MemoryStore):
    """A store whose disk is full: every guard record, pending halt and event is refused while ``full``."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False

    def _refuse(self) -> None:
        if self.full:
            raise StoreError("state_db 'state.db': saving failed: database or disk is full")

    def save_guard(self, loop_id, record) -> None:
        self._refuse()
        super().save_guard(loop_id, record)

    def save_pending_halt(self, loop_id, halt) -> None:
        self._refuse()
        super().save_pending_halt(loop_id, halt)

    def append_event(self, event) -> bool:
        self._refuse()
        return super().append_event(event)


def test_a_fail_safe_halt_the_store_refused_is_said_and_saved_again_once_it_takes_it():
    # `tradewarden run` exited 1 ("trading is halted"), and its restart found the account ACTIVE.
    broker, store, alerts = paper("A"), FullDisk(), AlertInbox()
    system = start_trading_system(Settings(max_restarts=2, within_seconds=60), broker, ListSignalSource(), store=store,
                                  alerts=alerts, clock=ManualClock(), loop_interval=None, drills=True)
    system.guard.ask(GetGuardState(), timeout=WAIT)  # (its record saved while there was room)
    store.full = True
    for attempt in range(3):
        system.guard.tell(Crash("broken guard"))
        if attempt < 2:
            system.guard.ask(GetGuardState(), timeout=WAIT)
    assert system.wait(WAIT) and system.gave_up
    assert system.halt_unsaved and store.load_guard("main").trading_state is TradingState.ACTIVE
    assert system.save_halt_again() is False  # still full
    store.full = False
    assert system.save_halt_again() is True and not system.halt_unsaved
    record = store.load_guard("main")
    assert record.trading_state is TradingState.HALTED and record.reason.startswith("supervisor gave up: ")
    system.stop()


class PagerDownTwice:
    """An alert sink whose first two sends of the fail-safe's alert raise."""

    def __init__(self) -> None:
        self.refused = 0
        self.delivered: list[str] = []

    def send(self, alert) -> None:
        if alert.title.startswith("Supervisor gave up") and self.refused < 2:
            self.refused += 1
            raise ConnectionError("my pager is down")
        self.delivered.append(alert.title)


def test_the_fail_safes_alert_is_sent_again_when_the_sink_raised():
    # It was tried once: the alert that says trading stopped for good was lost to a pager that was down.
    sink = PagerDownTwice()
    system = start_trading_system(Settings(max_restarts=0, within_seconds=60), paper("A"), ListSignalSource(),
                                  store=MemoryStore(), alerts=sink, clock=ManualClock(), loop_interval=None, drills=True)
    system.guard.tell(Crash("broken guard"))
    assert system.wait(WAIT) and system.gave_up
    system.stop()
    assert sink.refused == 2 and "Supervisor gave up: trading halted" in sink.delivered
