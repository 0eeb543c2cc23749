"""Stable addresses: a name that always reaches a child's current incarnation.

While a child restarts, told messages wait in a bounded stash and are delivered, in order, to
the next incarnation; asks wait for it. A full stash refuses the message with `StashOverflow`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pykka
from loguru import logger

from actors.supervision import pykka_internals as internals
from actors.supervision.messages import Ping, Tick
from runtime.errors import TradewardenError
from runtime.metrics import MetricNames, MetricsSink, NullMetrics

if TYPE_CHECKING:
    from actors.supervision.context import BusySection

__all__ = ["Address", "Slot", "StashOverflow", "ChildUnavailable", "DEFAULT_STASH_LIMIT", "DEFAULT_ASK_TIMEOUT"]

DEFAULT_STASH_LIMIT = 10_000
"""How many told messages wait for a restarting child before more are refused."""
DEFAULT_ASK_TIMEOUT = 5.0
"""How long an ask through an address waits for its answer, by default (seconds)."""


class StashOverflow(TradewardenError, RuntimeError):
    """A message for a restarting child was refused because its stash is full."""


class ChildUnavailable(TradewardenError, RuntimeError):
    """The child behind an address has stopped for good (or never started)."""


class _Salvaged:
    # A pykka envelope taken from a dead incarnation's inbox, redelivered whole (reply included).
    __slots__ = ("envelope",)

    def __init__(self, envelope: Any) -> None:
        self.envelope = envelope


class Slot:
    """The supervisor's side of an address: the current ref of one child and its stash."""

    def __init__(self, name: str, stash_limit: int = DEFAULT_STASH_LIMIT, metrics: MetricsSink | None = None) -> None:
        if stash_limit < 0:
            raise ValueError(f"stash_limit must be >= 0, got {stash_limit!r}")
        self.name = name
        self.stash_limit = stash_limit
        self.overflowed = 0
        self._metrics = metrics or NullMetrics()
        self._cond = threading.Condition()
        self._ref: pykka.ActorRef[Any] | None = None
        self._incarnation: int | None = None
        self._state = "starting"
        self._stash: deque[Any] = deque()
        self._busy: Callable[[], list[BusySection]] | None = None  # the routed incarnation's busy sections

    @property
    def ref(self) -> pykka.ActorRef[Any] | None:
        """The current incarnation's ref, or None while it restarts or after it stopped."""
        return self._ref

    @property
    def incarnation(self) -> int | None:
        """The number of the incarnation routed to now, or None while it restarts or after it stopped."""
        return self._incarnation

    def busy_sections(self) -> list[BusySection]:
        """The busy sections the incarnation routed to now is inside (`ChildContext.busy`): empty
        when it is in none, while the child restarts, or after it stopped."""
        busy = self._busy
        return busy() if busy is not None else []

    def tell(self, message: Any) -> None:
        """Deliver to the current incarnation, or stash while it restarts.

        The put happens under the slot's lock, which a dying incarnation's salvage also takes:
        so a message either lands before the salvage (and is carried over) or after it (and goes
        to the stash), never into a dead inbox that nobody reads.
        """
        with self._cond:
            ref = self._ref
            if ref is not None:
                try:
                    ref.tell(message)
                    return
                except pykka.ActorDeadError:
                    pass  # dead but not yet restarted: the supervisor will notice; keep the message
            if self._state == "stopped":
                raise ChildUnavailable(f"{self.name!r} has stopped; message refused: {message!r}")
            if len(self._stash) >= self.stash_limit:
                self.overflowed += 1
                self._metrics.incr(MetricNames.STASH_OVERFLOW_TOTAL)
                raise StashOverflow(
                    f"stash for {self.name!r} is full ({self.stash_limit} messages) while it restarts; "
                    f"message refused: {message!r}"
                )
            self._stash.append(message)

    def ask(self, message: Any, timeout: float) -> Any:
        """Ask the current incarnation, waiting up to ``timeout`` seconds in all for it to exist
        and answer.

        An ask that meets a dying incarnation waits for the next one, within the same
        ``timeout``: either it lands before that incarnation's salvage (and is carried over),
        or it is refused before being queued, or pykka's teardown fails it unhandled; the last
        two are sent again. An ask that was handled is never sent twice."""
        deadline = time.monotonic() + timeout
        # A ref that died but is not yet replaced counts as absent: wait for the next one.
        ready = lambda: (self._ref is not None and self._ref.is_alive()) or self._state == "stopped"  # noqa: E731
        while True:
            with self._cond:
                if not self._cond.wait_for(ready, max(0.0, deadline - time.monotonic())):
                    raise pykka.Timeout(f"{self.name!r} did not come back within {timeout}s to answer {message!r}")
                ref = self._ref
                if ref is None:
                    raise ChildUnavailable(f"{self.name!r} has stopped; cannot answer {message!r}")
                future = internals.deliver_ask(ref, message)  # queued under the lock, as `tell` is
            if future is None:
                continue  # it died since `ready` looked: nothing was queued
            try:
                return future.get(timeout=max(0.0, deadline - time.monotonic()))
            except pykka.ActorDeadError as exc:
                if not internals.died_before_handling(ref, exc):
                    raise
                logger.bind(actor=self.name).debug("ask {!r} met a dying incarnation unhandled; asking the next", message)

    def salvage(self, owner: pykka.ActorRef[Any]) -> int:
        """Take back what waits unhandled in a dead or abandoned incarnation's mailbox.

        pykka drops told messages and fails asks left in a stopped actor's inbox; taking them
        here (ahead of anything stashed since) delivers them, asks included, to the next
        incarnation. Timer ticks, stop requests and the supervisor's own probes are not carried
        over. ``owner`` is the dead or abandoned incarnation: if a newer one is already routed
        to (its end was noticed first), the mail goes straight to it. Returns how many.
        """
        with self._cond:
            newer = self._ref if self._ref is not None and self._ref is not owner else None
            if newer is None:
                self._ref = self._incarnation = None
                if self._state != "stopped":
                    self._state = "restarting"
            taken = []
            for envelope in internals.take_waiting_mail(owner):
                message = internals.message_of(envelope)
                if isinstance(message, Tick) or internals.is_stop_request(message):
                    internals.answer(envelope, None)
                    continue
                if isinstance(message, Ping) and message.from_supervisor:
                    internals.fail(envelope, pykka.ActorDeadError(f"{self.name!r} incarnation ended before answering"))
                    continue
                taken.append(_Salvaged(envelope))
            if newer is not None and not self._stash:
                for item in taken:
                    internals.redeliver(newer, item.envelope)
            else:
                self._stash.extendleft(reversed(taken))
            return len(taken)

    def suspend(self) -> None:
        """The child is restarting: stash what arrives until `install`."""
        with self._cond:
            self._ref = self._incarnation = self._busy = None
            self._state = "restarting"
            self._cond.notify_all()

    def install(
        self, ref: pykka.ActorRef[Any], incarnation: int, busy: Callable[[], list[BusySection]] | None = None
    ) -> None:
        """Incarnation number ``incarnation`` is up: deliver the stash to it in order, then route to
        it; ``busy`` (its context's `ChildContext.busy_sections`) answers `busy_sections`."""
        with self._cond:
            while self._stash:
                item = self._stash[0]
                try:
                    if isinstance(item, _Salvaged):
                        if not ref.is_alive():
                            raise pykka.ActorDeadError(str(ref))
                        internals.redeliver(ref, item.envelope)  # keeps the asker's reply future
                    else:
                        ref.tell(item)
                except pykka.ActorDeadError:
                    return  # it died already; the stash waits for the next one
                self._stash.popleft()
            self._ref, self._incarnation, self._busy = ref, incarnation, busy
            self._state = "running"
            self._cond.notify_all()

    def close(self) -> None:
        """The child stopped for good: refuse from now on, and drop (and log) anything stashed."""
        with self._cond:
            if self._stash:
                logger.bind(actor=self.name).warning("dropping {} stashed messages: child stopped", len(self._stash))
                for item in self._stash:
                    if isinstance(item, _Salvaged):
                        internals.fail(item.envelope, ChildUnavailable(f"{self.name!r} stopped"))
                self._stash.clear()
            self._ref = self._incarnation = self._busy = None
            self._state = "stopped"
            self._cond.notify_all()

    @property
    def stashed(self) -> int:
        """How many messages wait for the next incarnation."""
        with self._cond:
            return len(self._stash)


class Address:
    """A stable handle to a supervised child: `tell` and `ask` reach its current incarnation.

    An address handed to an incarnation that has since been abandoned (hung and replaced) goes
    quiet: what it tells is dropped, so the old incarnation can do no harm.
    """

    __slots__ = ("_slot", "_gate")

    def __init__(self, slot: Slot, gate: threading.Event | None = None) -> None:
        self._slot = slot
        self._gate = gate

    @property
    def name(self) -> str:
        """The child's name."""
        return self._slot.name

    @property
    def ref(self) -> pykka.ActorRef[Any] | None:
        """The current incarnation's ref (None while it restarts)."""
        return self._slot.ref

    @property
    def incarnation(self) -> int | None:
        """The number of the child's incarnation it reaches now (None while it restarts), so a
        request about that incarnation can say which one it means."""
        return self._slot.incarnation

    def busy_sections(self) -> list[BusySection]:
        """The busy sections the incarnation it reaches now is inside (empty when none): a child
        that does not answer while inside one is slow, not stalled."""
        return self._slot.busy_sections()

    def tell(self, message: Any) -> None:
        """Send without waiting. Raises `StashOverflow` or `ChildUnavailable` when refused."""
        if self._gate is not None and self._gate.is_set():
            logger.bind(actor=self._slot.name).debug("abandoned incarnation's message dropped: {!r}", message)
            return
        self._slot.tell(message)

    def ask(self, message: Any, timeout: float = DEFAULT_ASK_TIMEOUT) -> Any:
        """Send and wait up to ``timeout`` seconds for the answer (pykka.Timeout past it)."""
        if self._gate is not None and self._gate.is_set():
            raise ChildUnavailable(f"this incarnation was abandoned; ask to {self._slot.name!r} refused")
        return self._slot.ask(message, timeout)

    def __repr__(self) -> str:
        return f"Address({self._slot.name!r})"
