"""The base of every supervised actor: it reports each way it can end, answers liveness pings,
owns its timers, and obeys the fault-injection messages of drills (only where drills are on)."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from loguru import logger

from actors.supervision.context import ChildContext
from actors.supervision.messages import Crash, ExitKind, Hang, Ping, Pong, Tick
from actors.supervision.pykka_internals import FailureTolerantActor
from actors.supervision.timers import Timers
from runtime.adapters.system_clock import SystemClock
from runtime.errors import TradewardenError

__all__ = ["SupervisedActor", "DrillsDisabled"]

_LIFECYCLE = frozenset({Tick, Ping, Crash, Hang})


class DrillsDisabled(TradewardenError, RuntimeError):
    """A `Crash` or `Hang` reached an actor whose context has drills off (a live system): it was
    refused and the actor lives on. Raised to an asker; a told one is logged at warning."""


class SupervisedActor(FailureTolerantActor):
    """A pykka actor that tells its supervisor how it ended.

    Subclasses implement `prepare` (instead of ``on_start``), `handle` (instead of
    ``on_receive``), `on_tick`, and optionally `cleanup`. The ways of ending and what the
    supervisor hears (an `ExitKind`): an exception in `prepare` -> START_FAILED; an exception in
    a told message -> CRASHED; a stop it asks for itself -> NORMAL (or what `exit_with` set).
    Threads are daemons so that an abandoned, hung incarnation never keeps a process alive.
    """

    use_daemon_thread = True
    salvage_mail = True
    """Whether mail left unhandled when this incarnation ends goes to the next one."""
    wall_clock_timers = False
    """Whether this actor's timers run on wall-clock time even when its context has a data-time
    clock (a replay): for timers about people or services outside, such as alert merging."""

    def __init__(self, context: ChildContext) -> None:
        super().__init__()
        self.context = context
        self.timers = Timers(self.actor_ref, SystemClock.shared() if self.wall_clock_timers else context.clock)
        self.log = logger.bind(actor=context.name, incarnation=context.incarnation)
        self._exit_kind = ExitKind.NORMAL
        self._exit_cause = ""

    # --- hooks for subclasses ---------------------------------------------------------------

    def prepare(self) -> None:
        """Set up in the actor's thread before the first message; raising fails the start."""

    def handle(self, message: Any) -> Any:
        """Handle one message; the return value answers an ``ask``."""
        return super().on_receive(message)

    def on_tick(self, key: str) -> None:
        """A live timer ``key`` fired."""

    def cleanup(self) -> None:
        """Release what the actor holds; runs on every ending (stop, crash, failed start), with
        `exit_kind` and `exit_cause` saying which."""

    @property
    def exit_kind(self) -> ExitKind:
        """How this incarnation is ending (NORMAL until it ends otherwise)."""
        return self._exit_kind

    @property
    def exit_cause(self) -> str:
        """Why it is ending (empty for a plain stop)."""
        return self._exit_cause

    # --- pykka lifecycle --------------------------------------------------------------------

    def exit_with(self, kind: ExitKind, cause: str) -> None:
        """Stop after this message and report ``kind`` (for example GAVE_UP) to the supervisor."""
        self._exit_kind, self._exit_cause = kind, cause
        self.stop()

    def on_start(self) -> None:
        """Run `prepare`; if it raises, clean up, report START_FAILED and let pykka stop us."""
        try:
            self.prepare()
        except Exception as exc:
            self._salvage()
            self._finish(ExitKind.START_FAILED, described(exc))
            raise

    def on_stop(self) -> None:
        """A requested stop: keep the unhandled mail for a next incarnation, clean up, report."""
        self._salvage()
        self._finish(self._exit_kind, self._exit_cause)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """An exception in a told message: keep the unhandled mail, clean up, report CRASHED
        (a refused drill is not one: the actor lives on)."""
        if exception_value is not None and self.survives(exception_value):
            return
        self._salvage()
        self._finish(ExitKind.CRASHED, described(exception_value))

    def before_failure_stops(self, exception: BaseException | None) -> None:
        """Record the crash and its exception in the context at once, so that a liveness probe
        that finds this incarnation dead before its report arrives still names the real cause (a
        failed start has recorded its own already)."""
        if self.context.ended is None:
            self.context.ended = (ExitKind.CRASHED, described(exception))

    def survives(self, exception: BaseException) -> bool:
        """Only a refused drill leaves the actor running after a told message raised."""
        return isinstance(exception, DrillsDisabled)

    def on_told_failure_survived(self, exception: BaseException) -> None:
        """Log the refused drill at warning."""
        self.log.warning("{}; ignored", exception)

    def _salvage(self) -> None:
        if self.salvage_mail:
            self.context.salvage(self.actor_ref)

    def _finish(self, kind: ExitKind, cause: str) -> None:
        self._exit_kind, self._exit_cause = kind, cause
        self.timers.cancel_all()
        try:
            self.cleanup()
        except Exception:
            self.log.exception("cleanup failed")
        self.context.report_exit(kind, cause)

    def on_receive(self, message: Any) -> Any:
        """Answer pings, route timer ticks, obey fault injection, hand the rest to `handle`."""
        if type(message) not in _LIFECYCLE:  # the hot path: one set lookup per message
            return self.handle(message)
        if isinstance(message, Tick):
            if self.timers.accept(message):
                self.on_tick(message.key)
            return None
        if isinstance(message, Ping):
            return Pong(self.context.name, self.context.incarnation)
        if isinstance(message, (Crash, Hang)) and not self.context.drills:
            raise DrillsDisabled(
                f"drills are disabled: {type(message).__name__} refused by "
                f"{self.context.name} incarnation {self.context.incarnation}"
            )
        if isinstance(message, Crash):
            raise RuntimeError(message.reason)
        if isinstance(message, Hang):
            release: threading.Event = message.release
            release.wait(message.seconds)
            return None
        return self.handle(message)


def described(exception: BaseException | None) -> str:
    """How an exception reads as the cause of an end: ``"<type>: <message>"``."""
    return f"{type(exception).__name__}: {exception}" if exception is not None else "Error: unknown"
