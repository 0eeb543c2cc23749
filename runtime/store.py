"""The state store port: what must survive a restart, and an in-memory store for one process."""

from __future__ import annotations

import threading
from typing import Protocol

import attrs

from runtime.events import Event
from runtime.risk.monitor import GuardRecord
from runtime.validation import attrs_whole

__all__ = ["LoopTotals", "StateStore", "MemoryStore"]


@attrs.frozen
class LoopTotals:
    """The loop's lifetime totals, kept across restarts."""

    total_signals_lifetime: int = attrs.field(default=0, validator=attrs_whole)
    total_trades_lifetime: int = attrs.field(default=0, validator=attrs_whole)


class StateStore(Protocol):
    """Durable state for the guard and the loop, and the event journal.

    A save returns only once the value is durable: an actor acknowledges a change after saving it.
    """

    def load_guard(self, loop_id: str) -> GuardRecord | None:
        """The guard's last saved record, or None on first start."""
        ...

    def save_guard(self, loop_id: str, record: GuardRecord) -> None:
        """Replace the guard's record."""
        ...

    def load_loop_totals(self, loop_id: str) -> LoopTotals | None:
        """The loop's last saved totals, or None on first start."""
        ...

    def save_loop_totals(self, loop_id: str, totals: LoopTotals) -> None:
        """Replace the loop's totals."""
        ...

    def append_event(self, event: Event) -> bool:
        """Journal an event once; False (and nothing written) when its id is already there."""
        ...

    def events(self, loop_id: str | None = None) -> list[Event]:
        """Journaled events in the order they were appended, optionally of one loop only."""
        ...


class MemoryStore:
    """A `StateStore` in this process's memory: survives actor restarts, not a process exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._guards: dict[str, GuardRecord] = {}
        self._totals: dict[str, LoopTotals] = {}
        self._events: list[Event] = []
        self._event_ids: set[str] = set()

    def load_guard(self, loop_id: str) -> GuardRecord | None:
        """The guard's last saved record, or None."""
        with self._lock:
            return self._guards.get(loop_id)

    def save_guard(self, loop_id: str, record: GuardRecord) -> None:
        """Replace the guard's record."""
        with self._lock:
            self._guards[loop_id] = record

    def load_loop_totals(self, loop_id: str) -> LoopTotals | None:
        """The loop's last saved totals, or None."""
        with self._lock:
            return self._totals.get(loop_id)

    def save_loop_totals(self, loop_id: str, totals: LoopTotals) -> None:
        """Replace the loop's totals."""
        with self._lock:
            self._totals[loop_id] = totals

    def append_event(self, event: Event) -> bool:
        """Keep the event unless one with its id is already kept."""
        with self._lock:
            if event.event_id in self._event_ids:
                return False
            self._event_ids.add(event.event_id)
            self._events.append(event)
            return True

    def events(self, loop_id: str | None = None) -> list[Event]:
        """Kept events in append order."""
        with self._lock:
            return [e for e in self._events if loop_id is None or e.loop_id == loop_id]
