"""The kill switch holds from the moment it is pressed: orders queued at the guard behind a slow
broker call are refused as halted, never sent, and the halt is carried out once."""

from __future__ import annotations

import threading
from typing import Any

import pykka
import pytest
from actor_helpers import WAIT, AlertInbox, EventLog, wait_until
from support.slow_start import SlowStart

from actors import TradingSystem, start_trading_system
from actors.messages import Crash, Ping, PlaceOrder, Resume
from actors.pressed_halts import HaltNotConfirmed
from runtime import EventType, ListSignalSource, MemoryStore, Order, PaperBroker, Settings, TradingState


class HeldBroker(PaperBroker):
    """A paper account whose first order blocks inside `submit_order` until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__(10_000)
        self.update_price("A", 100.0)
        self.entered, self.release = threading.Event(), threading.Event()
        self.sent: list[str] = []

    def submit_order(self, order: Order):
        self.sent.append(order.client_id)
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(WAIT)
        return super().submit_order(order)


class NoPendingHalts(MemoryStore):
    """A store that refuses to save a pending halt (a full disk, say)."""

    def save_pending_halt(self, loop_id, halt):
        raise OSError("disk full")


@pytest.fixture(params=[MemoryStore])
def held(request):
    broker, alerts, events, store = HeldBroker(), AlertInbox(), EventLog(), request.param()
    system = start_trading_system(Settings(), broker, ListSignalSource(), store=store, alerts=alerts,
                                  subscribers=[events], loop_interval=None)
    first = Order("A", "buy", 1)
    answers: dict[str, object] = {}
    asking = threading.Thread(target=lambda: answers.setdefault("first", system.guard.ask(PlaceOrder(first, _now()), timeout=WAIT)))
    asking.start()
    assert broker.entered.wait(WAIT)
    queued = [Order("A", "buy", volume) for volume in (2, 3, 4)]
    for order in queued:
        system.guard.tell(PlaceOrder(order, _now()))
    try:
        yield system, broker, alerts, events, store, first, queued, answers
    finally:
        broker.release.set()
        asking.join(WAIT)
        system.stop()


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _carried_out_once(system, broker, alerts, events, store, first, queued, answers) -> None:
    refused = events.wait_count(EventType.TRADE_FAILED, len(queued))
    status = system.guard_status()  # answered after the Halt message, queued before it
    system.address("alerts").ask(Ping(), timeout=WAIT)  # and after every alert the guard told before it
    assert system.journaled(WAIT)
    assert broker.sent == [first.client_id]  # none of the queued orders reached the broker
    assert [(e.metadata["client_order_id"], e.metadata["refused_by"], e.metadata["error"]) for e in refused] == [
        (order.client_id, "trading_state", "trading halted") for order in queued
    ]
    assert wait_until(lambda: "first" in answers)  # (its asker keeps the answer on its own thread)
    assert answers["first"].executed
    changes = [e for e in store.events() if e.event_type is EventType.TRADING_STATE_CHANGED]
    assert [(e.metadata["from"], e.metadata["to"], e.metadata["reason"]) for e in changes] == [
        ("active", "halted", "halted by desk: news at 14:30")]
    assert (status.state.trading_state, status.state.reason) == (TradingState.HALTED, "halted by desk: news at 14:30")
    assert [a.title for a in alerts.sent if a.title == "Trading halted by hand"] == ["Trading halted by hand"]


def test_a_halt_pressed_behind_queued_orders_refuses_them_all_and_answers_the_state_before(held):
    system, broker, alerts, events, store, first, queued, answers = held
    halting = threading.Thread(target=lambda: answers.setdefault("halt", system.halt("desk", "news at 14:30", timeout=WAIT)))
    halting.start()
    broker.release.set()
    halting.join(WAIT)
    assert answers["halt"] is TradingState.ACTIVE  # its own Halt found the press carried out, and said so
    _carried_out_once(*held)


def test_a_halt_the_guard_does_not_confirm_in_time_says_it_is_recorded_and_is_in_force_all_the_same(held):
    system, broker, alerts, events, store, first, queued, answers = held
    with pytest.raises(HaltNotConfirmed) as unconfirmed:
        system.halt("desk", "news at 14:30", timeout=0.2)
    assert isinstance(unconfirmed.value, pykka.Timeout)
    assert str(unconfirmed.value) == (
        "the guard did not confirm the halt by desk (news at 14:30) within 0.2s; the halt is recorded and in force "
        "for every order not yet sent to the broker: the guard refuses them as halted, and latches HALTED, closes "
        "every position and alerts as soon as it gets to it"
    )
    broker.release.set()
    _carried_out_once(*held)


def test_a_halt_no_guard_took_before_the_stop_is_kept_by_the_store_for_the_next_start(held):
    system, broker, alerts, events, store, first, queued, answers = held
    with pytest.raises(HaltNotConfirmed):
        system.halt("desk", "news at 14:30", timeout=0.2)
    system.stop(timeout=0.5)  # the guard is still inside the broker's call: it never took the press
    (pending,) = store.load_pending_halts(system.settings.loop_id)
    assert (pending.by, pending.reason) == ("desk", "news at 14:30")


def test_a_halt_saved_pending_at_the_stop_is_not_carried_out_by_the_guard_the_stop_left_in_a_broker_call_too(held):
    # The stuck guard carried out its Halt once the broker call returned, and the next start took the
    # pending halt as well: two "Trading halted by hand" alerts and two liquidations (a review).
    system, broker, alerts, events, store, first, queued, answers = held
    with pytest.raises(HaltNotConfirmed):
        system.halt("desk", "news at 14:30", timeout=0.2)
    old_guard, old_alerts = system.guard.ref, system.address("alerts").ref
    system.stop(timeout=0.5)  # the guard is still inside the broker's call: the press is saved pending
    broker.release.set()
    # The old guard has handled its mail (the Halt before the stop), and so has the alert actor after it.
    assert old_guard.actor_stopped.wait(WAIT) and old_alerts.actor_stopped.wait(WAIT)
    assert [a.title for a in alerts.sent if a.title == "Trading halted by hand"] == []
    assert [p.symbol for p in broker.open_positions()] == ["A"]  # the next start closes it, not the old guard
    # The next start (a new process on the same store and account) takes the pending halt before any order.
    following = start_trading_system(Settings(), broker, ListSignalSource(), store=store, alerts=alerts,
                                     loop_interval=None)
    try:
        assert following.guard_status().state.trading_state is TradingState.HALTED
        assert following.journaled(WAIT)
        following.address("alerts").ask(Ping(), timeout=WAIT)
    finally:
        following.stop()
    assert [a.title for a in alerts.sent if a.title == "Trading halted by hand"] == ["Trading halted by hand"]
    changes = [e for e in store.events() if e.event_type is EventType.TRADING_STATE_CHANGED]
    assert [(e.metadata["from"], e.metadata["to"], e.metadata["reason"]) for e in changes] == [
        ("active", "halted", "halted by desk: news at 14:30")]
    closed = [e for e in store.events() if e.event_type is EventType.POSITION_CLOSED]
    assert [e.metadata["symbol"] for e in closed] == ["A"]
    assert broker.open_positions() == [] and store.load_pending_halts(system.settings.loop_id) == []


@pytest.mark.parametrize("held", [NoPendingHalts], indirect=True)
def test_a_halt_the_store_refused_to_keep_at_the_stop_is_carried_out_by_the_guard_the_stop_left(held):
    system, broker, alerts, events, store, first, queued, answers = held
    with pytest.raises(HaltNotConfirmed):
        system.halt("desk", "news at 14:30", timeout=0.2)
    old_guard, old_alerts = system.guard.ref, system.address("alerts").ref
    system.stop(timeout=0.5)  # the pending halt is refused: the stuck guard is the only one left to carry it out
    broker.release.set()
    assert old_guard.actor_stopped.wait(WAIT) and old_alerts.actor_stopped.wait(WAIT)
    assert [a.title for a in alerts.sent if a.title == "Trading halted by hand"] == ["Trading halted by hand"]
    assert broker.open_positions() == [] and store.load_guard(system.settings.loop_id).trading_state is TradingState.HALTED


def test_a_resume_queued_ahead_of_the_halt_does_not_outlive_it(held):
    # The first queued order carried the press out; the resume (sent before the halt, with no
    # sent_at) lifted it; the Halt then found its press done and left the account trading.
    system, broker, alerts, events, store, first, queued, answers = held
    system.guard.tell(Resume("ops"))  # queued behind the orders, ahead of the Halt
    halting = threading.Thread(target=lambda: answers.setdefault("halt", system.halt("desk", "news at 14:30", timeout=WAIT)))
    halting.start()
    wait_until(lambda: system._halts.waiting)  # (pressed: its Halt is queued behind the resume)
    broker.release.set()
    halting.join(WAIT)
    status = system.guard_status()
    assert (status.state.trading_state, status.state.reason) == (TradingState.HALTED, "halted by desk: news at 14:30")
    assert broker.sent == [first.client_id]


class PressedWhileStarting(MemoryStore):
    """A store that has the kill switch pressed on another thread just after the starting guard
    has read the pending halts (the moment a control API's or a chat's halt can land)."""

    def __init__(self) -> None:
        super().__init__()
        self.system: TradingSystem | None = None
        self.answers: dict[str, object] = {}
        self.pressing: threading.Thread | None = None

    def load_pending_halts(self, loop_id: str):
        pending = super().load_pending_halts(loop_id)
        if self.pressing is None:
            assert self.system is not None
            halt = self.system.halt
            self.pressing = threading.Thread(target=lambda: self.answers.setdefault("halt", halt("desk", "stop now")))
            self.pressing.start()
        return pending


def test_a_halt_pressed_while_the_system_starts_reaches_the_guard_that_starts():
    # It was saved as a pending halt after the guard had read them: the system traded until its next start.
    store = PressedWhileStarting()
    system = TradingSystem(Settings(), HeldBroker(), ListSignalSource(), store=store, loop_interval=None)
    store.system = system
    system.start()
    try:
        assert store.pressing is not None
        store.pressing.join(WAIT)
        assert store.answers["halt"] is TradingState.ACTIVE
        status = system.guard_status()
        assert (status.state.trading_state, status.state.reason) == (TradingState.HALTED, "halted by desk: stop now")
        assert store.load_pending_halts(system.settings.loop_id) == []
    finally:
        system.stop()


def test_a_halt_after_stop_is_kept_by_the_store_for_the_next_start():
    store = MemoryStore()
    system = start_trading_system(Settings(), HeldBroker(), ListSignalSource(), store=store, loop_interval=None)
    system.stop()
    assert system.halt("desk", "stop now") is TradingState.ACTIVE
    (pending,) = store.load_pending_halts(system.settings.loop_id)
    assert (pending.by, pending.reason) == ("desk", "stop now")


def _halted_while_written(system: TradingSystem, store: Any, order: Order) -> Any:
    """The guard's answer to ``order``, with the kill switch pressed while ``store`` held one of
    the order's writes (``store.writing`` set, until ``store.release``)."""
    answers: dict[str, Any] = {}
    placing = threading.Thread(target=lambda: answers.setdefault("order", system.guard.ask(PlaceOrder(order, _now()),
                                                                                           timeout=WAIT)))
    placing.start()
    assert store.writing.wait(WAIT)
    with pytest.raises(HaltNotConfirmed):
        system.halt("desk", "stop now", timeout=0.2)
    store.release.set()
    placing.join(WAIT)
    return answers["order"]


class SlowRecord(MemoryStore):
    """A store whose first order record is written only when the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.writing, self.release = threading.Event(), threading.Event()

    def open_order(self, submitted, sent_at):
        if not self.writing.is_set():
            self.writing.set()
            assert self.release.wait(WAIT)
        return super().open_order(submitted, sent_at)


class RemoteBroker(HeldBroker):
    in_process = False  # its orders are written to the store before the broker sees them


def test_an_order_whose_record_was_being_written_when_the_switch_was_pressed_never_reaches_the_broker():
    store, broker, events = SlowRecord(), RemoteBroker(), EventLog()
    broker.entered.set()  # (no hold inside the broker)
    system = start_trading_system(Settings(), broker, ListSignalSource(), store=store, subscribers=[events],
                                  loop_interval=None)
    try:
        order = Order("A", "buy", 1)
        assert _halted_while_written(system, store, order).refusal == "trading halted" and broker.sent == []
        assert system.journaled(WAIT)
        mine = [(e.event_type, e.metadata.get("refused_by")) for e in store.events()
                if e.metadata.get("client_order_id") == order.client_id]
        assert mine == [(EventType.ORDER_SUBMITTED, None), (EventType.TRADE_FAILED, "trading_state")]
        assert store.held_orders(system.settings.loop_id) == []
    finally:
        store.release.set()
        system.stop()


class SlowGateRecord(MemoryStore):
    """A store whose first save of the gate's record after ``armed`` waits until the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.writing, self.release = threading.Event(), threading.Event()

    def save_gate(self, loop_id, record):
        if self.armed and not self.writing.is_set():
            self.writing.set()
            assert self.release.wait(WAIT)
        return super().save_gate(loop_id, record)


def test_an_order_whose_count_was_being_saved_when_the_switch_was_pressed_never_reaches_the_broker():
    # The last look came before the gate's save: a halt pressed during it let the order out (a review).
    store, broker = SlowGateRecord(), RemoteBroker()
    broker.entered.set()
    system = start_trading_system(Settings(max_orders_per_day=100), broker, ListSignalSource(), store=store,
                                  loop_interval=None)
    try:
        store.armed = True
        assert _halted_while_written(system, store, Order("A", "buy", 1)).refusal == "trading halted"
        assert broker.sent == []
    finally:
        store.release.set()
        system.stop()


def test_a_halt_that_a_slow_start_outlasts_answers_in_its_time_and_is_carried_out_once_the_start_ends():
    # It waited for the start, its timeout ignored (a review).
    store = SlowStart()
    system = TradingSystem(Settings(), HeldBroker(), ListSignalSource(), store=store, loop_interval=None)
    starting = threading.Thread(target=system.start)
    starting.start()
    try:
        assert store.reading.wait(WAIT)
        with pytest.raises(HaltNotConfirmed) as unconfirmed:
            system.halt("desk", "stop now", timeout=0.2)
        assert str(unconfirmed.value) == (
            "the system is starting and did not confirm the halt by desk (stop now) within 0.2s; the halt is recorded "
            "and in force for every order not yet sent to the broker, and carried out as soon as the start ends")
        store.release.set()
        starting.join(WAIT)
        wait_until(lambda: system.guard_status().state.trading_state is TradingState.HALTED)
        assert system.guard_status().state.reason == "halted by desk: stop now"
    finally:
        store.release.set()
        starting.join(WAIT)
        system.stop()


def test_a_halt_after_the_supervisor_gave_up_is_kept_by_the_store_for_the_next_start():
    store = MemoryStore()
    system = start_trading_system(Settings(max_restarts=0, within_seconds=60), HeldBroker(), ListSignalSource(),
                                  store=store, loop_interval=None, drills=True)
    system.guard.tell(Crash("broken"))
    assert system.wait(WAIT) and system.gave_up and not system.running
    assert system.halt("desk", "after the fail-safe") is TradingState.HALTED  # (the fail-safe's)
    assert [(h.by, h.reason) for h in store.load_pending_halts(system.settings.loop_id)] == [("desk", "after the fail-safe")]
    system.stop()
