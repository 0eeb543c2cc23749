"""The dead man's switch: pings an outside monitor on each healthy heartbeat, and signals a halt."""

from __future__ import annotations

import threading
import time
from typing import Any

import attrs
import pykka
from loguru import logger

from actors.messages import GetGuardState
from actors.supervision.address import Address, ChildUnavailable, StashOverflow
from actors.supervision.base import SupervisedActor
from actors.supervision.context import ChildContext
from runtime.adapters.healthcheck import HealthcheckPing
from runtime.events import Event, EventType
from runtime.payloads import TradingStateChanged
from runtime.risk.guards import TradingState

__all__ = ["HealthcheckActor", "HealthcheckRelay", "HealthcheckStats", "GetHealthcheckStats"]

# The events that decide a ping; the relay hands on nothing else.
_WATCHED = frozenset({EventType.HEARTBEAT, EventType.STALL_DETECTED, EventType.TRADING_STATE_CHANGED})


@attrs.frozen
class GetHealthcheckStats:
    """Ask the healthcheck actor for its `HealthcheckStats`."""


@attrs.frozen
class HealthcheckStats:
    """What the dead man's switch did: success pings sent and taken, failure pings sent, and
    heartbeats it let pass without a ping, by why (``stale``, ``stalled``, ``guard``, ``halted``)."""

    pinged: int
    taken: int
    failures_signalled: int
    skipped: dict[str, int]


def _halted_by(event: Event) -> str | None:
    # The reason of a state change into HALTED, else None.
    change = TradingStateChanged.from_event(event)
    return change.reason if change.to_state is TradingState.HALTED else None


class HealthcheckActor(SupervisedActor):
    """Told the events that matter (through a `HealthcheckRelay`), it pings ``ping`` once per
    healthy heartbeat, so an outside monitor (healthchecks.io or the like) alerts when pings stop.

    A HEARTBEAT is pinged only when all of these hold: it is at most ``fresh_for`` seconds old (a
    backlog behind a slow ping endpoint is not pinged late), no STALL_DETECTED came since the
    HEARTBEAT before it, and the guard answers `GetGuardState` within ``guard_timeout`` with a
    state other than HALTED. A wedged loop makes no heartbeats and a stopped system none at all,
    so the pings stop. A state change into HALTED is signalled at once as a failure ping with its
    reason, and so is a HALTED guard found on a heartbeat (a halt from before this incarnation);
    once per latch, and no success ping follows until the halt is lifted.

    Promises: never blocks another actor (the pings run on this actor's thread, each bounded by
    the adapter's timeout); a ping that fails is the adapter's to log and count; an event it
    cannot read is logged and skipped.
    """

    def __init__(
        self, context: ChildContext, *, ping: HealthcheckPing, fresh_for: float, guard_timeout: float
    ) -> None:
        super().__init__(context)
        if not fresh_for > 0:
            raise ValueError(f"fresh_for must be > 0, got {fresh_for!r}")
        if not guard_timeout > 0:
            raise ValueError(f"guard_timeout must be > 0, got {guard_timeout!r}")
        self._ping = context.guarded(ping)
        self._guard = context.address("guard")
        self._fresh_for = fresh_for
        self._guard_timeout = guard_timeout
        self._stalled = False
        self._fail_signalled = False
        self._pinged = 0
        self._taken = 0
        self._failures = 0
        self._skipped: dict[str, int] = {}

    def handle(self, message: Any) -> Any:
        """Takes HEARTBEAT, STALL_DETECTED and TRADING_STATE_CHANGED events; answers `GetHealthcheckStats`."""
        if isinstance(message, GetHealthcheckStats):
            return HealthcheckStats(self._pinged, self._taken, self._failures, dict(self._skipped))
        if not isinstance(message, Event):
            return super().handle(message)
        try:
            if message.event_type is EventType.HEARTBEAT:
                self._beat(message)
            elif message.event_type is EventType.STALL_DETECTED:
                self._stalled = True
            elif message.event_type is EventType.TRADING_STATE_CHANGED:
                reason = _halted_by(message)
                if reason is None:
                    self._fail_signalled = False
                else:
                    self._signal_failure(f"trading halted: {reason}")
        except (TypeError, ValueError) as exc:  # a malformed event must not stop the switch
            self.log.error("healthcheck: event {} not understood: {}", message.event_id, exc)
        return None

    def _beat(self, event: Event) -> None:
        age = (self.context.clock.now() - event.timestamp).total_seconds()
        stalled, self._stalled = self._stalled, False
        if age > self._fresh_for:
            self._skip("stale")
            return
        if stalled:
            self._skip("stalled")
            return
        try:
            guard = self._guard.ask(GetGuardState(), timeout=self._guard_timeout)
        except (pykka.Timeout, ChildUnavailable, pykka.ActorDeadError) as exc:
            self.log.warning("healthcheck: no ping, the guard did not answer within {:g}s ({})",
                             self._guard_timeout, type(exc).__name__)
            self._skip("guard")
            return
        if guard.state.trading_state is TradingState.HALTED:
            self._signal_failure(f"trading halted: {guard.state.reason}")
            self._skip("halted")
            return
        self._pinged += 1
        if self._ping.success():
            self._taken += 1

    def _signal_failure(self, reason: str) -> None:
        if self._fail_signalled:
            return
        self._fail_signalled = True
        self._failures += 1
        self._ping.fail(reason)

    def _skip(self, why: str) -> None:
        self._skipped[why] = self._skipped.get(why, 0) + 1


class HealthcheckRelay:
    """The emitter's subscriber for the dead man's switch: tells the healthcheck actor's address
    the events it watches, and nothing else.

    Once that actor has stopped for good (its supervisor gave up, and the fail-safe publishes the
    HALTED it latched), the failure is pinged from a thread of its own, so the fail-safe never
    waits on the network; `wait` lets the system's stop see that ping out. Promises: a call never
    blocks and never raises.
    """

    def __init__(self, address: Address, ping: HealthcheckPing) -> None:
        self._address = address
        self._ping = ping
        self._sending: list[threading.Thread] = []

    def __call__(self, event: Event) -> None:
        """Hand on one event."""
        if event.event_type not in _WATCHED:
            return
        try:
            self._address.tell(event)
            return
        except StashOverflow:
            return  # the actor is restarting and behind: a later heartbeat decides
        except ChildUnavailable:
            pass
        try:
            reason = _halted_by(event) if event.event_type is EventType.TRADING_STATE_CHANGED else None
        except (TypeError, ValueError) as exc:
            logger.error("healthcheck: event {} not understood: {}", event.event_id, exc)
            return
        if reason is not None:
            sender = threading.Thread(
                target=self._ping.fail, args=(f"supervisor gave up, trading halted: {reason}",),
                name="tradewarden-healthcheck-fail", daemon=True,
            )
            self._sending.append(sender)
            sender.start()

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds in all for the failure pings sent from their own threads."""
        deadline = time.monotonic() + timeout
        for sender in self._sending:
            sender.join(max(0.0, deadline - time.monotonic()))
