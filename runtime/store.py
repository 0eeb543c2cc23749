"""The state store port: what must survive a restart, and an in-memory store for one process."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import attrs

from runtime.events import Event, EventType
from runtime.risk.gate import GateRecord
from runtime.risk.monitor import GuardRecord
from runtime.validation import attrs_text, attrs_whole, aware_datetime

__all__ = [
    "HeldOrder",
    "LoopTotals",
    "MemoryStore",
    "PendingHalt",
    "StateStore",
    "UnreadableOrder",
    "check_events",
    "check_outcome",
    "check_store",
    "check_pending_halt",
    "loop_id_of",
    "order_client_id",
    "order_sent_at",
    "unsettled",
]


def order_client_id(submitted: Event) -> str:
    """The client order id an ORDER_SUBMITTED event carries; a wrong event is refused."""
    if submitted.event_type is not EventType.ORDER_SUBMITTED:
        raise ValueError(f"an order is opened by an order_submitted event, got {submitted.event_type.value}")
    client_id = submitted.metadata.get("client_order_id")
    if not isinstance(client_id, str) or not client_id:
        raise ValueError(f"order_submitted metadata must name a client_order_id, got {client_id!r}")
    return client_id


def order_sent_at(submitted: Event, sent_at: datetime | None) -> datetime:
    """When an order opened with `StateStore.open_order` was sent: ``sent_at`` (an aware
    datetime, else ``TypeError``/``ValueError``), or the submitted event's timestamp."""
    if sent_at is None:
        return submitted.timestamp
    return aware_datetime("sent_at", sent_at).astimezone(UTC)


def check_outcome(outcome: Event, watch_until: datetime | None) -> None:
    """Refuse, naming the field, an outcome for `StateStore.settle_order` that is not an event,
    or a ``watch_until`` that is not an aware datetime."""
    if not isinstance(outcome, Event):
        raise TypeError(f"outcome must be an Event, got {outcome!r}")
    if watch_until is not None:
        aware_datetime("watch_until", watch_until)


def loop_id_of(value: object) -> str:
    """``value`` as a loop id for a store: a non-empty string (``TypeError`` for another type,
    ``ValueError`` for an empty one)."""
    if not isinstance(value, str):
        raise TypeError(f"loop_id must be a non-empty string, got {value!r} ({type(value).__name__})")
    if not value:
        raise ValueError(f"loop_id must be a non-empty string, got {value!r}")
    return value


def check_events(events: Sequence[Event]) -> None:
    """Refuse, with ``TypeError`` naming the first offender's index, a batch for
    `StateStore.append_events` that is not a sequence of events."""
    if isinstance(events, (str, bytes)) or not isinstance(events, Sequence):
        raise TypeError(f"events must be a sequence of Event, got {events!r}")
    for index, event in enumerate(events):
        if not isinstance(event, Event):
            raise TypeError(f"events[{index}] must be an Event, got {event!r}")


def check_store(store: Any) -> Any:
    """Return ``store`` when it has every method of the `StateStore` port, else raise
    ``TypeError`` naming those it lacks: a store written for an older port (say, without
    pending halts) is refused once, where it is given, instead of failing each guard start."""
    missing = [name for name in _PORT_METHODS if not callable(getattr(store, name, None))]
    if missing:
        raise TypeError(
            f"store must be a runtime.store.StateStore, got {store!r}, which has no {', '.join(missing)} "
            f"(a store written for an older tradewarden must add them)"
        )
    return store


@attrs.frozen
class HeldOrder:
    """An order the store still holds: sent and without an outcome (``watch_until`` None), or
    journaled as not executed by a reconciliation and watched for a late fill until
    ``watch_until``. ``sent_at`` is the wall-clock time (UTC) it went to the broker."""

    submitted: Event
    sent_at: datetime
    watch_until: datetime | None = None


@attrs.frozen
class UnreadableOrder:
    """An order the store holds whose journaled record cannot be read back (its text is not an
    event's JSON, or its times are not ISO times): only its client id, from the orders table,
    and ``problem`` are known. The store keeps it for a person to settle by hand."""

    client_order_id: str
    problem: str


def unsettled(held_orders: Sequence[HeldOrder | UnreadableOrder]) -> list[Event]:
    """The ORDER_SUBMITTED events of the readable orders in ``held_orders`` that have no outcome."""
    return [held.submitted for held in held_orders if isinstance(held, HeldOrder) and held.watch_until is None]


@attrs.frozen
class PendingHalt:
    """A kill switch pressed for an account whose trading system is not running yet, kept by
    the store (`StateStore.save_pending_halt`) until a guard of that account takes it: as its
    first act on starting, before any order, exactly as a halt asked of a running guard (HALTED
    latched and saved, positions closed, alerted and journaled as halted by ``by``: ``reason``).
    ``by`` and ``reason`` are non-blank strings (else `TypeError` or `ValueError` naming the field
    and the value); ``halt_id`` tells one pending halt from another when it is cleared."""

    by: str = attrs.field(validator=attrs_text)
    reason: str = attrs.field(validator=attrs_text)
    halt_id: str = attrs.field(factory=lambda: uuid.uuid4().hex, validator=attrs_text)


def check_pending_halt(halt: object) -> PendingHalt:
    """``halt`` for `StateStore.save_pending_halt`: a `PendingHalt`, else ``TypeError``."""
    if not isinstance(halt, PendingHalt):
        raise TypeError(f"halt must be a PendingHalt, got {halt!r}")
    return halt


@attrs.frozen
class LoopTotals:
    """The loop's lifetime totals, kept across restarts."""

    total_signals_lifetime: int = attrs.field(default=0, validator=attrs_whole)
    total_trades_lifetime: int = attrs.field(default=0, validator=attrs_whole)


class StateStore(Protocol):
    """Durable state for the guard and the loop, and the event journal.

    A save returns only once the value is durable: an actor acknowledges a change after saving it.
    A store that writes to disk may also offer ``without_fsync() -> StateStore`` (as
    `runtime.adapters.sqlite.SqliteStore` does): the same store, whose guard and gate records
    are committed without waiting for the disk, for a guard whose account lives in this process
    (`runtime.broker.is_in_process`) and would not outlive the machine either.
    """

    def load_guard(self, loop_id: str) -> GuardRecord | None:
        """The guard's last saved record, or None on first start."""
        ...

    def save_guard(self, loop_id: str, record: GuardRecord) -> None:
        """Replace the guard's record."""
        ...

    def load_gate(self, loop_id: str) -> GateRecord | None:
        """The guard's last saved gate record (order history, runaway latch, cooldown), or None."""
        ...

    def save_gate(self, loop_id: str, record: GateRecord) -> None:
        """Replace the guard's gate record."""
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

    def append_events(self, events: Sequence[Event]) -> int:
        """Journal ``events`` in order in one durable write (a group commit): each id is kept
        once, so an event already journaled, or repeated in ``events``, is skipped. Returns how
        many were new. On failure nothing of the batch is written."""
        ...

    def events(self, loop_id: str | None = None) -> list[Event]:
        """Journaled events in the order they were appended, optionally of one loop only."""
        ...

    def open_order(self, submitted: Event, sent_at: datetime | None = None) -> None:
        """Journal ``submitted`` (ORDER_SUBMITTED, its metadata naming ``client_order_id``) and
        hold its order as unsettled, in one durable write, before the broker sees the order.
        ``sent_at`` is the wall-clock time it is sent (default: the event's timestamp, which is
        wall time on a live clock but data time in a replay)."""
        ...

    def settle_order(
        self, loop_id: str, client_order_id: str, outcome: Event, watch_until: datetime | None = None
    ) -> None:
        """Journal ``outcome`` (the order's TRADE_EXECUTED or TRADE_FAILED) and settle the order,
        in one durable write. With ``watch_until`` the order stays held, watched for a late fill
        until then (a reconciliation's "not executed" that a late fill may still correct)."""
        ...

    def order_placed(self, loop_id: str, client_order_id: str) -> bool:
        """True when the journal holds an ORDER_SUBMITTED of ``loop_id`` naming
        ``client_order_id``, whichever incarnation or process journaled it and whatever its
        outcome: that order went, or may have gone, to the broker. Answered from an index,
        without reading the journal, so the guard can ask it before every order."""
        ...

    def unsettled_orders(self, loop_id: str) -> list[Event]:
        """The ORDER_SUBMITTED events of the loop's readable orders that have no outcome yet,
        oldest first."""
        ...

    def held_orders(self, loop_id: str) -> list[HeldOrder | UnreadableOrder]:
        """Every order of the loop the store holds (unsettled, and watched), oldest first; one
        whose record cannot be read is an `UnreadableOrder` in its place, never an error that
        hides the others."""
        ...

    def unwatch_order(self, loop_id: str, client_order_id: str) -> None:
        """Stop holding a watched order (its watch is over); an order not held is ignored."""
        ...

    def save_pending_halt(self, loop_id: str, halt: PendingHalt) -> None:
        """Keep ``halt`` for the loop's next guard to take, durably (a store with fencing
        refuses it from an incarnation a newer one superseded); a ``halt_id`` kept already is
        kept once."""
        ...

    def load_pending_halts(self, loop_id: str) -> list[PendingHalt]:
        """The loop's pending halts, in the order they were saved."""
        ...

    def clear_pending_halts(self, loop_id: str, halt_ids: Sequence[str]) -> None:
        """Forget the loop's pending halts named in ``halt_ids`` (taken by its guard); one not
        kept is ignored, and one saved meanwhile under another id is kept."""
        ...


_PORT_METHODS = tuple(name for name in vars(StateStore) if not name.startswith("_"))


class MemoryStore:
    """A `StateStore` in this process's memory: survives actor restarts, not a process exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._guards: dict[str, GuardRecord] = {}
        self._gates: dict[str, GateRecord] = {}
        self._totals: dict[str, LoopTotals] = {}
        self._events: list[Event] = []
        self._event_ids: set[str] = set()
        self._placed: set[tuple[str, str]] = set()  # (loop id, client id) of every ORDER_SUBMITTED kept
        self._held: dict[tuple[str, str], HeldOrder] = {}
        self._halts: dict[str, dict[str, PendingHalt]] = {}

    def load_guard(self, loop_id: str) -> GuardRecord | None:
        """The guard's last saved record, or None."""
        with self._lock:
            return self._guards.get(loop_id)

    def save_guard(self, loop_id: str, record: GuardRecord) -> None:
        """Replace the guard's record."""
        with self._lock:
            self._guards[loop_id] = record

    def load_gate(self, loop_id: str) -> GateRecord | None:
        """The guard's last saved gate record, or None."""
        with self._lock:
            return self._gates.get(loop_id)

    def save_gate(self, loop_id: str, record: GateRecord) -> None:
        """Replace the guard's gate record."""
        if not isinstance(record, GateRecord):
            raise TypeError(f"record must be a GateRecord, got {record!r}")
        with self._lock:
            self._gates[loop_id_of(loop_id)] = record

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
            return self._append(event)

    def append_events(self, events: Sequence[Event]) -> int:
        """Keep each event whose id is not kept yet, in order; returns how many were new. A batch
        holding anything but events raises ``TypeError`` and keeps none of it."""
        check_events(events)
        with self._lock:
            return sum(self._append(event) for event in events)

    def events(self, loop_id: str | None = None) -> list[Event]:
        """Kept events in append order."""
        with self._lock:
            return [e for e in self._events if loop_id is None or e.loop_id == loop_id]

    def open_order(self, submitted: Event, sent_at: datetime | None = None) -> None:
        """Keep ``submitted`` and hold its order as unsettled, sent at ``sent_at``."""
        key = (submitted.loop_id, order_client_id(submitted))
        held = HeldOrder(submitted, order_sent_at(submitted, sent_at))
        with self._lock:
            self._append(submitted)
            self._held.setdefault(key, held)

    def settle_order(
        self, loop_id: str, client_order_id: str, outcome: Event, watch_until: datetime | None = None
    ) -> None:
        """Keep ``outcome`` and settle the order (still held, watched, until ``watch_until``)."""
        check_outcome(outcome, watch_until)
        key = (loop_id, client_order_id)
        with self._lock:
            self._append(outcome)
            held = self._held.pop(key, None)
            if held is not None and watch_until is not None:
                self._held[key] = attrs.evolve(held, watch_until=watch_until)

    def order_placed(self, loop_id: str, client_order_id: str) -> bool:
        """True when an ORDER_SUBMITTED of ``loop_id`` naming ``client_order_id`` is kept."""
        with self._lock:
            return (loop_id, client_order_id) in self._placed

    def unsettled_orders(self, loop_id: str) -> list[Event]:
        """The submitted events of orders with no outcome, oldest first."""
        return unsettled(self.held_orders(loop_id))

    def held_orders(self, loop_id: str) -> list[HeldOrder | UnreadableOrder]:
        """The orders held for ``loop_id``, oldest first."""
        with self._lock:
            return [held for (loop, _), held in self._held.items() if loop == loop_id]

    def unwatch_order(self, loop_id: str, client_order_id: str) -> None:
        """Forget the watched order, if held and watched."""
        with self._lock:
            held = self._held.get((loop_id, client_order_id))
            if held is not None and held.watch_until is not None:
                del self._held[(loop_id, client_order_id)]

    def save_pending_halt(self, loop_id: str, halt: PendingHalt) -> None:
        """Keep ``halt`` for the loop's next guard (in this process only)."""
        check_pending_halt(halt)
        with self._lock:
            self._halts.setdefault(loop_id_of(loop_id), {}).setdefault(halt.halt_id, halt)

    def load_pending_halts(self, loop_id: str) -> list[PendingHalt]:
        """The loop's pending halts, in the order they were saved."""
        with self._lock:
            return list(self._halts.get(loop_id, {}).values())

    def clear_pending_halts(self, loop_id: str, halt_ids: Sequence[str]) -> None:
        """Forget the loop's pending halts named in ``halt_ids``."""
        with self._lock:
            kept = self._halts.get(loop_id, {})
            for halt_id in halt_ids:
                kept.pop(halt_id, None)

    def _append(self, event: Event) -> bool:
        if event.event_id in self._event_ids:
            return False
        self._event_ids.add(event.event_id)
        self._events.append(event)
        if event.event_type is EventType.ORDER_SUBMITTED:
            client_id = event.metadata.get("client_order_id")
            if isinstance(client_id, str):
                self._placed.add((event.loop_id, client_id))
        return True
