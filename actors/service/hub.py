"""The control server's view of the event stream: the last heartbeat, and a queue per live client."""

from __future__ import annotations

import asyncio
import threading
import time

from runtime.events import Event, EventType

__all__ = ["EventHub", "Listener"]

_QUEUE_SIZE = 1_000


class Listener:
    """One live client's events, on its event loop; `overflowed` once it fell ``_QUEUE_SIZE``
    events behind (it is then sent nothing more, and should be disconnected)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Event] = asyncio.Queue(_QUEUE_SIZE)
        self.overflowed = False

    def _put(self, event: Event) -> None:
        # Runs on the client's event loop, never on the emitter's thread.
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True


class EventHub:
    """A subscriber for `TradingSystem.subscribe`: remembers when the last HEARTBEAT came and the
    last TRADING_STATE_CHANGED, and hands every event to each registered `Listener`.

    Promises: a call (on the emitter's thread) never blocks and never raises; a slow client only
    overflows its own queue, and is then handed nothing more.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: set[Listener] = set()
        self._last_heartbeat: tuple[Event, float] | None = None
        self._last_state_change: Event | None = None
        self.started = time.monotonic()

    def __call__(self, event: Event) -> None:
        """Take one event from the emitter."""
        if event.event_type is EventType.HEARTBEAT:
            with self._lock:
                self._last_heartbeat = (event, time.monotonic())
        elif event.event_type is EventType.TRADING_STATE_CHANGED:
            self.remember_state_change(event)
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            if listener.overflowed:  # it is sent nothing more: stop handing it events now
                self.remove(listener)
                continue
            try:
                listener.loop.call_soon_threadsafe(listener._put, event)
            except RuntimeError:  # its event loop has closed: the client is gone
                self.remove(listener)

    def last_heartbeat(self) -> tuple[Event, float] | None:
        """The last HEARTBEAT event and how many seconds ago (monotonic) it arrived, or None."""
        with self._lock:
            if self._last_heartbeat is None:
                return None
            event, at = self._last_heartbeat
        return event, time.monotonic() - at

    def remember_state_change(self, event: Event) -> None:
        """Keep ``event`` (a TRADING_STATE_CHANGED) as the latest unless a later one is known; a
        process seeds it from its journal, since the change may predate this process. A halt
        pressed while halted (from and to the same state) is not a change: the state is as old
        as the change that made it."""
        if event.metadata.get("from") == event.metadata.get("to"):
            return
        with self._lock:
            known = self._last_state_change
            if known is None or known.timestamp <= event.timestamp:
                self._last_state_change = event

    def last_state_change(self) -> Event | None:
        """The latest TRADING_STATE_CHANGED event seen or remembered, or None."""
        with self._lock:
            return self._last_state_change

    def listen(self) -> Listener:
        """Register a listener on the running event loop (call from a coroutine)."""
        listener = Listener(asyncio.get_running_loop())
        with self._lock:
            self._listeners.add(listener)
        return listener

    @property
    def listeners(self) -> int:
        """How many listeners are registered."""
        with self._lock:
            return len(self._listeners)

    def remove(self, listener: Listener) -> None:
        """Stop handing events to ``listener``."""
        with self._lock:
            self._listeners.discard(listener)

    def __repr__(self) -> str:
        return f"EventHub(listeners={len(self._listeners)})"
