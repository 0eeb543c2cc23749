"""The gate's order history and the runaway latch survive a guard crash: a restarted guard goes on
refusing what the rate limits refuse, and stays REDUCING for a runaway, from the SQLite store."""

from __future__ import annotations

from pathlib import Path

from actor_helpers import WAIT, AlertInbox, EventLog, wait_until

from actors import start_trading_system
from actors.messages import Crash, PlaceOrder
from runtime import EventType, ListSignalSource, ManualClock, MemoryMetrics, Order, PaperBroker, Settings, TradingState
from runtime.adapters.sqlite import SqliteStore


def test_the_rate_limit_and_the_runaway_latch_still_apply_after_the_guard_restarts(tmp_path: Path):
    broker, clock, events, alerts = PaperBroker(10_000), ManualClock(), EventLog(), AlertInbox()
    broker.update_price("EURUSD", 1.0)
    store = SqliteStore(tmp_path / "state.db")
    settings = Settings(max_orders_per_day=3, runaway_refusals=2, runaway_window_seconds=600)
    system = start_trading_system(
        settings, broker, ListSignalSource(), store=store, alerts=alerts, clock=clock,
        loop_interval=None, subscribers=[events], drills=True,
    )

    def place(side: str = "buy"):
        return system.guard.ask(PlaceOrder(Order("EURUSD", side, 1), clock.now()), timeout=WAIT)

    def crash(incarnation: int) -> None:
        system.guard.tell(Crash("drill"))
        assert wait_until(lambda: (g := system.children()["guard"]).incarnation == incarnation and g.alive)

    try:
        for _ in range(3):
            assert place().executed
            clock.advance(1)
        crash(2)
        refused = place()
        assert refused.refusal == "orders 4 in 86400s > limit 3 for EURUSD"  # the three before the crash count
        assert store.load_gate("main").refusals == (clock.now().timestamp(),)
        crash(3)
        flood = place()  # the refusal before the crash counts too: two make a runaway
        runaway = "runaway order loop: 2 orders refused by rate limits within 600s (limit 2)"
        assert flood.refusal == "orders 4 in 86400s > limit 3 for EURUSD" and flood.trading_state is TradingState.REDUCING
        alerts.wait_for("Runaway order loop")
        crash(4)
        status = system.guard_status()
        assert (status.state.trading_state, status.state.reason) == (TradingState.REDUCING, runaway)
        assert place().refusal == "reducing: only orders that reduce exposure are allowed"
        assert place("sell").executed  # reducing still goes out
        assert broker.net_volume("EURUSD") == 2
        failed = [e.metadata["refused_by"] for e in events.wait_count(EventType.TRADE_FAILED, 3)]
        assert failed == ["max_orders_per_day", "max_orders_per_day", "trading_state"]
        assert system.resume(by="desk") is TradingState.REDUCING
        record = store.load_gate("main")  # four sent, of which the rule needs only its limit's worth
        assert (len(record.sent), record.refusals, record.latched, record.latched_at, record.halted_by) == (3, (), None, None, ())
    finally:
        system.stop()
        store.close()


def test_a_process_that_starts_with_a_runaway_latch_says_it_is_reducing(tmp_path: Path):
    broker, clock = PaperBroker(10_000), ManualClock()
    broker.update_price("EURUSD", 1.0)
    store = SqliteStore(tmp_path / "state.db")
    settings = Settings(max_orders_per_day=1, runaway_refusals=2, runaway_window_seconds=600)
    try:
        first = start_trading_system(settings, broker, ListSignalSource(), store=store, clock=clock, loop_interval=None)
        try:
            for _ in range(3):  # one sent, two refused: a runaway
                first.guard.ask(PlaceOrder(Order("EURUSD", "buy", 1), clock.now()), timeout=WAIT)
            assert first.guard_status().state.trading_state is TradingState.REDUCING
        finally:
            first.stop()
        alerts, metrics = AlertInbox(), MemoryMetrics()
        second = start_trading_system(settings, broker, ListSignalSource(), store=store, clock=clock, loop_interval=None,
                                      alerts=alerts, metrics=metrics)
        try:
            started = alerts.wait_for("Started reducing")
            assert started.text == ("runaway order loop: 2 orders refused by rate limits within 600s (limit 2); only "
                                    "orders that reduce exposure go through")
            assert metrics.gauges["trading_state"] == 1
        finally:
            second.stop()
    finally:
        store.close()


class GateSavesRefused(SqliteStore):
    """A state file whose gate saves raise while ``full`` is set (a disk full for a moment)."""

    full = False

    def save_gate(self, loop_id, record):
        if self.full:
            raise OSError(28, "No space left on device")
        super().save_gate(loop_id, record)


def test_a_runaway_latch_the_store_refused_is_saved_again_once_it_takes_it_so_a_restart_keeps_it(tmp_path: Path):
    broker, clock, alerts = PaperBroker(10_000), ManualClock(), AlertInbox()
    broker.update_price("EURUSD", 1.0)
    store = GateSavesRefused(tmp_path / "state.db")
    settings = Settings(max_orders_per_second=1, runaway_refusals=2, runaway_window_seconds=600)
    system = start_trading_system(settings, broker, ListSignalSource(), store=store, alerts=alerts, clock=clock,
                                  loop_interval=None, drills=True)

    def place(side: str = "buy"):
        return system.guard.ask(PlaceOrder(Order("EURUSD", side, 1), clock.now()), timeout=WAIT)

    try:
        assert place().executed
        store.full = True  # the disk fills for a moment: the flood's refusals and its latch are not saved
        assert place().refusal == place().refusal == "orders 2 in 1s > limit 1 for EURUSD"
        runaway = "runaway order loop: 2 orders refused by rate limits within 600s (limit 2)"
        assert system.guard_status().state.reason == runaway
        store.full = False
        assert alerts.wait_for("Gate state saved").text == "the state store took the gate's record again after 2 failed tries"
        assert [(a.title, a.text) for a in alerts.sent if a.title == "Gate state not saved"] == [
            ("Gate state not saved", "OSError(28, 'No space left on device'); the guard keeps acting on its order "
             "history and latches, and saves them again until the store takes them")]
        assert store.load_gate("main").latched == runaway
        system.guard.tell(Crash("drill"))
        assert wait_until(lambda: (g := system.children()["guard"]).incarnation == 2 and g.alive)
        status = system.guard_status()
        assert (status.state.trading_state, status.state.reason) == (TradingState.REDUCING, runaway)
        clock.advance(5)
        assert place().refusal == "reducing: only orders that reduce exposure are allowed"
        assert broker.net_volume("EURUSD") == 1
    finally:
        system.stop()
        store.close()


def test_a_days_trades_the_store_refused_are_carried_to_the_next_guard_when_the_guard_crashes_first(tmp_path: Path):
    broker, clock, alerts = PaperBroker(10_000), ManualClock(), AlertInbox()
    broker.update_price("EURUSD", 1.0)
    store = GateSavesRefused(tmp_path / "state.db")
    system = start_trading_system(Settings(max_trades_per_day=1), broker, ListSignalSource(), store=store, alerts=alerts,
                                  clock=clock, loop_interval=None, drills=True)

    def place():
        return system.guard.ask(PlaceOrder(Order("EURUSD", "buy", 1), clock.now()), timeout=WAIT)

    try:
        store.full = True
        assert place().executed  # counted in this guard only: its record is refused
        sent = (clock.now().timestamp(),)
        system.guard.tell(Crash("drill"))  # before the store takes it
        assert wait_until(lambda: (g := system.children()["guard"]).incarnation == 2 and g.alive)
        clock.advance(60)
        assert place().refusal == "trades 2 on 2024-01-01 (UTC) > limit 1 for EURUSD"  # the one before the crash counts
        store.full = False
        assert wait_until(lambda: store.load_gate("main") is not None and store.load_gate("main").sent == sent)
        assert alerts.wait_for("Gate state saved").text.startswith("the state store took the gate's record again after ")
        assert broker.net_volume("EURUSD") == 1
    finally:
        system.stop()
        store.close()
