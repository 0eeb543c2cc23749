"""The event hub hands a slow live client nothing more once its queue has overflowed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from actors.service.hub import EventHub
from runtime.payloads import StallDetected


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
