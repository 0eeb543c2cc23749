"""A slow store is not a hung guard: another writer holding SQLite's lock, or a store that blocks
(a failover, a backup), makes the guard's store calls slow, and it must not be abandoned for it.

Each store call of the guard runs in a busy section with its own bound, as its broker calls do:
a call that waits is a slow or refused save (saved again once the store takes it), and a call
past its bound is reported as a slow store call, never as a guard that stopped answering.
"""

from __future__ import annotations

import re
import sqlite3
import threading

from actor_helpers import WAIT, AlertInbox, LogLines, wait_until
from test_guard_actor import T0, GuardTree, broker_with_positions
from test_system import paper

from actors import start_trading_system
from actors.messages import Crash, EquityReading, RunCycle
from runtime import EventType, ListSignalSource, ManualClock, MemoryStore, Settings, Signal, TradingState
from runtime.adapters.sqlite import SqliteStore


def test_another_writer_holding_the_sqlite_lock_is_a_refused_save_saved_again_not_a_hung_guard(tmp_path):
    # The busy timeout (1 s) is longer than the guard's liveness timeout (0.3 s), as SQLite's 5 s
    # equals the trading system's: each save waits on the lock past many unanswered probes.
    path = tmp_path / "state.db"
    store = SqliteStore(path, busy_timeout=1.0)
    broker = broker_with_positions("X")
    tree = GuardTree(broker, store=store, guard_liveness=0.3)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # an operator's sqlite3 shell, a backup: the write lock is theirs
        tree.read(10_100.0)  # a new peak: saved
        tree.journal.wait_for(lambda es: any(a.title == "Guard state not saved" for a in tree.alerts()))
        other.execute("ROLLBACK")
        tree.journal.wait_for(lambda es: any(a.title == "Guard state saved" for a in tree.alerts()))
        guard = tree.handle.children()["guard"]
        assert (guard.incarnation, guard.alive, guard.restarts) == (1, True, 0)
        [refused] = [a for a in tree.alerts() if a.title == "Guard state not saved"]
        assert refused.text == (
            "StoreError(\"state_db '" + str(path) + "': saving the guard record of loop 'main' failed: database is "
            "locked\"); the guard keeps acting on what it holds, and saves it again until the store takes it"
        )
        assert store.load_guard("main").drawdown.peak_equity == 10_100.0
        assert tree.status().state.peak_equity == 10_100.0
        assert len(broker.open_positions()) == 1  # nothing was liquidated for a slow store
    finally:
        other.close()
        tree.stop()
        store.close()


class BlockingStore(MemoryStore):
    """A store whose guard saves block, once armed, until the test releases them (a failover)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def save_guard(self, loop_id, record):
        if self.armed:
            self.entered.set()
            if not self.release.wait(WAIT):
                raise AssertionError(f"the test did not release the store within {WAIT}s")
        super().save_guard(loop_id, record)


def test_a_store_call_past_its_bound_is_reported_as_a_slow_store_and_the_guard_is_not_abandoned():
    store = BlockingStore()
    tree = GuardTree(broker_with_positions("X"), store=store, guard_liveness=0.1, store_call_bound=0.3)
    try:
        store.armed = True
        with LogLines("CRITICAL") as lines:
            tree.guard.tell(EquityReading(10_100.0, T0))
            assert store.entered.wait(WAIT)
            # While it still waits, the supervisor says once that the store call is past its bound.
            [overdue] = lines.wait_for(lambda seen: any("past its" in line for line in seen))
            assert re.fullmatch(
                r"CRITICAL guard incarnation 1 has been inside store\.save_guard for \d+\.\ds, past its 0\.3s bound; "
                r"not abandoned", overdue), overdue
            store.release.set()
        tree.journal.wait_for(lambda es: any(a.title == "Store call slow" for a in tree.alerts()))
        [slow] = [a for a in tree.alerts() if a.title == "Store call slow"]
        assert slow.severity.value == "critical"
        assert re.fullmatch(r"store\.save_guard took \d+\.\ds, past the 0\.3s bound", slow.text), slow.text
        guard = tree.handle.children()["guard"]
        assert (guard.incarnation, guard.alive, guard.restarts) == (1, True, 0)
        assert store.load_guard("main").drawdown.peak_equity == 10_100.0
        assert not any(line for line in lines.snapshot() if "liveness probe" in line)
    finally:
        store.release.set()
        tree.stop()


class FailingOver(MemoryStore):
    """A store in a failover: while ``failing_over``, reading or saving a guard record waits until
    the test releases it (as a PostgreSQL client waits for the new primary)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing_over = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def _wait(self) -> None:
        if self.failing_over:
            self.entered.set()
            # (longer than the test waits for anything, so that a fail-safe waiting on it fails the test)
            if not self.release.wait(3 * WAIT):
                raise AssertionError(f"the test did not release the store within {3 * WAIT}s")

    def load_guard(self, loop_id):
        self._wait()
        return super().load_guard(loop_id)

    def save_guard(self, loop_id, record):
        self._wait()
        super().save_guard(loop_id, record)


def test_the_fail_safe_closes_every_position_without_waiting_for_a_blocked_store_and_saves_halted_once_it_answers():
    # It saved HALTED first, on its own thread: the positions stayed open for as long as the store
    # did not answer, and the fail-safe (which cannot hang, whatever its ports do) hung with them.
    broker, store, alerts = paper("A", "B"), FailingOver(), AlertInbox()
    system = start_trading_system(Settings(max_restarts=0), broker, ListSignalSource(), store=store, alerts=alerts,
                                  clock=ManualClock(), loop_interval=None, fail_safe_deadline=1.0, drills=True)
    try:
        store.failing_over = True
        with LogLines("CRITICAL") as lines:
            system.guard.tell(Crash("broken guard"))
            assert store.entered.wait(WAIT)
            assert wait_until(lambda: broker.open_positions() == []), "the closing waited for the store"
            assert alerts.wait_for("Supervisor gave up").critical
            assert system.wait(WAIT), "the fail-safe waited for the store past its deadline"
            assert system.gave_up and system.halt_unsaved
            lines.wait_for(lambda seen: any("HALTED not saved" in line for line in seen))
        assert [line for line in lines.snapshot() if "HALTED not saved" in line] == [
            "CRITICAL fail-safe HALTED not saved within its 1s deadline: the store has not answered; it is saved "
            "as soon as the store answers"
        ]
        assert not store.release.is_set()  # all of that while the store still did not answer
        # Journaled after the halt's TRADING_STATE_CHANGED, which waits on the store: by the deadline.
        def closed() -> list[str]:
            return sorted(e.metadata["symbol"] for e in store.events() if e.event_type is EventType.POSITION_CLOSED)

        assert wait_until(lambda: closed() == ["A", "B"]), closed()  # (the journal writes on its own thread)
        assert not [e for e in store.events() if e.event_type is EventType.TRADING_STATE_CHANGED]
        store.release.set()
        assert wait_until(lambda: [e.event_type for e in store.events()][-3:] == [
            EventType.POSITION_CLOSED, EventType.POSITION_CLOSED, EventType.TRADING_STATE_CHANGED])
        assert wait_until(lambda: not system.halt_unsaved)
        record = store.load_guard("main")
        assert record.trading_state is TradingState.HALTED
        assert record.reason == "supervisor gave up: guard ended (crashed: RuntimeError: broken guard) and restarts " \
            "exceeded 0 within 60.0s"
    finally:
        store.release.set()
        system.stop()


class TotalsFailingOver(MemoryStore):
    """A store in a failover for the loop's lifetime totals: saving them waits, once armed,
    until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def save_loop_totals(self, loop_id, totals):
        self.entered.set()
        if not self.release.wait(3 * WAIT):
            raise AssertionError(f"the test did not release the store within {3 * WAIT}s")
        super().save_loop_totals(loop_id, totals)


def test_a_loop_waiting_on_its_store_is_slow_not_stalled_and_a_call_past_its_bound_is_reported():
    # The heartbeat took it for stalled ("loop did not answer within 0.2s") and had it abandoned
    # and restarted, each restart counted against the intensity that ends in the fail-safe.
    store, alerts = TotalsFailingOver(), AlertInbox()
    settings = Settings(heartbeat_interval_seconds=0.4, stall_after_seconds=60, store_call_bound_seconds=0.3)
    system = start_trading_system(settings, paper("A"), ListSignalSource([Signal("A", "buy", 1)]), store=store,
                                  alerts=alerts, loop_interval=None)
    try:
        with LogLines("WARNING") as lines:
            system.loop.tell(RunCycle())
            assert store.entered.wait(WAIT)
            said = lines.wait_for(lambda seen: any("not a stall" in line or "loop stalled" in line for line in seen)
                                  and any("past its" in line for line in seen))
            store.release.set()
        [slow] = [line for line in said if "not a stall" in line or "loop stalled" in line][:1]
        assert re.fullmatch(r"WARNING loop did not answer within 0\.2s: inside store\.save_loop_totals for \d+\.\ds, "
                            r"not a stall", slow), slow
        [overdue] = [line for line in said if "past its" in line]
        assert re.fullmatch(r"CRITICAL loop incarnation 1 has been inside store\.save_loop_totals for \d+\.\ds, past "
                            r"its 0\.3s bound; not abandoned", overdue), overdue
        assert wait_until(lambda: store.load_loop_totals("main") is not None)
        assert store.load_loop_totals("main").total_signals_lifetime == 1
        loop = system.children()["loop"]
        assert (loop.incarnation, loop.alive, loop.restarts) == (1, True, 0)
        overdue_alert = alerts.wait_for("Call overdue")
        assert overdue_alert.critical and re.fullmatch(
            r"loop incarnation 1 has been inside store\.save_loop_totals for \d+\.\ds, past its 0\.3s bound; not abandoned",
            overdue_alert.text), overdue_alert.text
        assert not [a for a in alerts.sent if a.title == "Trading loop stalled"]
    finally:
        store.release.set()
        system.stop()
