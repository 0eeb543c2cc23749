"""Kill-switch presses that hold from the moment they are pressed, ahead of the guard's mailbox."""

from __future__ import annotations

import itertools
import threading

import attrs
import pykka

from actors.supervision.context import ChildContext
from runtime.errors import TradewardenError
from runtime.risk.guards import TradingState

__all__ = ["HaltNotConfirmed", "PressedHalt", "PressedHalts"]


@attrs.frozen
class PressedHalt:
    """One press of the kill switch: ``press_id`` (unique in its `PressedHalts`), who and why."""

    press_id: int
    by: str
    reason: str


class HaltNotConfirmed(TradewardenError, pykka.Timeout):
    """`TradingSystem.halt` got no answer from the guard in time. The halt is recorded all the
    same: every order the guard has not sent to the broker yet is refused as halted, and the
    guard carries the halt out (HALTED latched and saved, positions closed, alert, journal) as
    soon as it gets to it. A `pykka.Timeout`, so code that caught the bare timeout still does."""


class PressedHalts:
    """A cell shared by a `TradingSystem` and each of its guard incarnations: a press is recorded
    here before the guard is asked, and the guard takes every press waiting here before it lets
    an order out, so a halt never waits behind the orders queued in the guard's mailbox.

    A press is taken once: by the guard that first gets to it (before an order, or as it starts),
    or by its own `Halt` message; the other finds it taken and does not carry it out again. A
    press taken by an incarnation that was then abandoned (revoked: its store and broker refuse
    every call, so it may not have carried it out) counts as not taken for the next one. Thread
    safe: the system's callers and each incarnation take from it on their own threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, PressedHalt] = {}
        # press id -> the incarnation that took it, and the trading state before it carried it out
        self._taken: dict[int, tuple[ChildContext, TradingState | None]] = {}

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

    def take_one(self, press_id: int, taker: ChildContext) -> TradingState | None:
        """Take the press ``press_id`` for its own `Halt` message, which then answers for it:
        None when ``taker`` must carry it out (it was waiting, or taken by an incarnation since
        revoked, or not carried out), else the state before the live incarnation that took it
        carried it out. Either way the press is done with: it is forgotten."""
        with self._lock:
            self._waiting.pop(press_id, None)
            took, previous = self._taken.pop(press_id, (None, None))
        if took is None or (took is not taker and took.revoked.is_set()):
            return None
        return previous

    def left(self) -> list[PressedHalt]:
        """The presses no guard has taken (the system stopped first), taken now by the caller."""
        with self._lock:
            halts = list(self._waiting.values())
            self._waiting.clear()
        return halts
