"""The kill switch holds from the moment it is pressed: orders queued at the guard behind a slow
broker call are refused as halted, never sent, and the halt is carried out once."""

from __future__ import annotations

import threading

import pykka
import pytest
from actor_helpers import WAIT, AlertInbox, EventLog

from actors import start_trading_system
from actors.messages import Ping, PlaceOrder
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


@pytest.fixture
def held():
    broker, alerts, events, store = HeldBroker(), AlertInbox(), EventLog(), MemoryStore()
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
