"""A store that tells its account the moment a newer incarnation fenced it off."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from runtime.adapters.postgres import PostgresStore, StaleEpochError
from runtime.events import Event
from runtime.risk.gate import GateRecord
from runtime.risk.monitor import GuardRecord
from runtime.store import HeldOrder, LoopTotals, PendingHalt, UnreadableOrder

__all__ = ["FencedStore"]

_T = TypeVar("_T")


class FencedStore:
    """The `StateStore` port over a `PostgresStore` that has claimed ``epoch``: the first write
    refused with `StaleEpochError` calls ``on_stale`` (once, on a thread of its own, so the
    guard that made the write is not blocked by the account stopping it), then raises as before."""

    def __init__(self, store: PostgresStore, epoch: int, on_stale: Callable[[StaleEpochError], None]) -> None:
        self.store = store
        self.epoch = epoch
        self._on_stale = on_stale
        self._fenced = threading.Event()
        self._stale: StaleEpochError | None = None

    @property
    def fenced(self) -> bool:
        """True once a write of this incarnation was refused as stale."""
        return self._fenced.is_set()

    @property
    def stale(self) -> StaleEpochError | None:
        """The first refusal that fenced this incarnation (None while it is not fenced)."""
        return self._stale

    def _write(self, call: Callable[..., _T], *args: Any) -> _T:
        try:
            return call(*args)
        except StaleEpochError as exc:
            if not self._fenced.is_set():
                self._stale = exc
                self._fenced.set()
                threading.Thread(target=self._on_stale, args=(exc,), name="tradewarden-fenced", daemon=True).start()
            raise

    def load_guard(self, loop_id: str) -> GuardRecord | None:
        """As `PostgresStore.load_guard`."""
        return self.store.load_guard(loop_id)

    def save_guard(self, loop_id: str, record: GuardRecord) -> None:
        """As `PostgresStore.save_guard`; a stale refusal fences this incarnation."""
        self._write(self.store.save_guard, loop_id, record)

    def load_gate(self, loop_id: str) -> GateRecord | None:
        """As `PostgresStore.load_gate`."""
        return self.store.load_gate(loop_id)

    def save_gate(self, loop_id: str, record: GateRecord) -> None:
        """As `PostgresStore.save_gate`; a stale refusal fences this incarnation."""
        self._write(self.store.save_gate, loop_id, record)

    def load_loop_totals(self, loop_id: str) -> LoopTotals | None:
        """As `PostgresStore.load_loop_totals`."""
        return self.store.load_loop_totals(loop_id)

    def save_loop_totals(self, loop_id: str, totals: LoopTotals) -> None:
        """As `PostgresStore.save_loop_totals`; a stale refusal fences this incarnation."""
        self._write(self.store.save_loop_totals, loop_id, totals)

    def append_event(self, event: Event) -> bool:
        """As `PostgresStore.append_event` (not fenced: the journal keeps facts)."""
        return self.store.append_event(event)

    def append_events(self, events: Sequence[Event]) -> int:
        """As `PostgresStore.append_events` (not fenced)."""
        return self.store.append_events(events)

    def events(self, loop_id: str | None = None) -> list[Event]:
        """As `PostgresStore.events`."""
        return self.store.events(loop_id)

    def open_order(self, submitted: Event, sent_at: datetime | None = None) -> None:
        """As `PostgresStore.open_order`; a stale refusal fences this incarnation (and the order
        is never sent: the guard sends none it could not journal)."""
        self._write(self.store.open_order, submitted, sent_at)

    def settle_order(
        self, loop_id: str, client_order_id: str, outcome: Event, watch_until: datetime | None = None
    ) -> None:
        """As `PostgresStore.settle_order`; a stale refusal fences this incarnation."""
        self._write(self.store.settle_order, loop_id, client_order_id, outcome, watch_until)

    def held_orders(self, loop_id: str) -> list[HeldOrder | UnreadableOrder]:
        """As `PostgresStore.held_orders`."""
        return self.store.held_orders(loop_id)

    def unwatch_order(self, loop_id: str, client_order_id: str) -> None:
        """As `PostgresStore.unwatch_order`; a stale refusal fences this incarnation."""
        self._write(self.store.unwatch_order, loop_id, client_order_id)

    def order_placed(self, loop_id: str, client_order_id: str) -> bool:
        """As `PostgresStore.order_placed`."""
        return self.store.order_placed(loop_id, client_order_id)

    def unsettled_orders(self, loop_id: str) -> list[Event]:
        """As `PostgresStore.unsettled_orders`."""
        return self.store.unsettled_orders(loop_id)

    def save_pending_halt(self, loop_id: str, halt: PendingHalt) -> None:
        """As `PostgresStore.save_pending_halt`; a stale refusal fences this incarnation."""
        self._write(self.store.save_pending_halt, loop_id, halt)

    def load_pending_halts(self, loop_id: str) -> list[PendingHalt]:
        """As `PostgresStore.load_pending_halts`."""
        return self.store.load_pending_halts(loop_id)

    def clear_pending_halts(self, loop_id: str, halt_ids: Sequence[str]) -> None:
        """As `PostgresStore.clear_pending_halts`; a stale refusal fences this incarnation."""
        self._write(self.store.clear_pending_halts, loop_id, halt_ids)

    def close(self) -> None:
        """Close the underlying store."""
        self.store.close()
