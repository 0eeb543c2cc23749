"""The journal's append order is causal for orders: what was published before an order is
journaled before its ORDER_SUBMITTED, and what follows its answer after its outcome, although
the guard writes an order's events to the store itself and the rest come through the emitter's
journal worker. Real emitter, journal sink, guard, paper account and SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from actor_helpers import WAIT, EventLog, Journal, Recorder, wait_until

from actors import ChildSpec, EmitterActor, GuardActor, Supervisor, journal_sink
from actors.messages import PlaceOrder, Publish
from runtime import Event, EventType, Order, PaperBroker, Settings
from runtime.adapters.sqlite import SqliteStore
from runtime.adapters.system_clock import SystemClock

BEFORE = 3_000  # enough that the journal is still writing them when the order arrives


def test_events_published_before_an_order_are_journaled_before_it_and_those_after_its_answer_after(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    broker = PaperBroker(10_000)
    broker.update_price("X", 100.0)
    seen, journal = EventLog(), Journal()
    specs = [
        ChildSpec("emitter", lambda ctx: EmitterActor.start(ctx, sinks=[journal_sink(store), seen])),
        ChildSpec("alerts", lambda ctx: Recorder.start(ctx, journal), liveness_timeout=None),
        ChildSpec(
            "guard",
            # A generous wait, so that a loaded machine cannot make the journal miss it.
            lambda ctx: GuardActor.start(ctx, guards=Settings().guards(), broker=broker, store=store, journal_catch_up=WAIT),
        ),
    ]
    handle = Supervisor.launch(specs, probe_interval=0.05, child_clock=SystemClock.shared())
    try:
        emitter, guard = handle.address("emitter"), handle.address("guard")
        now = datetime.now(UTC)
        earlier = [Event(EventType.SIGNAL_RECEIVED, "main", {"n": n}, now) for n in range(BEFORE)]
        for event in earlier:
            emitter.tell(Publish(event))
        outcome = guard.ask(PlaceOrder(Order("X", "buy", 1), now), timeout=WAIT)
        assert outcome.executed
        later = Event(EventType.SIGNAL_RECEIVED, "main", {"n": "after"}, datetime.now(UTC))
        emitter.tell(Publish(later))
        assert wait_until(lambda: any(e.event_id == later.event_id for e in store.events()))
        order = [e.event_type for e in store.events()]
        assert order == [EventType.SIGNAL_RECEIVED] * BEFORE + [
            EventType.ORDER_SUBMITTED, EventType.TRADE_EXECUTED, EventType.SIGNAL_RECEIVED,
        ]
        assert [e.event_id for e in store.events()[:BEFORE]] == [e.event_id for e in earlier]
    finally:
        handle.stop()
        store.close()
