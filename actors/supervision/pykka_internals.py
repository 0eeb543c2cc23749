"""Every use of pykka's private parts, in one place, so that a pykka upgrade breaks one module
(and `tests/test_pykka_internals.py` says what changed) rather than the supervision layer.

setup.cfg pins ``pykka>=4.5,<5``; what is used here is pykka 4's envelope (``message`` and
``reply_to``), its stop message, the actor's inbox, and its told-failure path.
"""

from __future__ import annotations

from types import TracebackType

import pykka

__all__ = ["FailureTolerantActor"]


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

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exception_value is not None and self.survives(exception_value):
            self.on_told_failure_survived(exception_value)
            return
        super()._handle_failure(exception_type, exception_value, traceback)
