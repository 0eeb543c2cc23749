"""What a guard held that its store did not take (its own record, its gate's record), handed on to
the next guard of the same process."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Generic, TypeVar

import attrs

from runtime.risk.gate import GateRecord
from runtime.risk.guards import TradingState
from runtime.risk.monitor import GuardRecord

__all__ = ["GuardCarry", "Unsaved"]

# How strict each state is: a carried state is laid over a stored one only when it is stricter.
_STRICTNESS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


_Record = TypeVar("_Record", GuardRecord, GateRecord)


@attrs.frozen
class Unsaved(Generic[_Record]):
    """A record the store refused (a `GuardRecord`, or the gate's `GateRecord`): ``record`` is what
    the guard held, ``over`` what the store held as far as that guard knew (the record it last
    loaded or saved; None for none), ``failures`` how many saves in a row failed and ``error``
    the last one's error."""

    record: _Record
    over: _Record | None
    failures: int
    error: str


class GuardCarry:
    """A cell that outlives each guard incarnation of one trading system, so that a state the
    store refused (a disk that filled up, a state file deleted) is not lost when the guard
    crashes: the next incarnation adopts it and keeps saving it until the store takes it. It
    holds the guard's record and its gate's record (order history, runaway latch), each apart.

    Only the incarnation that last adopted from the cell (its ``owner``) may hold or clear: an
    abandoned incarnation that wakes up late cannot overwrite what its successor holds. Thread
    safe: incarnations start and end on their own threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: object | None = None
        self._held: Unsaved[GuardRecord] | None = None
        self._held_gate: Unsaved[GateRecord] | None = None

    def adopt(
        self, owner: object, stored: GuardRecord | None
    ) -> tuple[GuardRecord | None, Unsaved[GuardRecord] | None]:
        """Make ``owner`` (a new incarnation) the holder, and return the record it starts from,
        given what its store returned (``stored``), with what was carried (None when nothing was).

        The rule: the record the store holds is the truth unless the carried one is newer, and a
        halt is never given up on the way.

        - Nothing carried: ``stored``.
        - The store holds exactly what the ending guard knew it held (``Unsaved.over``): nobody
          wrote since, so the carried record is newer (it was made after that write): taken whole.
          So is it when the store has no record at all.
        - The store holds another record (written since by another process on the same store, by
          the fail-safe, or by a save that went through although it reported an error): that one
          is newer and is taken, but never less safe: when the carried state is stricter (HALTED
          over REDUCING over ACTIVE), the carried latch (state, reason and its dates) is laid over
          it, and that is what is still unsaved; else nothing is left to save, and nothing is
          returned as carried. A writer elsewhere never saw a halt held only in this process's memory, so its
          ACTIVE cannot have lifted it, as a resume sent before a halt does not lift it.

        What is carried stays held until the owner saves (`clear`), so an incarnation that dies
        before saving hands it on again.
        """
        with self._lock:
            self._owner = owner
            held = self._held
            if held is None:
                return stored, None
            if stored is None or stored == held.over:
                return held.record, held
            carried = held.record
            if _STRICTNESS[carried.trading_state] <= _STRICTNESS[stored.trading_state]:
                self._held = None  # the store's own record is newer and as safe: nothing left to save
                return stored, None
            latch = attrs.evolve(stored, trading_state=carried.trading_state, reason=carried.reason,
                                 state_since=carried.state_since, latched_at=carried.latched_at)
            return latch, held

    def adopt_gate(self, owner: object, stored: GateRecord | None) -> tuple[GateRecord | None, Unsaved[GateRecord] | None]:
        """As `adopt`, for the gate's record, once ``owner`` has adopted the guard's.

        The carried record is taken whole when the store holds what the ending guard knew it
        held (or nothing). When it holds another (the fail-safe clears its halt's cooldown rules
        there), that one is taken, never less safe: the orders and refusals of both count (a
        rate limit or a day's trades judged on fewer would let more out), and the carried runaway
        latch holds when the stored record has none.
        """
        with self._lock:
            held = self._held_gate if owner is self._owner else None
            if held is None:
                return stored, None
            if stored is None or stored == held.over:
                return held.record, held
            carried = held.record
            merged = attrs.evolve(stored, sent=_both(stored.sent, carried.sent),
                                  refusals=_both(stored.refusals, carried.refusals))
            if merged.latched is None and carried.latched is not None:
                merged = attrs.evolve(merged, latched=carried.latched, latched_at=carried.latched_at)
            if merged == stored:
                self._held_gate = None  # the store's own record is newer and as safe: nothing left to save
                return stored, None
            return merged, held

    def hold(self, owner: object, unsaved: Unsaved[GuardRecord] | Unsaved[GateRecord]) -> None:
        """Keep ``unsaved`` (the guard's record or the gate's) for the next incarnation, when
        ``owner`` is the holder."""
        with self._lock:
            if owner is not self._owner:
                return
            if isinstance(unsaved.record, GateRecord):
                self._held_gate = unsaved
            else:
                self._held = unsaved

    def clear(self, owner: object, *, gate: bool = False) -> None:
        """Forget what is held of the guard's record (with ``gate``, of the gate's), when ``owner``
        is the holder: its store took it."""
        with self._lock:
            if owner is self._owner:
                if gate:
                    self._held_gate = None
                else:
                    self._held = None


def _both(stored: Sequence[float], carried: Sequence[float]) -> tuple[float, ...]:
    # Every moment either record counts, each as often as the record that counts it more: two
    # orders sent in one second are two (a set made them one, letting one more order out).
    return tuple(sorted((Counter(stored) | Counter(carried)).elements()))
