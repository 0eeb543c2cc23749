"""What the controller adds to Ray: a restart window (backoff between an account's restarts,
quarantine past a count) and the probing that finds zombies."""

from __future__ import annotations

import collections

import attrs

from runtime.backoff import Backoff
from runtime.store import PendingHalt
from runtime.validation import attrs_positive, attrs_whole

__all__ = ["Admission", "Probing", "RestartWindow"]


@attrs.frozen
class Admission:
    """The controller's answer to an incarnation about to start: wait ``delay`` seconds first, or
    do not trade at all (``quarantined``, with the ``reason``); and the ``halts`` pressed for the
    account that no incarnation has confirmed yet (its worker was lost meanwhile): the new one
    saves them as pending halts before its trading system starts, so it starts HALTED."""

    delay: float = 0.0
    quarantined: bool = False
    reason: str = ""
    restarts: int = 0
    halts: tuple[PendingHalt, ...] = ()


@attrs.define
class RestartWindow:
    """Counts each account's restarts within ``within_seconds``: restart ``n`` waits
    ``backoff.delay(n)``; more than ``max_restarts`` in the window quarantines the account
    (it comes up HALTED and does not trade). An account's first start is not a restart."""

    max_restarts: int = attrs.field(default=3, validator=attrs_whole)
    within_seconds: float = attrs.field(default=60.0, validator=attrs_positive)
    backoff: Backoff = attrs.field(factory=lambda: Backoff(0.2, 10.0), validator=attrs.validators.instance_of(Backoff))
    _starts: dict[str, collections.deque[float]] = attrs.field(factory=dict, init=False)

    def admit(self, account_id: str, now: float) -> Admission:
        """Record a start of ``account_id`` at ``now`` (monotonic seconds) and say how it may start."""
        starts = self._starts.get(account_id)
        if starts is None:
            self._starts[account_id] = collections.deque([now])
            return Admission()
        starts.append(now)
        while starts and starts[0] < now - self.within_seconds:
            starts.popleft()
        # The oldest start still in the window is the one the others restarted.
        restarts = len(starts) - 1 if len(starts) > 1 else 1
        if restarts > self.max_restarts:
            return Admission(
                quarantined=True,
                reason=f"restarted {restarts} times within {self.within_seconds:g}s (at most {self.max_restarts})",
                restarts=restarts,
            )
        return Admission(delay=self.backoff.delay(restarts), restarts=restarts)

    def forget(self, account_id: str) -> None:
        """Drop ``account_id``'s history (it left the fleet)."""
        self._starts.pop(account_id, None)


@attrs.frozen
class Probing:
    """How the controller watches accounts: every ``interval`` seconds it pings every account at
    once and gathers the answers within ``timeout`` (a round never lasts longer, however many
    accounts are silent); ``zombie_after`` unanswered pings in a row make an account a zombie."""

    interval: float = attrs.field(default=1.0, validator=attrs_positive)
    timeout: float = attrs.field(default=2.0, validator=attrs_positive)
    zombie_after: int = attrs.field(default=3, validator=attrs_whole)
