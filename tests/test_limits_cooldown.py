"""Opt-in cooldown: the pure rule of when a latch lifts, and a real system resuming by itself on
its timers (a manual clock here, as a replay's data clock), journaled and alerted."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import attrs
import pytest
from actor_helpers import WAIT, AlertInbox, EventLog, LogLines, wait_until
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from actors import start_trading_system
from actors.messages import Crash, EquityReading, PlaceOrder
from runtime import BrokerError, EventType, ListSignalSource, ManualClock, Order, PaperBroker, Settings, TradingState
from runtime.risk.cooldown import Cooldown
from runtime.store import MemoryStore
from runtime.testing import aware_datetimes, next_midnight, timezones

T0 = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


# --- the rule -------------------------------------------------------------------------------------


def test_a_daily_loss_halt_lifts_at_the_next_trading_day_in_the_zone():
    cooldown = Cooldown("daily_loss", timezone="Europe/London")
    summer = datetime(2024, 7, 1, 22, 30, tzinfo=UTC)  # 23:30 in London
    assert cooldown.resume_at(["daily_loss"], summer) == datetime(2024, 7, 1, 23, 0, tzinfo=UTC)


def test_a_timed_halt_lifts_its_seconds_after_and_a_joint_halt_at_the_latest_end():
    cooldown = Cooldown("max_drawdown, daily_loss", seconds=3_600)
    assert cooldown.resume_at(("max_drawdown",), T0) == T0 + timedelta(hours=1)
    assert cooldown.resume_at(("max_drawdown", "daily_loss"), T0) == datetime(2024, 3, 2, tzinfo=UTC)
    late = datetime(2024, 3, 1, 23, 30, tzinfo=UTC)
    assert cooldown.resume_at(("daily_loss", "max_drawdown"), late) == late + timedelta(hours=1)


def test_a_halt_joined_by_a_rule_not_named_stays_latched():
    cooldown = Cooldown(["daily_loss"])
    assert cooldown.resume_at(("daily_loss", "min_equity"), T0) is None
    assert cooldown.resume_at((), T0) is None
    assert not cooldown.covers(["runaway_loop"]) and cooldown.covers(["daily_loss"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rules": "daily_loss, rebound"}, "cooldown_rules must name one or more of max_drawdown, min_equity, daily_loss, runaway_loop, got ['daily_loss', 'rebound']"),
        ({"rules": " , "}, "cooldown_rules must name one or more of max_drawdown, min_equity, daily_loss, runaway_loop, got []"),
        ({"rules": "runaway_loop"}, "cooldown_seconds must be set for a cooldown of runaway_loop, got None"),
        ({"rules": "daily_loss", "seconds": 0}, "seconds must be > 0, got 0"),
        # A year and a day at most: 1e12 s passed, and the guard crashed computing the end at its first halt.
        ({"rules": "max_drawdown", "seconds": 1e12}, "seconds must be at most 31,622,400 (366 days): leave it unset to "
                                                      "keep a halt until an operator resumes, got 1000000000000.0"),
        ({"rules": "daily_loss", "timezone": "Mars/Olympus"}, "timezone must be an IANA time zone name, got 'Mars/Olympus'"),
    ],
)
def test_a_bad_cooldown_is_refused_naming_the_field_and_value(kwargs, message):
    with pytest.raises(ValueError) as info:
        Cooldown(**kwargs)
    assert str(info.value) == message


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(timezones().flatmap(lambda zone: st.tuples(st.just(zone), aware_datetimes(zone))))
# Havana's clocks went back from 01:00 to 00:00 that night: its midnight came twice, the first one wins.
@example(("America/Havana", datetime(2016, 11, 5, tzinfo=ZoneInfo("America/Havana"))))
def test_a_daily_loss_halt_always_lifts_at_the_first_midnight_after_it(case):
    zone, halted = case
    resumes = Cooldown("daily_loss", timezone=zone).resume_at(["daily_loss"], halted)
    assert resumes > halted
    # As instants: a local midnight that a clock change repeats is never == a UTC time (PEP 495).
    assert resumes == next_midnight(halted, zone).astimezone(UTC)


def test_a_daily_loss_halt_lifts_at_the_first_of_two_midnights_when_the_clock_goes_back_at_one():
    # Havana left DST at 01:00 on 2021-11-07, back to 00:00: that midnight happened twice.
    halted = datetime(2021, 11, 6, 12, 0, tzinfo=UTC)  # 08:00 in Havana
    resumes = Cooldown("daily_loss", timezone="America/Havana").resume_at(["daily_loss"], halted)
    assert resumes == datetime(2021, 11, 7, 4, 0, tzinfo=UTC)
    assert resumes.isoformat() == "2021-11-07T04:00:00+00:00"


def test_the_settings_make_the_cooldown_and_refuse_a_bad_one_naming_the_source():
    assert Settings(cooldown_rules="daily_loss", trading_timezone="Asia/Tokyo").cooldown() == Cooldown(
        frozenset({"daily_loss"}), None, "Asia/Tokyo"
    )
    assert Settings().cooldown() is None
    loaded = Settings.load(environ={"COOLDOWN_RULES": "runaway_loop,max_drawdown", "COOLDOWN_SECONDS": "90"})
    assert loaded.cooldown() == Cooldown(frozenset({"runaway_loop", "max_drawdown"}), 90.0, "UTC")
    with pytest.raises(ValueError) as info:
        Settings.load(environ={"COOLDOWN_RULES": "weekend"})
    assert str(info.value) == (
        "COOLDOWN_RULES='weekend': cooldown_rules must name one or more of max_drawdown, min_equity, "
        "daily_loss, runaway_loop, got ['weekend']"
    )
    with pytest.raises(ValueError) as info:
        Settings.load(environ={"COOLDOWN_SECONDS": "-5"})
    assert str(info.value) == "COOLDOWN_SECONDS='-5': cooldown_seconds must be > 0, got -5.0"


# --- the guard ------------------------------------------------------------------------------------


class Running:
    """A whole trading system on a manual clock, a paper account long EURUSD at 1.0."""

    def __init__(self, settings: Settings, broker: PaperBroker | None = None) -> None:
        self.clock = ManualClock(T0)
        self.broker = broker if broker is not None else PaperBroker(10_000)
        self.broker.update_price("EURUSD", 1.0)
        self.events, self.alerts = EventLog(), AlertInbox()
        # No loop cycles here (loop_interval=None): the days the clock jumps are not a stall.
        settings = attrs.evolve(settings, stall_after_seconds=1e9)
        self.system = start_trading_system(
            settings, self.broker, ListSignalSource(), alerts=self.alerts, clock=self.clock,
            loop_interval=None, subscribers=[self.events], drills=True,
        )

    def read(self) -> None:
        broker = self.broker
        self.system.guard.tell(EquityReading(broker.account_equity(), self.clock.now(), len(broker.open_positions())))

    def lose(self, price: float) -> None:
        self.broker.submit_order(Order("EURUSD", "buy", 10_000))
        self.broker.update_price("EURUSD", price)
        self.read()

    def state(self) -> TradingState:
        return self.system.guard_status().state.trading_state

    def changes(self) -> list[tuple[str, str, str]]:
        return [(e.metadata["from"], e.metadata["to"], e.metadata["reason"]) for e in self.events.of(EventType.TRADING_STATE_CHANGED)]

    def titled(self, title: str) -> list[str]:
        return [a.text for a in self.alerts.sent if a.title == title]


@pytest.fixture
def running():
    made: list[Running] = []

    def make(broker: PaperBroker | None = None, **settings) -> Running:
        made.append(Running(Settings(**settings), broker))
        return made[-1]

    yield make
    for run in made:
        run.system.stop()


def test_a_daily_loss_halt_resumes_by_itself_at_the_next_trading_day(running):
    run = running(daily_loss_percent=5, cooldown_rules="daily_loss")
    run.read()
    run.lose(0.94)  # 6% down on the day
    assert run.state() is TradingState.HALTED
    run.clock.set(datetime(2024, 3, 1, 23, 59, 59, tzinfo=UTC))
    assert run.state() is TradingState.HALTED
    run.clock.advance(1)
    assert wait_until(lambda: run.state() is TradingState.ACTIVE)
    why = "resumed automatically: the cooldown after daily_loss ended"
    run.events.wait_for(lambda es: any(e.metadata.get("reason") == why for e in es))
    assert run.changes()[-1] == ("halted", "active", why)
    run.alerts.wait_for("Trading resumed automatically")
    assert run.titled("Trading resumed automatically") == [why]
    assert run.broker.open_positions() == []


class ClosesLater(PaperBroker):
    """A paper account whose positions cannot be closed (the market is shut) until ``closable`` is set."""

    in_process = True

    def __init__(self, cash: float) -> None:
        super().__init__(cash)
        self.closable = threading.Event()

    def close_position(self, position_id: str, client_id: str | None = None):
        if not self.closable.is_set():
            raise BrokerError("market closed")
        return super().close_position(position_id, client_id)


def test_a_cooldown_that_ends_before_the_breachs_positions_are_closed_resumes_only_once_they_are(running):
    # Resuming at midnight would have stopped the liquidation's retries and traded on beside the
    # position that breached the limit; the cooldown waits until the liquidation is done.
    broker = ClosesLater(10_000)
    run = running(broker, daily_loss_percent=5, cooldown_rules="daily_loss")
    run.read()
    run.lose(0.94)
    assert run.state() is TradingState.HALTED
    with LogLines() as lines:
        run.clock.set(datetime(2024, 3, 2, tzinfo=UTC))
        lines.wait_for(lambda seen: any("liquidation is not done" in line for line in seen))
    assert "WARNING the cooldown after daily_loss ended, but the liquidation is not done: trading resumes once the account is flat" in lines.snapshot()
    assert run.state() is TradingState.HALTED and len(broker.open_positions()) == 1
    refused = run.system.guard.ask(PlaceOrder(Order("EURUSD", "buy", 1), run.clock.now()), timeout=WAIT)
    assert (refused.refusal, refused.fill) == ("trading halted", None)
    broker.closable.set()  # the next retry closes it, and then the cooldown resumes trading
    assert wait_until(lambda: run.state() is TradingState.ACTIVE)
    assert broker.open_positions() == []
    why = "resumed automatically: the cooldown after daily_loss ended"
    run.events.wait_for(lambda es: any(e.metadata.get("reason") == why for e in es))  # (published after the state)
    assert run.changes()[-1] == ("halted", "active", why)


class SlowHaltsStore(MemoryStore):
    """A memory store whose pending halts take 50 ms to read, as over a network: a restarted
    guard's overdue cooldown then falls due while it is still starting."""

    def load_pending_halts(self, loop_id: str):
        threading.Event().wait(0.05)
        return super().load_pending_halts(loop_id)


def test_a_cooldown_that_ended_before_a_guard_restart_still_waits_for_the_liquidation(tmp_path):
    # On the real clock: the cooldown ends while the breach's position cannot be closed, then
    # the guard crashes. Its next incarnation found the cooldown over as it started and resumed
    # trading before its own liquidation had even begun; it must wait, as the first one did.
    broker = ClosesLater(10_000)
    broker.update_price("EURUSD", 1.0)
    settings = Settings(max_drawdown_percent=10, cooldown_rules="max_drawdown", cooldown_seconds=0.2,
                        stall_after_seconds=1e9)
    waiting = "WARNING the cooldown after max_drawdown ended, but the liquidation is not done: trading resumes once the account is flat"
    with LogLines() as lines:
        system = start_trading_system(settings, broker, ListSignalSource(), alerts=AlertInbox(), loop_interval=None,
                                      drills=True, store=SlowHaltsStore())
        try:
            broker.submit_order(Order("EURUSD", "buy", 10_000))
            broker.update_price("EURUSD", 0.85)
            system.guard.tell(EquityReading(broker.account_equity(), datetime.now(UTC), 1))
            lines.wait_for(lambda seen: seen.count(waiting) == 1)
            system.guard.tell(Crash("drill"))
            state = lambda: system.guard_status().state.trading_state  # noqa: E731
            # (asked outside the log's lock: the guard logs while it answers)
            assert wait_until(lambda: lines.snapshot().count(waiting) == 2 or state() is TradingState.ACTIVE)
            assert (system.children()["guard"].incarnation, state(), len(broker.open_positions())) == (
                2, TradingState.HALTED, 1)
            broker.closable.set()
            assert wait_until(lambda: state() is TradingState.ACTIVE)
            assert broker.open_positions() == []
        finally:
            system.stop()


def test_a_drawdown_halt_resumes_after_its_seconds_with_a_rebaseline(running):
    run = running(max_drawdown_percent=10, cooldown_rules="max_drawdown", cooldown_seconds=3_600)
    run.lose(0.85)
    assert run.state() is TradingState.HALTED
    run.clock.advance(3_599)
    assert run.state() is TradingState.HALTED
    run.clock.advance(1)
    assert wait_until(lambda: run.state() is TradingState.ACTIVE)
    [rebased] = run.events.wait_count(EventType.REBASELINED, 1)
    assert (rebased.metadata["by"], rebased.metadata["old_peak"], rebased.metadata["new_peak"]) == (
        "the cooldown after max_drawdown ended", 10_000.0, pytest.approx(8_500.0)
    )
    assert run.system.guard_status().state.peak_equity == pytest.approx(8_500.0)


def test_a_halt_the_account_still_breaches_stays_halted_with_an_alert_and_is_not_tried_again(running):
    run = running(min_equity=9_500, cooldown_rules="min_equity", cooldown_seconds=60)
    run.lose(0.94)
    assert run.state() is TradingState.HALTED
    run.clock.advance(60)
    alert = run.alerts.wait_for("Automatic resume refused")
    assert alert.text == (
        "the cooldown after min_equity ended, but resume refused: equity 9400.00 < minimum 9500.00; a rebaseline "
        "cannot lift min_equity (it moves the peak and the day's start, not a fixed level); trading stays halted "
        "until resumed"
    )
    run.clock.advance(3_600)
    assert run.state() is TradingState.HALTED and len(run.titled("Automatic resume refused")) == 1


def test_a_static_floor_halt_is_never_lowered_by_its_cooldown_and_stays_halted_with_an_alert(running):
    # The cooldown's rebaseline used to set the start to the equity then: the floor fell unattended,
    # 9,000 -> 7,920 -> 6,970 ... one halt at a time.
    run = running(max_drawdown_percent=10, drawdown_trailing=False, min_equity=0, cooldown_rules="max_drawdown",
                  cooldown_seconds=60)
    run.lose(0.88)  # 8,800: under the floor at 9,000
    assert run.state() is TradingState.HALTED
    run.clock.advance(60)
    alert = run.alerts.wait_for("Automatic resume refused")
    assert alert.text == (
        "the cooldown after max_drawdown ended, but resume refused, even with a rebaseline: static drawdown 12.00% >= "
        "limit 10.00% (start 10000.00, floor 9000.00, equity 8800.00); a static floor is fixed for the account's "
        "life; trading stays halted until resumed"
    )
    state = run.system.guard_status().state
    assert (state.trading_state, state.entry_equity) == (TradingState.HALTED, 10_000.0)
    run.clock.advance(3_600)
    assert run.state() is TradingState.HALTED and len(run.titled("Automatic resume refused")) == 1
    assert run.events.of(EventType.REBASELINED) == []


def test_a_halt_by_a_rule_not_named_or_by_hand_latches(running):
    run = running(daily_loss_percent=5, max_drawdown_percent=5, cooldown_rules="daily_loss")
    run.read()
    run.lose(0.94)  # breaches both: the drawdown is not named, so the halt latches
    assert run.state() is TradingState.HALTED
    run.clock.set(datetime(2024, 3, 3, tzinfo=UTC))
    run.read()
    assert run.state() is TradingState.HALTED and run.titled("Trading resumed automatically") == []


def test_an_operators_halt_cancels_a_pending_cooldown(running):
    run = running(daily_loss_percent=5, cooldown_rules="daily_loss")
    run.read()
    run.lose(0.94)
    assert run.state() is TradingState.HALTED
    breach = run.system.guard_status().state.reason
    assert breach.startswith("daily loss 6.00% >= limit 5.00%")
    run.system.halt("desk", "news")
    # The breach's numbers stay in the reason, which now says that no cooldown lifts it.
    latched = f"{breach}; then halted by desk: news (latched: no cooldown lifts it)"
    assert run.system.guard_status().state.reason == latched
    run.clock.set(datetime(2024, 3, 2, 1, 0, tzinfo=UTC))
    assert run.state() is TradingState.HALTED and run.titled("Trading resumed automatically") == []
    run.system.halt("desk", "still news")  # a third press: nothing more to latch, the reason stays
    assert run.system.guard_status().state.reason == latched
    run.events.wait_for(lambda es: len(run.changes()) == 3)
    assert run.changes() == [("active", "halted", breach), ("halted", "halted", "halted by desk: news"),
                             ("halted", "halted", "halted by desk: still news")]


def test_a_fail_safe_halt_over_a_breach_is_never_lifted_by_the_breachs_cooldown(running):
    run = running(daily_loss_percent=5, cooldown_rules="daily_loss", max_restarts=0)
    run.read()
    run.lose(0.94)
    assert run.state() is TradingState.HALTED
    breach = run.system.guard_status().state.reason
    run.system.guard.tell(Crash("drill"))  # no restart allowed: the supervisor gives up, the fail-safe runs
    assert run.system.wait(WAIT) and run.system.gave_up
    cause = run.alerts.wait_for("Supervisor gave up").text
    store = run.system.store
    assert store.load_guard("main").reason == f"{breach}; then supervisor gave up: {cause}"

    after = start_trading_system(Settings(daily_loss_percent=5, cooldown_rules="daily_loss", stall_after_seconds=1e9),
                                 run.broker, ListSignalSource(), store=store, clock=run.clock, loop_interval=None)
    try:
        run.clock.set(datetime(2024, 3, 2, 1, 0, tzinfo=UTC))  # past the day's end, when the cooldown would lift
        after.guard.tell(EquityReading(run.broker.account_equity(), run.clock.now(), 0))
        state = after.guard_status().state
        assert (state.trading_state, state.reason) == (TradingState.HALTED, f"{breach}; then supervisor gave up: {cause}")
    finally:
        after.stop()


def test_a_pending_cooldown_survives_a_guard_crash(running):
    run = running(daily_loss_percent=5, cooldown_rules="daily_loss")
    run.read()
    run.lose(0.94)
    assert run.state() is TradingState.HALTED
    run.system.guard.tell(Crash("drill"))
    assert wait_until(lambda: run.system.children()["guard"].incarnation == 2 and run.system.children()["guard"].alive)
    assert run.state() is TradingState.HALTED
    run.clock.set(datetime(2024, 3, 2, tzinfo=UTC))
    assert wait_until(lambda: run.state() is TradingState.ACTIVE)
    run.alerts.wait_for("Trading resumed automatically")


def test_a_runaway_latch_lifts_after_its_cooldown(running):
    run = running(max_orders_per_second=1, runaway_refusals=2, cooldown_rules="runaway_loop", cooldown_seconds=30)
    at = run.clock.now()
    outcomes = [run.system.guard.ask(PlaceOrder(Order("EURUSD", "buy", 1), at), timeout=WAIT) for _ in range(3)]
    assert [o.refusal for o in outcomes] == [None, "orders 2 in 1s > limit 1 for EURUSD", "orders 2 in 1s > limit 1 for EURUSD"]
    assert run.state() is TradingState.REDUCING
    run.clock.advance(29)
    assert run.state() is TradingState.REDUCING
    run.clock.advance(1)
    assert wait_until(lambda: run.state() is TradingState.ACTIVE)
    why = "resumed automatically: the cooldown after runaway_loop ended"
    run.events.wait_for(lambda es: any(e.metadata.get("reason") == why for e in es))
    assert run.changes()[-1] == ("reducing", "active", why)
    alert = run.alerts.wait_for("Trading resumed automatically")
    assert alert.text == f"{why} (runaway order loop: 2 orders refused by rate limits within 60s (limit 2))"
    assert run.system.guard.ask(PlaceOrder(Order("EURUSD", "buy", 1), run.clock.now()), timeout=WAIT).executed
