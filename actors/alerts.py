"""The alert actor: delivers alerts on its own thread, so the guard never waits on the network,
and tries again, with a capped backoff, an alert whose sink raised."""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs

from actors.messages import SendAlert
from actors.supervision.base import SupervisedActor
from actors.supervision.context import ChildContext, IncarnationRevoked
from runtime.alerts import Alert, AlertNotAnswered, AlertSink, LogAlerts
from runtime.backoff import Backoff
from runtime.metrics import MetricNames, MetricsSink, NullMetrics

__all__ = ["AlertActor", "ALERT_RETRY", "ALERT_QUEUE_LIMIT", "ALERT_ATTEMPTS", "ALERT_STEP_ASIDE"]

ALERT_RETRY = Backoff(1.0, 60.0, random_factor=0.0)
"""The wait before each retry of a sink that raised: 1 s, doubling, at most 60 s. Only this
actor retries against its sink, so there is nothing to spread out with a random stretch."""

ALERT_QUEUE_LIMIT = 1000
"""At most this many alerts wait for a retry; past it the oldest non-critical one is dropped."""

ALERT_STEP_ASIDE = 5
"""An alert refused this many times steps behind the next one waiting, so that one the sink can
never take (a message it refuses) does not hold every later alert back. One the sink's service
did not answer in time (`AlertNotAnswered`) steps behind every alert waiting at once."""

ALERT_ATTEMPTS = 5
"""A WARNING or INFO alert is given up after this many failed sends (a CRITICAL one never)."""


@attrs.define
class _Pending:
    # An alert waiting for a retry: its place in the order raised, when it was raised (wall
    # clock: people read it), how often it failed, since when, the last error, and whether an
    # alert raised after it was delivered first (its text then says so).
    alert: Alert
    seq: int
    raised_at: datetime
    failures: int = 0
    since: float = attrs.field(factory=time.monotonic)
    error: str = ""
    overtaken: bool = False
    unanswered: bool = False  # its last try got no answer in time (AlertNotAnswered)


class AlertActor(SupervisedActor):
    """Receives `SendAlert` and hands it to the alert sink (Telegram, logs, ...).

    The sink may block or fail: only this actor waits. A send that raises is tried again on a
    timer, never by sleeping, with ``retry`` (`ALERT_RETRY`: 1 s doubling to 60 s, counted per
    failure in a row of the sink): a CRITICAL alert until it is delivered, a WARNING or INFO one
    up to ``attempts`` (`ALERT_ATTEMPTS`) failed sends, then it is given up. Alerts go out in the
    order they came: while one waits for a retry, later ones wait behind it, so the last message
    a person reads is the latest news (a resume never arrives before the halt it lifts), until it
    has been refused `ALERT_STEP_ASIDE` times: then it steps behind the next one, so that an
    alert the sink can never take does not hold back every later one.

    A sink with ``send_bounded`` (`TelegramAlerts`) is called through it: a try its service does
    not answer within the sink's timeout gives the alert back (`AlertNotAnswered`), and that
    alert steps behind every alert waiting, the next of which is tried at once (unless it failed
    already: then after the backoff), so one hung request holds a later critical alert for that
    timeout only. It is sent again after them, a critical one until delivered, even though the
    sink retries by itself.

    An alert delivered after one raised later (it stepped aside) says so on the first line of
    its text, with when it was raised: ``(Late: raised at 2026-12-06 19:40:12 UTC; alerts raised
    after it were delivered first.)``, so a person reading the chat puts it in its place. At most
    ``queue_limit`` (`ALERT_QUEUE_LIMIT`) alerts wait; past that the oldest non-critical one is
    dropped (the oldest critical one when all are critical). An alert delivered after failures
    is logged with how many and how late; every alert given up, dropped, or still waiting when
    the actor stops is logged at error (critical for a critical one) with its text and counted in
    ``alerts_dropped_total``.

    A sink that retries by itself says so with a true ``retries_itself`` attribute
    (`TelegramAlerts` does: it retries a critical alert until delivered, and its other errors
    cannot be mended by trying again): its failure is logged and counted, never sent again.

    A sink that merges repeats (it has ``next_flush_in()`` and ``flush()``, as `TelegramAlerts`
    does) is flushed when its merge window closes, on wall-clock time even in a replay, since the
    people reading the alerts live in wall-clock time.
    """

    wall_clock_timers = True

    def __init__(
        self,
        context: ChildContext,
        *,
        sink: AlertSink | None = None,
        metrics: MetricsSink | None = None,
        retry: Backoff = ALERT_RETRY,
        attempts: int = ALERT_ATTEMPTS,
        queue_limit: int = ALERT_QUEUE_LIMIT,
    ) -> None:
        super().__init__(context)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be a whole number >= 1, got {attempts!r}")
        if isinstance(queue_limit, bool) or not isinstance(queue_limit, int) or queue_limit < 1:
            raise ValueError(f"queue_limit must be a whole number >= 1, got {queue_limit!r}")
        self._sink = context.guarded(sink or LogAlerts())
        bounded = callable(getattr(sink, "send_bounded", None))  # a hung try gives the alert back
        self._send: Callable[[Alert], None] = getattr(self._sink, "send_bounded" if bounded else "send")
        self._metrics = metrics or NullMetrics()
        self._retry = retry
        self._attempts = attempts
        self._queue_limit = queue_limit
        self._retries_itself = getattr(sink, "retries_itself", False) is True
        self._waiting: collections.deque[_Pending] = collections.deque()
        self._raised = itertools.count()
        self._failures_in_a_row = 0
        self.delivered = 0
        self.failures = 0
        self.dropped = 0

    @property
    def waiting(self) -> list[Alert]:
        """The alerts waiting for a retry, oldest first (a copy)."""
        return [pending.alert for pending in self._waiting]

    def on_tick(self, key: str) -> None:
        """A merge window closed: send what was merged; or a retry fell due."""
        if key == "retry":
            self._send_waiting()
        elif key == "flush":
            try:
                flush = getattr(self._sink, "flush", None)  # only merging sinks have one
                if flush is not None:
                    flush()
            except Exception as exc:
                self.failures += 1
                self.log.error("merged alerts not delivered: {}", exc)
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        next_flush_in = getattr(self._sink, "next_flush_in", None)
        delay = next_flush_in() if next_flush_in is not None else None
        if delay is not None:
            self.timers.start_single("flush", max(0.0, delay))

    def handle(self, message: Any) -> Any:
        """Deliver a `SendAlert`, or queue it behind alerts waiting for a retry."""
        if not isinstance(message, SendAlert):
            return super().handle(message)
        pending = _Pending(message.alert, next(self._raised), datetime.now(UTC))
        if self._waiting:
            self._enqueue(pending)  # the retry timer is running: keep the order
            if self._waiting[0] is pending:  # ahead of alerts whose service did not answer: not held by them
                self._send_waiting()
        else:
            self._waiting.append(pending)
            self._send_waiting()
        self._schedule_flush()
        return None

    def cleanup(self) -> None:
        """Log and count every alert still waiting for a retry: this incarnation ends with it."""
        while self._waiting:
            pending = self._waiting.popleft()
            if pending.failures:
                self._drop(
                    pending,
                    f"the alert actor stopped while it waited for a retry "
                    f"({_failed_attempts(pending.failures)}; last error: {pending.error})",
                )
            else:
                self._drop(pending, "the alert actor stopped while it waited behind an alert the sink refused")

    # -- delivery ----------------------------------------------------------------------------

    def _send_waiting(self) -> None:
        # Send from the head of the queue until it is empty or the sink fails; then wait.
        while self._waiting:
            pending = self._waiting.popleft()
            try:
                self._send(pending.alert)
            except Exception as exc:
                if self._failed(pending, exc):
                    continue  # the next one is tried at once
                return
            self._failures_in_a_row = 0
            self.delivered += 1
            for earlier in self._waiting:
                if earlier.seq < pending.seq and not earlier.overtaken:
                    earlier.overtaken = True
                    earlier.alert = _marked_late(earlier.alert, earlier.raised_at)
            if pending.failures:
                self.log.warning(
                    "alert {!r} delivered after {} ({:.1f}s late)",
                    pending.alert.title,
                    _failed_attempts(pending.failures),
                    time.monotonic() - pending.since,
                )

    def _failed(self, pending: _Pending, exc: Exception) -> bool:
        # One failed send of the queue's head (taken off): put it back or give it up, then wait;
        # True when the next one waiting is to be tried at once instead.
        self.failures += 1
        self._failures_in_a_row += 1
        pending.failures += 1
        pending.error = f"{type(exc).__name__}: {exc}"
        pending.unanswered = isinstance(exc, AlertNotAnswered)
        given_up = not pending.alert.critical and pending.failures >= self._attempts
        if isinstance(exc, AlertNotAnswered) and not given_up:
            pending.alert = exc.resend
            if self._waiting:
                # Tried again at once, a hung service would hold every alert behind it as long
                # again: they go first, each at once unless it failed already.
                self._waiting.append(pending)
                self.log.warning("alert {!r} not delivered: {}; the {} alert(s) after it are tried first",
                                 pending.alert.title, exc, len(self._waiting) - 1)
                if self._waiting[0].failures == 0:
                    return True
            else:
                self._waiting.appendleft(pending)
        elif self._retries_itself and not isinstance(exc, AlertNotAnswered):
            self._drop(pending, f"{exc} (the sink retries by itself, so it is not sent again)")
        elif isinstance(exc, IncarnationRevoked):
            self._drop(pending, str(exc))
        elif given_up:
            self._drop(pending, f"given up after {_failed_attempts(pending.failures)}; last error: {exc}")
        elif pending.failures >= ALERT_STEP_ASIDE and self._waiting:
            # Refused again and again while others wait: perhaps this alert alone (a message the
            # sink can never take), so it steps behind the next one rather than hold every later
            # alert, the next breach's too, for ever. It is tried again after that one.
            self._waiting.insert(1, pending)
            self.log.warning("alert {!r} still not delivered after {}: the alert after it is tried first", pending.alert.title,
                             _failed_attempts(pending.failures))
        else:
            self._waiting.appendleft(pending)
        if not self._waiting:
            return False
        delay = self._retry.delay(self._failures_in_a_row)
        self.timers.start_single("retry", delay)
        if self._waiting[0] is pending:
            self.log.error(
                "alert {!r} not delivered: {}; retrying in {:.1f}s ({}, {} waiting)",
                pending.alert.title,
                exc,
                delay,
                _failed_attempts(pending.failures),
                len(self._waiting),
            )
        return False

    def _enqueue(self, pending: _Pending) -> None:
        if len(self._waiting) >= self._queue_limit:
            # The head is the one being retried: keep it, so a full queue cannot starve it.
            victims = [p for p in list(self._waiting)[1:] if not p.alert.critical] or list(self._waiting)[1:]
            victim = victims[0] if victims else self._waiting[0]
            self._waiting.remove(victim)
            self._drop(victim, f"the queue of alerts waiting for a retry is full ({self._queue_limit})")
        # Ahead of the alerts at the back whose last try got no answer: they wait behind every other.
        place = len(self._waiting)
        while place and self._waiting[place - 1].unanswered:
            place -= 1
        self._waiting.insert(place, pending)

    def _drop(self, pending: _Pending, why: str) -> None:
        self.dropped += 1
        self._metrics.incr(MetricNames.ALERTS_DROPPED_TOTAL)
        alert = pending.alert
        self.log.log(
            "CRITICAL" if alert.critical else "ERROR",
            "alert {!r} ({}) not delivered: {}; its text: {}",
            alert.title,
            alert.severity.value,
            why,
            alert.text,
        )


def _marked_late(alert: Alert, raised_at: datetime) -> Alert:
    # Delivered after alerts raised later: a person reading the chat must not take it as news.
    late = f"(Late: raised at {raised_at:%Y-%m-%d %H:%M:%S} UTC; alerts raised after it were delivered first.)"
    return attrs.evolve(alert, text=f"{late}\n{alert.text}")


def _failed_attempts(failures: int) -> str:
    return f"{failures} failed attempt{'s' if failures != 1 else ''}"
