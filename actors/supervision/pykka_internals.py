"""Every use of pykka's private parts, in one place, so that a pykka upgrade breaks one module
(and `tests/test_pykka_internals.py` says what changed) rather than the supervision layer.

setup.cfg pins ``pykka>=4.5,<5``; what is used here is pykka 4's envelope (``message`` and
``reply_to``), its stop message, the actor's inbox, its weak reference to the actor, its failure
path (``_handle_failure``), and the line it logs for an exception that stops an actor.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import pykka
import pykka.messages
from pykka._envelope import Envelope

__all__ = [
    "FailureTolerantActor", "take_waiting_mail", "message_of", "is_ask", "answer", "fail", "redeliver",
    "is_stop_request", "deliver_ask", "died_before_handling", "on_told_failure", "start_failure",
]


def take_waiting_mail(ref: pykka.ActorRef[Any]) -> list[Any]:
    """Take every envelope waiting unhandled in ``ref``'s inbox, oldest first, without blocking."""
    inbox: Any = ref.actor_inbox  # a queue.Queue for threading actors; pykka types it as a protocol without get_nowait
    taken = []
    while True:
        try:
            taken.append(inbox.get_nowait())
        except queue.Empty:
            return taken


def message_of(envelope: Any) -> Any:
    """The message an envelope carries."""
    return envelope.message


def is_ask(envelope: Any) -> bool:
    """True when someone waits on the envelope's reply (it was asked, not told)."""
    return envelope.reply_to is not None


def answer(envelope: Any, value: Any) -> None:
    """Answer an asked envelope with ``value`` (nothing for a told one)."""
    if envelope.reply_to is not None:
        envelope.reply_to.set(value)


def fail(envelope: Any, error: BaseException) -> None:
    """Make the asker of an envelope get ``error`` (nothing for a told one)."""
    if envelope.reply_to is not None:
        envelope.reply_to.set_exception(exc_info=(type(error), error, None))


def redeliver(ref: pykka.ActorRef[Any], envelope: Any) -> None:
    """Put a taken envelope, reply future and all, into another actor's inbox (check that the
    actor is alive first: pykka does not read a stopped actor's inbox)."""
    ref.actor_inbox.put(envelope)


def deliver_ask(ref: pykka.ActorRef[Any], message: Any) -> pykka.Future[Any] | None:
    """Put ``message`` in ``ref``'s inbox as an ask and return its reply future; None, with
    nothing queued, when the actor is dead.

    Unlike ``ActorRef.ask``, a death between the check and the put never fails the future on
    the spot: the envelope is in the inbox, where a salvage, or pykka's own teardown (see
    `died_before_handling`), finds it."""
    if not ref.is_alive():
        return None
    future: pykka.Future[Any] = ref.actor_class._create_future()
    ref.actor_inbox.put(Envelope(message, reply_to=future))
    return future


def died_before_handling(ref: pykka.ActorRef[Any], error: BaseException) -> bool:
    """True when ``error`` is what pykka's teardown gives an ask that was still waiting in
    ``ref``'s inbox when the actor stopped: the message was never handled. An ActorDeadError
    raised by the handler itself (about another actor) is not one."""
    return isinstance(error, pykka.ActorDeadError) and str(error) == f"{ref} stopped before handling the message"


def is_stop_request(message: Any) -> bool:
    """True for the message pykka's ``ActorRef.stop`` sends."""
    return isinstance(message, pykka.messages._ActorStop)


def on_told_failure(ref: pykka.ActorRef[Any], record: Callable[[BaseException | None, bool], None]) -> bool:
    """Have ``record`` called, on the actor's own thread, with the exception that stops the pykka
    actor behind ``ref`` (a told message's, or its ``on_stop``'s: then with True, it was stopping
    already), before pykka marks it stopped (so before anyone can see it dead). For a
    `FailureTolerantActor`, only an exception it does not survive. False, with nothing hooked,
    when the actor is already gone."""
    actor = ref._actor_weakref()  # pykka keeps only a weak reference to the actor
    if actor is None or not ref.is_alive():
        return False
    if isinstance(actor, FailureTolerantActor):
        # Its own _handle_failure decides whether it survives: hooked where it does not.
        before = actor.before_failure_stops

        def recorded_then(exception: BaseException | None) -> None:
            try:
                record(exception, actor.actor_stopped.is_set())
            finally:
                before(exception)

        actor.before_failure_stops = recorded_then  # type: ignore[method-assign]
        return True
    handle_failure = actor._handle_failure

    def recorded(
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            # pykka marks an actor stopped before its on_stop, and after a told failure's record.
            record(exception_value, actor.actor_stopped.is_set())
        finally:
            handle_failure(exception_type, exception_value, traceback)

    actor._handle_failure = recorded  # an instance attribute wins over the method
    return True


class _LoggedFailures(logging.Filter):
    # pykka keeps the exception that stops an actor nowhere but in the line it logs ("Unhandled
    # exception in <actor>:"); an on_start's runs before anyone can hook the actor, so its
    # description is kept from that line, by the actor's urn (the latest few only).
    _KEPT = 100

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._by_urn: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        exception = record.exc_info[1] if record.exc_info else None
        if exception is not None and isinstance(record.msg, str) and record.msg.startswith("Unhandled exception in "):
            urn = record.msg.rpartition("(")[2].partition(")")[0]
            with self._lock:
                self._by_urn[urn] = f"{type(exception).__name__}: {exception}"
                while len(self._by_urn) > self._KEPT:
                    del self._by_urn[next(iter(self._by_urn))]
        return True

    def take(self, urn: str) -> str | None:
        with self._lock:
            return self._by_urn.pop(urn, None)


_LOGGED = _LoggedFailures()
logging.getLogger("pykka").addFilter(_LOGGED)


def start_failure(ref: pykka.ActorRef[Any]) -> str | None:
    """How the exception that stopped the actor behind ``ref`` reads (``"<type>: <message>"``),
    when pykka logged one: what its ``on_start`` raised, for an actor that died as it started.
    None when pykka logged none (its log is off at error level, or the actor stopped cleanly)."""
    return _LOGGED.take(str(ref.actor_urn))


class FailureTolerantActor(pykka.ThreadingActor):
    """A pykka ThreadingActor that may survive an exception raised by a told message.

    pykka stops an actor whose told message raised, through its private ``_handle_failure``
    (then calls ``on_failure``). Overriding it is the only way to keep the actor alive, and to
    know that the failing message was told rather than asked: an asked message's exception goes
    back to its caller without reaching here.
    """

    def survives(self, exception: BaseException) -> bool:
        """True when a told message that raised ``exception`` must leave this actor running; the
        subclass then logs it (in `on_told_failure_survived`) and pykka's ``on_failure`` is skipped."""
        return False

    def on_told_failure_survived(self, exception: BaseException) -> None:
        """Called instead of stopping when `survives` said so."""

    def before_failure_stops(self, exception: BaseException | None) -> None:
        """Called on the actor's thread when an exception is about to stop it, before pykka
        marks it stopped (so before anyone can see it dead), and before ``on_failure``."""

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exception_value is not None and self.survives(exception_value):
            self.on_told_failure_survived(exception_value)
            return
        self.before_failure_stops(exception_value)
        super()._handle_failure(exception_type, exception_value, traceback)
