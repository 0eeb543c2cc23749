"""The event hub hands a slow live client nothing more once its queue has overflowed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from actors.service.hub import EventHub
from runtime.payloads import StallDetected, TradingStateChanged
from runtime.risk.guards import TradingState


async def _listen(hub: EventHub):
    return hub.listen()


def test_a_listener_that_overflowed_is_dropped_by_the_hub_at_the_next_event():
    hub, loop = EventHub(), asyncio.new_event_loop()
    try:
        listener = loop.run_until_complete(_listen(hub))
        event = StallDetected("slow client", 1).event("main", datetime.now(UTC))
        for _ in range(1_001):  # one past the queue's 1,000
            hub(event)
        loop.run_until_complete(asyncio.sleep(0))  # the hand-offs run on the client's loop
        assert (listener.overflowed, listener.queue.qsize(), hub.listeners) == (True, 1_000, 1)
        hub(event)
        assert hub.listeners == 0
    finally:
        loop.close()


def test_the_state_is_as_old_as_the_change_that_made_it_not_a_halt_pressed_again():
    hub = EventHub()
    halted = TradingStateChanged(TradingState.ACTIVE, TradingState.HALTED, "halted by alice: news").event(
        "main", datetime(2024, 3, 4, 9, tzinfo=UTC))
    again = TradingStateChanged(TradingState.HALTED, TradingState.HALTED, "halted by bob: again").event(
        "main", datetime(2024, 3, 4, 10, tzinfo=UTC))
    hub(halted)
    hub(again)
    assert hub.last_state_change() == halted
    seeded = EventHub()  # a new process reads its journal's last changes, oldest first
    for event in (halted, again):
        seeded.remember_state_change(event)
    assert seeded.last_state_change() == halted
