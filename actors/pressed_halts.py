"""Kill-switch presses that hold from the moment they are pressed, ahead of the guard's mailbox."""

from __future__ import annotations

import enum
import itertools
import threading

import attrs
import pykka

from actors.supervision.context import ChildContext
from runtime.errors import TradewardenError
from runtime.risk.guards import TradingState

__all__ = ["HaltNotConfirmed", "PressedHalt", "PressedHalts", "SavedPending"]


@attrs.frozen
class PressedHalt:
    """One press of the kill switch: ``press_id`` (unique in its `PressedHalts`), who and why."""

    press_id: int
    by: str
    reason: str


class SavedPending(enum.Enum):
    """What `PressedHalts.take_one` answers for a press its system's stop saved as a pending halt:
    the next start carries it out, so the guard that gets its `Halt` message must not."""

    FOR_THE_NEXT_START = "saved as a pending halt for the next start"


class HaltNotConfirmed(TradewardenError, pykka.Timeout):
    """`TradingSystem.halt` got no answer from the guard in time. The halt is recorded all the
    same: every order the guard has not sent to the broker yet is refused as halted, and the
    guard carries the halt out (HALTED latched and saved, positions closed, alert, journal) as
    soon as it gets to it. A `pykka.Timeout`, so code that caught the bare timeout still does."""


class PressedHalts:
    """A cell shared by a `TradingSystem` and each of its guard incarnations: a press is recorded
    here before the guard is asked, and the guard takes every press waiting here before it lets
    an order out, so a halt never waits behind the orders queued in the guard's mailbox.

    A press is carried out once: by the guard that first takes it (before an order, or as it
    starts), or by its own `Halt` message; the other finds it taken and does not carry it out
    again. A stop hands every press no guard has taken to the store as a pending halt
    (`hand_over`): the next start carries it out, and a guard the stop left running (stuck in a
    broker call) does not, when its `Halt` message reaches it at last. A press the store did not
    take is left to that guard's `Halt` message.

    A press taken by an incarnation that then crashed or was abandoned is not taken again by
    the next incarnation's own look (before an order, or as it starts): that incarnation carries
    it out when the press's `Halt` message reaches it (carried over from the mailbox of the one
    that ended, or sent again), unless the crashed one had carried it out already; a press
    taken by an abandoned incarnation (revoked: its store and broker refuse every call, so it
    may not have carried it out) is carried out again in any case. Until then, orders are held
    back only by the state the next incarnation carried on from (the store's record, or the one
    `GuardCarry` handed over), not by the press.
    A press taken while that incarnation was handling the press's own `Halt` message, which it
    crashed in, is not carried out again: its asker gets the error. Thread safe: the system's
    callers and each incarnation take from it on their own threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._ids = itertools.count(1)
        self._waiting: dict[int, PressedHalt] = {}
        # press id -> the incarnation that took it, and the trading state before it carried it out
        self._taken: dict[int, tuple[ChildContext, TradingState | None]] = {}
        self._handing: set[int] = set()  # handed to the store by a stop, not saved yet
        self._saved: set[int] = set()  # saved as pending halts: for the next start, none of this one's guards

    def press(self, by: str, reason: str) -> PressedHalt:
        """Record a press: in force for the guard from now on."""
        with self._lock:
            halt = PressedHalt(next(self._ids), by, reason)
            self._waiting[halt.press_id] = halt
        return halt

    @property
    def waiting(self) -> bool:
        """True while some press has not been taken (read without the lock: a hint, cheap on every order)."""
        return bool(self._waiting)

    def take(self, taker: ChildContext) -> list[PressedHalt]:
        """Every press waiting, in the order pressed, now taken by ``taker``; none for a revoked
        incarnation, which can no longer carry a halt out."""
        with self._lock:
            if taker.revoked.is_set() or not self._waiting:
                return []
            halts = list(self._waiting.values())
            self._waiting.clear()
            for halt in halts:
                self._taken[halt.press_id] = (taker, None)
        return halts

    def carried_out(self, press_id: int, taker: ChildContext, previous: TradingState) -> None:
        """``taker`` carried out the press it took: ``previous`` is the state before, what its
        `Halt` message answers."""
        with self._lock:
            if press_id in self._taken:
                self._taken[press_id] = (taker, previous)

    def take_one(self, press_id: int, taker: ChildContext) -> TradingState | SavedPending | None:
        """Take the press ``press_id`` for its own `Halt` message, which then answers for it:
        None when ``taker`` must carry it out (it was waiting, or taken by an incarnation since
        revoked, or not carried out), `SavedPending` when a stop saved it for the next start
        (waiting, if the stop is saving it now, for the store's answer), else the state before
        the live incarnation that took it carried it out. Either way the press is done with: it
        is forgotten."""
        with self._lock:
            self._lock.wait_for(lambda: press_id not in self._handing)
            if press_id in self._saved:
                self._saved.discard(press_id)
                return SavedPending.FOR_THE_NEXT_START
            self._waiting.pop(press_id, None)
            took, previous = self._taken.pop(press_id, (None, None))
        if took is None or (took is not taker and took.revoked.is_set()):
            return None
        return previous

    def hand_over(self) -> list[PressedHalt]:
        """The presses no guard has taken (the system stopped first), now being saved as pending
        halts by the caller, which must say for each whether the store took it (`handed`): till
        then a guard's `Halt` for one waits, so it is carried out either here or by the next
        start, never both."""
        with self._lock:
            halts = list(self._waiting.values())
            self._waiting.clear()
            self._handing.update(halt.press_id for halt in halts)
        return halts

    def handed(self, halt: PressedHalt, saved: bool) -> None:
        """The store took (``saved``) ``halt``, handed over, as a pending halt: no guard of this
        system carries it out now. Not taken, a guard the stop left running still carries it out
        when its `Halt` reaches it (the only one that can)."""
        with self._lock:
            self._handing.discard(halt.press_id)
            if saved:
                self._saved.add(halt.press_id)
            self._lock.notify_all()
