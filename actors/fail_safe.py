"""The trading system's fail-safe: what runs when its supervisor gives up, with no actor left."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
from loguru import logger

from actors.emitter import Subscribers, deliver_to_subscribers
from actors.supervision.context import ChildContext
from runtime.alerts import Alert, AlertSink, Severity
from runtime.backoff import Backoff
from runtime.broker import Broker
from runtime.clock import Clock
from runtime.payloads import Payload, PositionClosed, TradingStateChanged
from runtime.risk.guards import Guard, TradingState
from runtime.risk.liquidation import close_every_position
from runtime.risk.monitor import RiskMonitor
from runtime.store import PendingHalt, StateStore

__all__ = ["FailSafe"]

_ATTEMPTS = 5
_BY = "the fail-safe"  # who a pending halt it saves says pressed it
# No random stretch: every actor has stopped, so nothing retries against the broker in step with it.
_BACKOFF = Backoff(min_seconds=0.1, max_seconds=2.0, random_factor=0.0)


class FailSafe:
    """Halts trading and closes every position when a supervisor gives up, and cannot hang.

    `run` sends the critical alert first, on its own thread; then, each on a thread of its own so
    that neither waits for the other, closes every position (up to five attempts with backoff,
    journaling each POSITION_CLOSED and telling every subscriber) and latches HALTED in the store
    (a failing store is logged and skipped: it may be what failed) and journals it, or, when the
    guard never saved a record and the equity cannot be read, saves a pending halt that the next
    start takes before any order. It returns within ``deadline`` seconds whatever the broker, the
    store or the alert service do; a HALTED the store has not taken by then is saved when it
    answers (`halt_saved` says when).
    """

    def __init__(
        self,
        *,
        loop_id: str,
        guards: Callable[[], list[Guard]],
        broker: Broker,
        store: StateStore,
        alert_sink: AlertSink,
        clock: Clock,
        subscribers: Subscribers,
        deadline: float,
    ) -> None:
        self._loop_id = loop_id
        self._guards = guards
        self._broker = broker
        self._store = store
        self._alert_sink = alert_sink
        self._clock = clock
        self._subscribers = subscribers
        self._deadline = deadline
        self.alert_sent: threading.Event | None = None
        """Set once the last run's alert has been sent (or failed); None before any run."""
        self.halt_saved: bool | None = None
        """Whether the last run's HALTED reached the store (None before any run): False when the
        store refused it (a full disk), so that the next start would trade; see `save_again`."""
        self._cause = ""
        self._delivering = threading.Lock()

    def run(self, cause: str, context: ChildContext | None = None) -> None:
        """Halt, alert and close everything because of ``cause``; with ``context`` (the
        supervisor's), the ports go quiet if a host abandons that supervisor meanwhile."""
        # Runs on the supervisor's thread once every child has stopped: nothing else is left to
        # act, so it talks to the ports directly.
        broker = context.guarded(self._broker) if context is not None else self._broker
        store = context.guarded(self._store) if context is not None else self._store
        started = time.monotonic()
        alert = Alert("Supervisor gave up: trading halted", cause, Severity.CRITICAL, key="fail-safe", merge=False)
        self.alert_sent = _in_background("fail-safe-alert", self._send_alert, alert)
        self._cause = cause
        self.halt_saved = False  # (set by _latch once HALTED is in the store)
        # The closing does not wait for the store: a store that does not answer (a lock held
        # elsewhere, a failover) kept every position open for as long, and the fail-safe with them.
        latched = _in_background("fail-safe-halt", self._latch_or_log, store, broker, cause)
        tried = threading.Event()  # set once the closing is over (flat, or out of attempts); its events may follow
        reported = _in_background("fail-safe-liquidation", self._close_everything, broker, store, latched, tried, started)
        if not tried.wait(self._deadline):
            logger.critical("fail-safe liquidation still running after {}s; escalating anyway", self._deadline)
        if not latched.wait(max(0.0, self._deadline - (time.monotonic() - started))):
            logger.critical("fail-safe HALTED not saved within its {:g}s deadline: the store has not answered; it is "
                            "saved as soon as the store answers", self._deadline)
        reported.wait(max(0.0, self._deadline - (time.monotonic() - started)))  # its closes journaled and told
        self.alert_sent.wait(max(0.0, self._deadline - (time.monotonic() - started)))

    def save_again(self) -> bool:
        """Try once more to save the last run's HALTED that the store refused; True once it is
        saved (at once when it was, or when the fail-safe never ran)."""
        if self.halt_saved is not False:
            return True
        try:
            self._latch(self._store, self._broker, self._cause)
        except Exception as exc:
            if not self.halt_saved:
                logger.debug("fail-safe HALTED still not saved: {!r}", exc)
                return False
        logger.warning("fail-safe HALTED saved: the next start comes back halted")
        return True

    def _latch_or_log(self, store: StateStore, broker: Broker, cause: str) -> None:
        try:
            self._latch(store, broker, cause)
        except Exception as exc:  # the store (or the broker) may be what failed: the closing goes on
            if self.halt_saved:
                logger.error("fail-safe saved HALTED, then failed: {!r}", exc)
            else:
                logger.critical("fail-safe could not save HALTED: {!r}", exc)

    def _latch(self, store: StateStore, broker: Broker, cause: str) -> None:
        # HALTED in the store, so that the next start does not trade as if nothing had happened.
        reason = f"supervisor gave up: {cause}"
        record = store.load_guard(self._loop_id)
        guards = self._guards()
        if record is not None:
            monitor = RiskMonitor.from_record(record, guards)
        else:
            # The guard never got to save one: halt a new one at today's equity. With no equity to
            # be had (the broker may be what failed), the halt waits in the store as a pending
            # one, which the next start takes before any order, as an operator's pressed then.
            try:
                equity = broker.account_equity()
            except Exception as exc:
                store.save_pending_halt(self._loop_id, PendingHalt(_BY, reason))
                self.halt_saved = True
                logger.critical("fail-safe: no guard record and no equity ({!r}): HALTED saved as a pending halt", exc)
                return
            monitor = RiskMonitor(equity, guards)
        if monitor.trading_state is TradingState.HALTED:
            # Already halted (a breach): its numbers stay in the reason, as for a halt pressed again.
            previous = monitor.halt(f"{monitor.state().reason or 'halted'}; then {reason}")
        else:
            previous = monitor.halt(reason)
        store.save_guard(self._loop_id, monitor.record())
        self.halt_saved = True  # (what follows may fail: it no longer decides whether the next start trades)
        # A cooldown held for that breach must not lift the fail-safe's halt at the next start.
        gate = store.load_gate(self._loop_id)
        if gate is not None and gate.halted_by:
            store.save_gate(self._loop_id, attrs.evolve(gate, halted_by=(), halted_at=None))
        self._journal(store, TradingStateChanged(previous, TradingState.HALTED, cause))

    def _close_everything(
        self, broker: Broker, store: StateStore, latched: threading.Event, tried: threading.Event, started: float
    ) -> None:
        for attempt in range(_ATTEMPTS):
            try:
                closed, failed = close_every_position(broker)
            except Exception as exc:
                closed, failed = [], [repr(exc)]
            if not failed or attempt == _ATTEMPTS - 1:
                tried.set()
            if closed:
                # Its closes are journaled after its TRADING_STATE_CHANGED, as a reader expects
                # (the halt, then what it closed): the positions are closed already, the events
                # wait for the halt within the deadline.
                latched.wait(max(0.0, self._deadline - (time.monotonic() - started)))
            for position, fill in closed:
                self._journal(store, PositionClosed.of(position, fill, "fail-safe", attempt))
            if not failed:
                return
            logger.error("fail-safe close attempt {} failed: {}", attempt + 1, "; ".join(failed))
            threading.Event().wait(_BACKOFF.delay(attempt + 1))

    def _journal(self, store: StateStore, payload: Payload) -> None:
        event = payload.event(self._loop_id, self._clock.now())
        try:
            store.append_event(event)
        except Exception as exc:
            logger.error("fail-safe event not journaled: {!r}", exc)
        with self._delivering:  # (the closing and the halt journal on threads of their own: one event at a time)
            deliver_to_subscribers(self._subscribers.snapshot(), event, logger, level="ERROR")

    def _send_alert(self, alert: Alert) -> None:
        # Tried again, within the fail-safe's deadline, when the sink raised (unless it retries by
        # itself): this is the alert that says trading stopped for good.
        give_up_at = time.monotonic() + self._deadline
        attempt = 0
        while True:
            attempt += 1
            try:
                self._alert_sink.send(alert)
                return
            except Exception as exc:
                wait = min(_BACKOFF.delay(attempt), give_up_at - time.monotonic())
                if wait <= 0 or getattr(self._alert_sink, "retries_itself", False):
                    logger.error("fail-safe alert not delivered: {!r}", exc)
                    return
                logger.warning("fail-safe alert not delivered: {!r}; tried again in {:.1f}s", exc, wait)
            threading.Event().wait(wait)


def _in_background(name: str, target: Callable[..., None], *args: Any) -> threading.Event:
    # Runs target(*args) on a daemon thread; the event is set when it returns.
    done = threading.Event()

    def run() -> None:
        try:
            target(*args)
        finally:
            done.set()

    threading.Thread(target=run, name=f"tradewarden-{name}", daemon=True).start()
    return done
