"""What a supervised incarnation knows of its place: its name, its supervisor, its siblings.

Each incarnation gets its own context. When the supervisor abandons an incarnation (it hung),
it revokes the context: from then on the incarnation's addresses go quiet and its guarded ports
(broker, alerts) refuse every call, so a thread that wakes up late can do no harm.

An incarnation inside a long call says so with `ChildContext.busy`: the supervisor's liveness
probe never counts a child inside a busy section as hung, and reports (once) a section that
runs past its bound.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import pykka
from loguru import logger

from actors.supervision.address import Address, Slot
from actors.supervision.messages import ChildExited, ExitKind
from runtime.adapters.system_clock import SystemClock
from runtime.clock import Clock
from runtime.errors import TradewardenError

__all__ = ["ChildContext", "IncarnationRevoked", "Revocable", "BusySection"]

T = TypeVar("T")


class IncarnationRevoked(TradewardenError, RuntimeError):
    """An abandoned incarnation tried to act; the call was refused."""


class BusySection:
    """One long call an incarnation is inside: what it is, since when, and its bound.

    Durations are wall time (`time.monotonic`), whatever the context's clock: a broker call
    takes real seconds even in a replay."""

    __slots__ = ("what", "bound", "started", "overdue_reported")

    def __init__(self, what: str, bound: float | None) -> None:
        if bound is not None and not bound > 0:
            raise ValueError(f"bound must be > 0 seconds or None, got {bound!r}")
        self.what = what
        self.bound = bound
        self.started = time.monotonic()
        self.overdue_reported = False

    def elapsed(self) -> float:
        """Seconds since the section was entered."""
        return time.monotonic() - self.started

    def overdue(self) -> bool:
        """True once the section has run longer than its bound (never without one)."""
        return self.bound is not None and self.elapsed() > self.bound

    def __repr__(self) -> str:
        return f"BusySection({self.what!r}, {self.elapsed():.2f}s, bound={self.bound!r})"


class ChildContext:
    """One incarnation's link to its supervisor and siblings.

    ``drills`` says whether the incarnation obeys fault injection (`Crash`, `Hang`): on in tests
    and drills, off (refused) in a live system."""

    def __init__(
        self,
        name: str,
        incarnation: int,
        *,
        supervisor: pykka.ActorRef[Any] | None = None,
        slots: Mapping[str, Slot] | None = None,
        clock: Clock | None = None,
        drills: bool = False,
    ) -> None:
        self.name = name
        self.drills = drills
        self.incarnation = incarnation
        self.supervisor = supervisor
        self.clock: Clock = clock or SystemClock.shared()
        self.revoked = threading.Event()
        self.ended: tuple[ExitKind, str] | None = None
        self.progress = 0
        self._slots = dict(slots or {})
        self._busy_lock = threading.Lock()  # the supervisor reads the sections from its own thread
        self._busy: list[BusySection] = []

    @classmethod
    def standalone(cls, name: str, clock: Clock | None = None, drills: bool = False) -> ChildContext:
        """A context for an actor started outside any supervisor (nobody is told when it ends)."""
        return cls(name, 1, clock=clock, drills=drills)

    def address(self, name: str) -> Address:
        """A sibling's stable address, silenced if this incarnation is revoked."""
        try:
            return Address(self._slots[name], self.revoked)
        except KeyError:
            raise KeyError(f"no sibling named {name!r}; known: {sorted(self._slots)}") from None

    def sibling(self, name: str) -> Address | None:
        """Like `address`, or None when there is no such sibling (an optional collaborator)."""
        return self.address(name) if name in self._slots else None

    def guarded(
        self,
        port: T,
        *,
        busy: str | None = None,
        bound: float | None = None,
        on_slow: Callable[[BusySection], None] | None = None,
    ) -> T:
        """``port`` wrapped so that every call is refused once this incarnation is revoked.

        With ``busy`` (a label such as ``"broker"``), every call also runs inside a busy section
        named ``"<busy>.<method>"`` with ``bound``, and a call that took longer than ``bound``
        calls ``on_slow`` with its section once it returns (or raises)."""
        return Revocable(port, self, busy, bound, on_slow)  # type: ignore[return-value]

    @contextlib.contextmanager
    def busy(self, what: str, bound: float | None = None) -> Iterator[BusySection]:
        """Mark the code inside as one long call named ``what`` (``"broker.submit_order"``).

        While inside, the supervisor does not count this incarnation as hung, however long its
        liveness probe waits; past ``bound`` seconds the supervisor reports the section once
        (`Supervisor`'s ``on_overdue``) and still does not abandon it. Leaving the section marks
        progress."""
        section = BusySection(what, bound)
        with self._busy_lock:
            self._busy.append(section)
        try:
            yield section
        finally:
            with self._busy_lock:
                self._busy.remove(section)
            self.mark_progress()

    def busy_sections(self) -> list[BusySection]:
        """The busy sections this incarnation is inside now, outermost first (a copy)."""
        with self._busy_lock:
            return list(self._busy)

    def report_exit(self, kind: ExitKind, cause: str = "") -> None:
        """Record how this incarnation ended and tell the supervisor (unless revoked: it was
        already replaced)."""
        self.ended = (kind, cause)
        if not self.tell_supervisor(ChildExited(self.name, self.incarnation, kind, cause)):
            logger.bind(actor=self.name).debug("exit {} not reported: no supervisor, or revoked", kind)

    def tell_supervisor(self, message: Any) -> bool:
        """Tell this incarnation's supervisor ``message``; False (nothing sent) when there is no
        supervisor, it has gone, or this incarnation was revoked (an abandoned incarnation must
        not steer the supervisor of its successor)."""
        if self.supervisor is None or self.revoked.is_set():
            return False
        try:
            self.supervisor.tell(message)
        except pykka.ActorDeadError:
            return False
        return True

    def salvage(self, ref: pykka.ActorRef[Any]) -> None:
        """Hand the unhandled mail of this incarnation (``ref``) to its address, for the next."""
        slot = self._slots.get(self.name)
        if slot is not None and not self.revoked.is_set():
            slot.salvage(ref)

    def mark_progress(self) -> None:
        """Say that a long piece of work is moving (every so many readings of a long batch, say),
        so that a liveness probe that goes unanswered meanwhile does not count the actor as hung."""
        self.progress += 1

    def revoke(self) -> None:
        """Abandon this incarnation: its addresses and guarded ports stop working."""
        self.revoked.set()


class Revocable:
    """A transparent wrapper around a port whose calls are refused after revocation."""

    __slots__ = ("_target", "_context", "_busy", "_bound", "_on_slow", "__dict__")

    def __init__(
        self,
        target: Any,
        context: ChildContext,
        busy: str | None = None,
        bound: float | None = None,
        on_slow: Callable[[BusySection], None] | None = None,
    ) -> None:
        self._target = target
        self._context = context
        self._busy = busy
        self._bound = bound
        self._on_slow = on_slow

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr
        context, label, bound, on_slow = self._context, self._busy, self._bound, self._on_slow

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if context.revoked.is_set():
                raise IncarnationRevoked(
                    f"{context.name} incarnation {context.incarnation} was abandoned; call {name!r} refused"
                )
            if label is None:
                return attr(*args, **kwargs)
            with context.busy(f"{label}.{name}", bound) as section:
                try:
                    return attr(*args, **kwargs)
                finally:
                    if on_slow is not None and section.overdue():
                        on_slow(section)

        self.__dict__[name] = guarded  # later calls find it without __getattr__
        return guarded

    def __repr__(self) -> str:
        return f"Revocable({self._target!r})"


